"""The vocabulary of :func:`annjax.diagnose`: kinds, remedies, findings, thresholds.

Also the readers of a history that the plots share: :func:`per_layer` and
:func:`network_order`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from annjax import _checks

__all__ = [
    "ACCURACY_METRICS",
    "KINDS",
    "LOSS_NAMES",
    "REMEDIES",
    "Finding",
    "Findings",
    "Thresholds",
    "as_history",
    "network_order",
    "per_layer",
]

#: The kinds of finding, most severe first; :func:`diagnose` orders by it.
KINDS = (
    "non_finite",
    "exploding_gradients",
    "vanishing_gradients",
    "dead_units",
    "saturation",
    "train_eval_gap",
    "chance_validation",
    "underfitting",
    "overfitting",
)

#: The lecture's remedy for each kind.
REMEDIES = {
    "non_finite": "lower the learning rate, clip gradients (ann.sgd(lr, "
    "clip_norm=1.0)), standardise the inputs and check them for NaN/inf",
    "exploding_gradients": "clip gradients (ann.sgd(lr, clip_norm=1.0)), lower "
    "the learning rate, Xavier/He initialisation instead of large weights, "
    "batch normalisation (ann.mlp(..., batch_norm=True))",
    "vanishing_gradients": "ReLU or Leaky ReLU instead of sigmoid/tanh, "
    "Xavier/He initialisation, residual connections (ann.mlp(..., "
    "residual=True)), batch normalisation (batch_norm=True)",
    "dead_units": "Leaky ReLU, a lower learning rate, He initialisation, "
    "batch normalisation before the activation",
    "saturation": "standardise the inputs, Xavier initialisation (smaller "
    "weights), batch normalisation, or ReLU/Leaky ReLU",
    "train_eval_gap": "batch norm's running statistics lag the weights: a lower "
    "momentum (ann.batch_norm(momentum=0.9)), or more training steps before "
    "evaluating (more epochs or a smaller batch size)",
    "chance_validation": "compare train_eval_accuracy (the training data in "
    "evaluation mode): at chance too, it is batch norm's running statistics "
    "(lower momentum, more steps); otherwise preprocess the validation inputs "
    "exactly as the training ones (same Standardizer, same shape) and check "
    "their labels",
    "underfitting": "more capacity (wider or more layers), more training (more "
    "epochs, a tuned learning rate), less regularisation (smaller l1/l2, dropout)",
    "overfitting": "more data (or augmentation), dropout, L1/L2 penalties (l1=, "
    "l2=), early stopping (ann.EarlyStopping(patience=...))",
}

#: The accuracy metrics whose chance level ``diagnose`` compares against.
ACCURACY_METRICS = ("accuracy", "binary_accuracy")
#: The history's loss series and what ``diagnose``'s messages call them.
LOSS_NAMES = {"loss": "training", "val_loss": "validation"}


class Finding(NamedTuple):
    """One diagnosis: what, where, when, the numbers, and what to do.

    Attributes:
      kind: one of :data:`KINDS`.
      layer: the layer's path (``dense_0``, ``residual_3/relu_2``), or None
        for a finding about the whole model.
      epoch: the 0-based epoch where it is first seen (for ``overfitting``:
        where the validation loss turned).
      message: the evidence, with its numbers.
      remedy: the lecture's remedy.
    """

    kind: str
    layer: str | None
    epoch: int
    message: str
    remedy: str

    def __str__(self) -> str:
        where = f"{self.layer}, " if self.layer else ""
        return (
            f"{self.kind} ({where}epoch {self.epoch}): {self.message}\n"
            f"    remedy: {self.remedy}"
        )


class Findings(list):
    """A list of :class:`Finding` that prints one finding per line with its
    remedy, or ``healthy: no finding`` when empty (an empty list is falsy)."""

    def __str__(self) -> str:
        return "\n".join(map(str, self)) if self else "healthy: no finding"

    __repr__ = __str__


def network_order(layer: str) -> tuple:
    """Returns a sort key that puts layer paths in network order.

    Each path part ``<kind>_<i>`` sorts by ``i``, so ``dense_2`` comes before
    ``dense_10`` and ``residual_3/dense_0`` between ``dense_2`` and
    ``dense_4`` (flax's ``Dense_0`` likewise); parts without an index
    (``shortcut``) come last among their siblings.
    """
    key = []
    for part in layer.split("/"):
        base, _, index = part.rpartition("_")
        key.append((int(index), base) if base and index.isdigit() else (math.inf, part))
    return tuple(key)


def per_layer(history: Mapping[str, Any], measure: str = "grad_norm") -> dict:
    """Returns ``{layer: per-epoch values}`` of one measure, in network order.

    ``measure`` is a history prefix: ``grad_norm``, ``grad_norm_max``,
    ``param_norm``, ``update_ratio``, ``dead_fraction``, ``saturation``.
    """
    prefix = measure + "/"
    found = {
        name[len(prefix) :]: np.asarray(values, np.float64)
        for name, values in history.items()
        if name.startswith(prefix)
    }
    return {layer: found[layer] for layer in sorted(found, key=network_order)}


def as_history(history) -> dict[str, np.ndarray]:
    """Returns a history (a dict, or a result's ``.history``) as NumPy arrays.

    Raises:
      TypeError: for anything that is not a history.
    """
    history = getattr(history, "history", history)  # a FitResult works too
    if not isinstance(history, Mapping):
        raise TypeError(
            "history: expected a mapping name → per-epoch values (FitResult."
            f"history), got {type(history).__name__}."
        )
    out = {}
    for name, values in history.items():
        out[name] = np.asarray(values, np.float64)
        if out[name].ndim != 1:
            raise _checks.fail(
                f"history[{name!r}]",
                "one value per epoch (a 1-d array)",
                f"shape {out[name].shape}",
                "For fit_many's (epochs, models) history, diagnose one model: "
                "{k: v[:, i] for k, v in history.items()}.",
            )
    return out


class Thresholds(NamedTuple):
    r"""The thresholds of :func:`diagnose`, their defaults and the reasons.

    Attributes:
      vanishing_ratio: vanishing when ‖g_first‖ / ‖g_last‖, the first layer's
        gradient norm over the last (output) layer's, falls below it. 1e-3:
        far beyond what layer sizes explain (‖g‖ grows as √(weights)); healthy
        ReLU/He or residual networks stay within ~10× either way.
      vanishing_floor: vanishing also when ‖g_first‖ is below this absolute
        norm. 0 (off): an absolute norm depends on the loss's scale, and a
        converged model has small gradients for good reason. (A gradient of
        exactly 0 is a path blocked by dead ReLUs, not a vanishing one.)
      exploding_ratio: exploding when ‖g_first‖ / ‖g_last‖ exceeds it; 1e3,
        the mirror image of ``vanishing_ratio``.
      exploding_growth: exploding when the model's gradient norm √(Σ_l ‖g_l‖²)
        grows past this multiple of its epoch-0 value. 100: gradients shrink
        as training proceeds; 100× is the feedback loop of growing weights.
      exploding_update_ratio: exploding when a step changes a layer by more
        than this fraction of its weights, ‖Δθ‖ / ‖θ‖ (epoch mean; epoch 0,
        where a zero-initialised layer has ratio ∞, is skipped). 1: a step as
        large as the weights, 1000× the ~1e-3 of healthy training. Clipping
        bounds this ratio, not the raw gradient: a clipped run passes.
      exploding_norm: exploding when a layer's gradient norm (max over an
        epoch's steps) exceeds it. ∞ (off), as ``vanishing_floor``.
      dead_fraction: dead units when at least this fraction of a ReLU layer's
        units outputs ≤ 0 on whole batches from some epoch to the last. 0.5:
        half the layer no longer learns; dead ReLUs do not come back, so the
        fraction must hold to the end.
      saturated_fraction: saturation when at least this fraction of a sigmoid
        or tanh layer's activations has a derivative below 5% of its maximum
        (:data:`annjax.analysis.profiler.SATURATION_THRESHOLD`) from some epoch to the
        last. 0.5, as for dead units.
      overfit_patience: over-fitting needs the validation loss's minimum at
        least this many epochs before the end. 3: a run stopped early by
        ``EarlyStopping(patience≥3)`` still shows it.
      overfit_rise: … and the last validation loss at least this fraction
        above that minimum, with the training loss lower than there. 0.1:
        well above the epoch-to-epoch noise of a validation loss on a few
        hundred examples (~1–2%).
      eval_gap: train/eval-mode gap when the training data's loss in
        evaluation mode (``train_eval_loss``, a fixed slice evaluated after
        each epoch; recorded for models with state) exceeds the epoch's
        training-mode loss by more than this fraction, (L_eval − L_train) /
        L_train, from some epoch to the last. 0.5: the epoch's training loss
        is a mean over steps whose weights were worse than the final ones, so
        the honest eval-mode loss is usually LOWER; 50% higher is the
        running statistics describing other activations than the weights
        produce. Dropout only makes the eval-mode loss lower still.
      eval_accuracy_drop: … and, with an accuracy in the history, the
        eval-mode accuracy at least this much below the training-mode one.
        0.1: ten points, more than three times the noise (±0.03) of the
        256-example slice.
      chance_accuracy: chance validation when the last epoch's validation
        accuracy is at most this while the training accuracy is high. None
        (the default): 0.6 with ``binary_accuracy`` (two classes' chance,
        0.5, plus a margin), 0.2 with ``accuracy`` (ten classes' chance, 0.1,
        plus a margin); for k classes use 1/k + 0.1.
      chance_train_accuracy: … the training accuracy that counts as high.
        0.8: the network has clearly learnt its training data.
      underfit_improvement: without an accuracy in the history, under-fitting
        when the best training loss is less than this fraction below the
        epoch-0 loss, (L₀ − min L) / L₀. 0.5: a model that can fit its data
        at least halves its first epoch's loss.
      underfit_accuracy: with ``accuracy`` (or ``binary_accuracy``) in the
        history, under-fitting when the best training accuracy stays below
        it (accuracy is scale-free, the loss is not). 0.6: a model of enough
        capacity fits most of the examples it is trained on.
      underfit_gap: under-fitting also needs the validation loss, at the epoch
        judged, within this fraction of the training loss. 0.25: high bias
        shows on both; a wider gap is variance.
    """

    vanishing_ratio: float = 1e-3
    vanishing_floor: float = 0.0
    exploding_ratio: float = 1e3
    exploding_growth: float = 1e2
    exploding_update_ratio: float = 1.0
    exploding_norm: float = math.inf
    dead_fraction: float = 0.5
    saturated_fraction: float = 0.5
    overfit_patience: int = 3
    overfit_rise: float = 0.1
    eval_gap: float = 0.5
    eval_accuracy_drop: float = 0.1
    chance_accuracy: float | None = None
    chance_train_accuracy: float = 0.8
    underfit_improvement: float = 0.5
    underfit_accuracy: float = 0.6
    underfit_gap: float = 0.25

    def validate(self) -> Thresholds:
        """Returns self, or raises TypeError/ValueError for a bad threshold."""
        fields = self._asdict()
        if fields["chance_accuracy"] is None:  # the metric's own (see _chance)
            del fields["chance_accuracy"]
        for name, value in fields.items():
            _checks.non_negative(name, value)
        probabilities = (
            "dead_fraction",
            "saturated_fraction",
            "underfit_accuracy",
            "eval_accuracy_drop",
            "chance_accuracy",
            "chance_train_accuracy",
        )
        for name in probabilities:
            if name in fields:
                _checks.probability(name, fields[name])
        _checks.integer("overfit_patience", self.overfit_patience, minimum=1)
        return self
