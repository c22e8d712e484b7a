"""``diagnose``: why a network does not learn, read off its training history.

From the per-epoch history of :func:`annjax.fit` (``loss``, ``val_loss``,
metrics, ``train_eval_loss`` for models with state and, with
``track_gradients=True``, the per-layer measurements of
:mod:`annjax.analysis.profiler`), :func:`diagnose` returns the lecture's diagnosis as
:class:`Finding` s, most severe first (:data:`KINDS`), each with the numbers
behind it and the lecture's remedy. A history without profiler measurements
gives the loss-based findings only; epochs from the first non-finite training
loss on count only for ``non_finite``. Epochs are 0-based indices into the
history arrays, like ``FitResult.best_epoch``.

Examples:
  >>> result = ann.fit(model, (X, y), val_data=(Xv, yv), track_gradients=True)
  >>> print(ann.diagnose(result.history))  # one per line, or "healthy: no finding"
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from annjax.analysis.findings import (
    ACCURACY_METRICS,
    KINDS,
    LOSS_NAMES,
    REMEDIES,
    Finding,
    Findings,
    Thresholds,
    as_history,
    network_order,
    per_layer,
)

__all__ = ["diagnose"]


def _first(mask: np.ndarray) -> int | None:
    """Returns the first epoch where ``mask`` holds, or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _above(values: np.ndarray, limit: float) -> np.ndarray:
    """Returns where ``values`` are finite and above ``limit`` (the non-finite
    ones are ``non_finite``'s)."""
    return np.isfinite(values) & (values > limit)


def _from_on(mask: np.ndarray) -> int | None:
    """Returns the first epoch from which ``mask`` holds to the end, or None."""
    if not mask.size or not mask[-1]:
        return None
    misses = np.flatnonzero(~mask)
    return int(misses[-1]) + 1 if misses.size else 0


def _finite_epochs(h: dict[str, np.ndarray]) -> int:
    """Returns the number of epochs before the first non-finite training loss."""
    if "loss" not in h:
        return min((len(v) for v in h.values()), default=0)
    bad = _first(~np.isfinite(h["loss"]))
    return len(h["loss"]) if bad is None else bad


_Raw = Iterator[tuple[str, str | None, int, str]]  # kind, layer, epoch, message


def _non_finite(h, n: int, t: Thresholds) -> _Raw:
    losses = {k: h[k] for k in ("loss", "val_loss") if k in h}
    grads = per_layer(h, "grad_norm")
    firsts = [_first(~np.isfinite(v)) for v in (*losses.values(), *grads.values())]
    if (epoch := min((e for e in firsts if e is not None), default=None)) is None:
        return
    at = {k: v[epoch] for k, v in (losses | grads).items() if epoch < len(v)}
    bad = {k: v for k, v in at.items() if not np.isfinite(v)}
    parts = [
        f"the {LOSS_NAMES[k]} loss became {bad.pop(k)}" for k in losses if k in bad
    ]
    # An inf marks where the overflow began; the NaNs follow from inf − inf.
    layer = next((k for k, v in bad.items() if np.isinf(v)), next(iter(bad), None))
    if layer is not None:
        parts.append(
            f"gradient norm {bad[layer]} in {layer} ({len(bad)} of {len(grads)} "
            "layers non-finite)"
        )
    yield "non_finite", layer, epoch, f"in epoch {epoch} " + "; ".join(parts)


def _depth_ratio(grads: dict[str, np.ndarray]):
    """Returns (first layer, last layer, ‖g_first‖ / ‖g_last‖ per epoch) or None."""
    if len(grads) < 2:
        return None
    first, last = next(iter(grads)), next(reversed(grads))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(grads[last] > 0, grads[first] / grads[last], np.nan)
    return first, last, ratio


def _gradients(h, n: int, t: Thresholds) -> _Raw:
    grads = {k: v[:n] for k, v in per_layer(h, "grad_norm").items()}
    total = np.sqrt(sum(np.square(v) for v in grads.values())) if grads else None
    if total is not None:
        # An epoch with a non-finite norm is non_finite's: its ratios mean nothing.
        finite = np.isfinite(total)
        total = np.where(finite, total, np.nan)
        grads = {k: np.where(finite, v, np.nan) for k, v in grads.items()}
    if (depth := _depth_ratio(grads)) is not None:
        first, last, ratio = depth
        what = f"that of the last layer {last}"
        if (e := _first(ratio > t.exploding_ratio)) is not None:
            message = (
                f"{first} gradient norm {grads[first][e]:.3g}, {ratio[e]:.3g} × "
                f"{what} ({grads[last][e]:.3g}), in epoch {e} (threshold "
                f"{t.exploding_ratio:g} ×)"
            )
            yield "exploding_gradients", first, e, message
        # Exactly 0 is a blocked path (dead ReLUs: dead_units), not a vanishing one.
        floor = grads[first] < t.vanishing_floor
        low = ((ratio < t.vanishing_ratio) | floor) & (grads[first] > 0)
        if (e := _first(low)) is not None:
            few = sum(v[e] < t.vanishing_ratio * grads[last][e] for v in grads.values())
            message = (
                f"{first} gradient norm {grads[first][e]:.2g}, {ratio[e]:.2g} × "
                f"{what} ({grads[last][e]:.2g}), in epoch {e}; {few} of "
                f"{len(grads)} layers get less than {t.vanishing_ratio:g} × {last}'s"
            )
            if floor[e]:
                message += f"; below the floor {t.vanishing_floor:g}"
            yield "vanishing_gradients", first, e, message
    if total is not None and total.size and total[0] > 0:
        growth = total / total[0]
        if (e := _first(growth > t.exploding_growth)) is not None:
            top = max(grads, key=lambda k: grads[k][e])
            message = (
                f"the model's gradient norm grew {growth[e]:.3g} × from epoch 0 "
                f"({total[0]:.3g}) to epoch {e} ({total[e]:.3g}; threshold "
                f"{t.exploding_growth:g} ×), most in {top} ({grads[top][e]:.3g})"
            )
            yield "exploding_gradients", top, e, message
    # Epoch 0 is skipped: a zero-initialised layer's first step has ratio ∞.
    for layer, ratio in per_layer(h, "update_ratio").items():
        if (e := _first(_above(ratio[1:n], t.exploding_update_ratio))) is not None:
            message = (
                f"a step changes {layer} by {ratio[e + 1]:.3g} × the norm of its "
                f"weights in epoch {e + 1} (threshold {t.exploding_update_ratio:g})"
            )
            yield "exploding_gradients", layer, e + 1, message
    for layer, peak in (per_layer(h, "grad_norm_max") or grads).items():
        if (e := _first(_above(peak[:n], t.exploding_norm))) is not None:
            message = (
                f"{layer} gradient norm {peak[e]:.3g} in epoch {e} (threshold "
                f"{t.exploding_norm:g})"
            )
            yield "exploding_gradients", layer, e, message


_HEALTH = {  # kind → (history measure, threshold, what the fraction counts)
    "dead_units": ("dead_fraction", "dead_fraction", "units output ≤ 0 on whole "
                   "batches (dead: no gradient)"),
    "saturation": ("saturation", "saturated_fraction", "activations are saturated "
                   "(derivative < 5% of its maximum)"),
}  # fmt: skip


def _activations(h, n: int, t: Thresholds) -> _Raw:
    for kind, (measure, field, what) in _HEALTH.items():
        threshold = getattr(t, field)
        for layer, values in per_layer(h, measure).items():
            values = values[:n]
            if (e := _from_on(values >= threshold)) is not None:
                message = (
                    f"{values[e]:.0%} of {layer}'s {what} in epoch {e}, at least "
                    f"{threshold:.0%} from then on ({values[-1]:.0%} in the last "
                    "epoch)"
                )
                yield kind, layer, e, message


def _mode_gap(h, n: int, t: Thresholds) -> _Raw:
    """The training data scores worse in evaluation mode than in training mode."""
    if "loss" not in h or "train_eval_loss" not in h:
        return
    loss, evaluated = h["loss"][:n], h["train_eval_loss"][:n]
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = (evaluated - loss) / np.abs(loss)
    mask = _above(gap, t.eval_gap) | (np.isinf(evaluated) & np.isfinite(loss))
    accuracy = next((k for k in ACCURACY_METRICS if f"train_eval_{k}" in h), None)
    if accuracy is not None and accuracy in h:
        drop = h[accuracy][:n] - h[f"train_eval_{accuracy}"][:n]
        mask &= drop >= t.eval_accuracy_drop
    if (e := _from_on(mask)) is None:
        return
    message = (
        f"the training data's loss in evaluation mode is {evaluated[e]:.3g} "
        f"against {loss[e]:.3g} in training mode in epoch {e} (+{gap[e]:.0%}; "
        f"threshold +{t.eval_gap:.0%}), and stays above it to the last epoch "
        f"({evaluated[n - 1]:.3g} vs {loss[n - 1]:.3g})"
    )
    if accuracy is not None and accuracy in h:
        message += (
            f"; {accuracy} {h[f'train_eval_{accuracy}'][n - 1]:.3g} in evaluation "
            f"mode vs {h[accuracy][n - 1]:.3g} in training mode"
        )
    yield "train_eval_gap", None, e, message


def _chance(h, n: int, t: Thresholds) -> _Raw:
    """Validation accuracy at chance while the training accuracy is high."""
    accuracy = next((k for k in ACCURACY_METRICS if k in h and f"val_{k}" in h), None)
    if accuracy is None or n < 1:
        return
    train, val = h[accuracy][:n], h[f"val_{accuracy}"][:n]
    chance = t.chance_accuracy
    if chance is None:  # two classes' chance, or ten classes', plus a margin
        chance = 0.6 if accuracy == "binary_accuracy" else 0.2
    if not (train[-1] >= t.chance_train_accuracy and val[-1] <= chance):
        return
    e = _from_on((train >= t.chance_train_accuracy) & (val <= chance))
    message = (
        f"the validation {accuracy} is {val[-1]:.3g} (at most "
        f"{chance:g}, chance level) while the training {accuracy} is "
        f"{train[-1]:.3g} in the last epoch (from epoch {e} on)"
    )
    if f"train_eval_{accuracy}" in h:
        message += (
            f"; the training data in evaluation mode scores "
            f"{h[f'train_eval_{accuracy}'][n - 1]:.3g}"
        )
    yield "chance_validation", None, e, message


def _underfitting(h, n: int, t: Thresholds) -> _Raw:
    loss = h.get("loss", np.empty(0))[:n]
    accuracy = next((k for k in ACCURACY_METRICS if k in h), None)
    if not loss.size:
        return
    if accuracy is not None:  # accuracy is scale-free, the loss is not
        acc = np.nan_to_num(h[accuracy][:n], nan=-np.inf)
        epoch = int(np.argmax(acc))
        if not -np.inf < acc[epoch] < t.underfit_accuracy:
            return
        message = (
            f"the best training {accuracy} is {acc[epoch]:.3g} (epoch {epoch}), "
            f"below {t.underfit_accuracy:g}"
        )
    else:
        epoch = int(np.argmin(loss))
        gain = (loss[0] - loss[epoch]) / loss[0] if loss[0] > 0 else math.inf
        if loss.size < 2 or not gain < t.underfit_improvement:
            return
        message = (
            f"the training loss fell only {gain:.0%} from epoch 0 ({loss[0]:.3g}) "
            f"to its best ({loss[epoch]:.3g}, epoch {epoch}; threshold "
            f"{t.underfit_improvement:.0%})"
        )
    if "val_loss" in h and epoch < len(h["val_loss"]):
        val = h["val_loss"][epoch]
        if not val <= (1 + t.underfit_gap) * loss[epoch]:
            return  # a wide train/validation gap is variance, not bias
        message += f"; the validation loss is as high ({val:.3g})"
    yield "underfitting", None, epoch, message


def _overfitting(h, n: int, t: Thresholds) -> _Raw:
    if "loss" not in h or "val_loss" not in h:
        return
    val = h["val_loss"][:n]
    val = val[: _first(~np.isfinite(val))]
    if not val.size:
        return
    loss, last = h["loss"][: val.size], val.size - 1
    turn = last - int(np.argmin(val[::-1]))  # the last epoch at the minimum
    rise = (val[-1] - val[turn]) / abs(val[turn]) if val[turn] else math.inf
    if last - turn < t.overfit_patience or not rise >= t.overfit_rise:
        return
    if loss[-1] < loss[turn]:  # when both rise it is divergence, not over-fitting
        message = (
            f"the validation loss reached its minimum {val[turn]:.3g} in epoch "
            f"{turn}, then rose to {val[-1]:.3g} (+{rise:.0%}) by epoch {last} "
            f"while the training loss fell from {loss[turn]:.3g} to "
            f"{loss[-1]:.3g}; epoch {turn}'s model generalises best"
        )
        yield "overfitting", None, turn, message


def diagnose(history: Mapping[str, Any], **thresholds: float) -> Findings:
    """Returns the problems seen in a training history, most severe first.

    Each kind of problem is reported once per layer (or once for the model),
    at the epoch where it is first seen; an empty result, which prints
    ``healthy: no finding``, means that no threshold was crossed.

    Args:
      history: ``FitResult.history`` (or the FitResult): name → per-epoch
        values.
      **thresholds: any field of :class:`Thresholds`, e.g.
        ``vanishing_ratio=1e-4`` or ``overfit_patience=5``; each is documented
        there with its default and the reason for it.

    Returns:
      :class:`Findings`, a list of :class:`Finding` ordered by :data:`KINDS`,
      then network order.

    Raises:
      TypeError: for an unknown threshold name or a history that is not a
        mapping. ValueError: for a threshold out of range or a history entry
        that is not one value per epoch.

    Examples:
      >>> ann.diagnose(result.history, vanishing_ratio=1e-4, overfit_rise=0.2)
    """
    if unknown := sorted(thresholds.keys() - set(Thresholds._fields)):
        raise TypeError(
            f"diagnose: unknown threshold(s) {', '.join(unknown)}; expected "
            f"some of {', '.join(Thresholds._fields)}."
        )
    t = Thresholds(**thresholds).validate()
    h = as_history(history)
    n = _finite_epochs(h)
    once: dict[tuple, Finding] = {}  # each kind once per layer, its first epoch
    detectors = (
        _non_finite,
        _gradients,
        _activations,
        _mode_gap,
        _chance,
        _underfitting,
        _overfitting,
    )
    for detect in detectors:
        for kind, layer, epoch, message in detect(h, n, t):
            old = once.get((kind, layer))
            if old is None or epoch < old.epoch:
                once[kind, layer] = Finding(kind, layer, epoch, message, REMEDIES[kind])
    return Findings(sorted(once.values(), key=_severity))


def _severity(f: Finding) -> tuple:
    return KINDS.index(f.kind), network_order(f.layer or ""), f.epoch
