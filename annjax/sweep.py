"""``fit_many``: many models trained at once, one compiled call per epoch.

The compiled epoch of :func:`annjax.fit` is ``jax.vmap``-ed over a leading
model axis: every model gets its own initialisation key, its own shuffling
and dropout keys, and its own hyper-parameters (``l1``, ``l2``, a
learning-rate multiplier), while the data stays on the device once. On a CPU
this turns many small, overhead-bound trainings into one larger computation;
on an accelerator it fills the chip.

Examples:
  >>> import numpy as np
  >>> result = ann.fit_many(
  ...     ann.mlp([64, 10]), s.train, val_data=s.val,
  ...     keys=jax.random.split(jax.random.key(0), 4),     # 4 seeds
  ...     l2=[0.0, 1e-4, 1e-3, 1e-2],                      # one value per model
  ...     optimizer=ann.adam(1e-3), epochs=20, metrics=("accuracy",))
  >>> result.history["val_accuracy"].shape                  # (epochs, models)
  (20, 4)
  >>> ann.fit_many(..., lr_scale=np.geomspace(0.1, 10, 8))  # a learning-rate sweep
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from annjax import _checks
from annjax._inputs import setup
from annjax._types import Key, Layer
from annjax.steps import TrainState, init_train_state, run_epoch
from annjax.train import EarlyStopping, FitResult, _progress

__all__ = ["ManyResult", "fit_many"]


class ManyResult(NamedTuple):
    """What ``fit_many`` returns; every array has a model axis.

    Attributes:
      params, state: stacked along a leading model axis (``params[..][i]`` is
        model i); the best epoch's per model when early stopping restores it.
      history: name → array of shape (epochs, models).
      best_epoch: (models,) index of each model's best epoch of the monitored
        value (early stopping's, else ``val_loss``, else ``loss``).
      stop_reason: one string per model.
      hyper: the per-model hyper-parameters, name → (models,) array.
      train_state: the stacked last state of every model.
      epochs: epochs run.
      model_epochs: (models,) epochs each model ran before it stopped.
    """

    params: Any
    state: Any
    history: dict[str, np.ndarray]
    best_epoch: np.ndarray
    stop_reason: list[str]
    hyper: dict[str, np.ndarray]
    train_state: TrainState
    epochs: int
    model_epochs: np.ndarray | None = None

    def select(self, i: int) -> FitResult:
        """Returns model ``i`` as the FitResult a separate ``fit`` would give.

        Its history is cut at the epochs the model actually ran.
        """
        n = len(self.stop_reason)
        i = _checks.integer("select i", i)
        if not -n <= i < n:
            raise _checks.fail("select i", f"a model index in [-{n}, {n})", i)
        ran = self.epochs if self.model_epochs is None else int(self.model_epochs[i])

        def take(tree):
            return jax.tree_util.tree_map(lambda a: a[i], tree)

        return FitResult(
            take(self.params),
            take(self.state),
            {k: v[:ran, i] for k, v in self.history.items()},
            int(self.best_epoch[i]),
            self.stop_reason[i],
            take(self.train_state),
            ran,
        )


def _per_model(name: str, value, n: int | None) -> tuple[np.ndarray, int | None]:
    """Returns ``value`` as a (n,) float32 array (scalars broadcast) and n."""
    arr = np.asarray(value, np.float32)
    if arr.ndim > 1:
        raise _checks.fail(name, "a number or a 1-D sequence (one per model)", value)
    if arr.ndim == 1:
        if n is not None and arr.shape[0] != n:
            raise ValueError(
                f"{name}: expected one value per model ({n} models), got "
                f"{arr.shape[0]} values."
            )
        n = arr.shape[0]
    return arr, n


_compiled_many = jax.jit(
    jax.vmap(run_epoch, in_axes=(None, 0, 0, None, 0, None, None, None)),
    static_argnums=0,
    donate_argnums=1,
)


def fit_many(
    model: Layer,
    train_data: tuple[Any, Any],
    val_data: tuple[Any, Any] | None = None,
    *,
    keys: Key | None = None,
    l1: float | Sequence[float] = 0.0,
    l2: float | Sequence[float] = 0.0,
    lr_scale: float | Sequence[float] = 1.0,
    loss: str | Callable = "softmax_cross_entropy",
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 20,
    batch_size: int = 128,
    metrics: Sequence[str] = (),
    early_stopping: EarlyStopping | None = None,
    augment: Callable | None = None,
    track_gradients: bool = False,
    track_every: int = 10,
    progress: bool = True,
    eval_batch_size: int = 1024,
) -> ManyResult:
    """Returns many models trained at once: ``fit`` vmapped over keys and hypers.

    The number of models is the length of ``keys`` or of any sequence among
    ``l1``, ``l2``, ``lr_scale`` (numbers broadcast to every model; sequences
    must agree in length). Build grids with ``itertools.product`` or
    ``np.meshgrid`` and pass the flattened columns.

    Each model trains exactly as ``fit`` would with the same key and
    hyper-parameters (same permutations, same dropout masks), so a sweep's
    model i equals a separate ``fit`` of it up to floating-point reassociation.
    With early stopping (or a non-finite loss), a model that stops is frozen:
    its later epochs leave it unchanged and their history entries are NaN;
    training ends when every model has stopped.

    Args:
      keys: a key array of shape (models,); default: split from
        ``jax.random.key(0)``.
      l1, l2: penalty strengths, one per model or one for all (≥ 0).
      lr_scale: multiplies the optimizer's step, one per model or one for all
        (> 0): with ``optimizer=ann.sgd(0.1)``, ``lr_scale=[0.1, 1, 10]``
        trains at learning rates 0.01, 0.1 and 1 (exact for SGD, Adam, AdamW,
        whose updates are proportional to the learning rate).
      The other arguments are those of :func:`annjax.fit`.

    Raises:
      ValueError: as ``fit``, and for per-model sequences of different lengths.
    """
    epochs = _checks.integer("epochs", epochs, minimum=0)
    n = None
    if keys is not None:
        n = int(np.shape(keys)[0]) if np.ndim(keys) == 1 else None
        if n is None:
            raise _checks.fail("keys", "a 1-D array of keys (one per model)", keys)
    l1s, n = _per_model("l1", l1, n)
    l2s, n = _per_model("l2", l2, n)
    scales, n = _per_model("lr_scale", lr_scale, n)
    n = 1 if n is None else n
    if (l1s < 0).any() or (l2s < 0).any():
        raise _checks.fail("l1/l2", "values >= 0", (l1, l2))
    if (scales <= 0).any():
        raise _checks.fail("lr_scale", "values > 0", lr_scale)
    spec, x, y, val = setup(
        model,
        train_data,
        val_data,
        loss=loss,
        optimizer=optimizer,
        batch_size=batch_size,
        metrics=metrics,
        early_stopping=early_stopping,
        augment=augment,
        track_gradients=track_gradients,
        eval_batch_size=eval_batch_size,
        track_every=track_every,
    )
    keys = jax.random.split(jax.random.key(0), n) if keys is None else keys
    split = jax.vmap(jax.random.split)(keys)  # as fit: (init key, train key)
    init_keys, train_keys = split[:, 0], split[:, 1]
    ts = jax.vmap(lambda k: init_train_state(model, spec.optimizer, k, x.shape[1:])[0])(
        init_keys
    )
    hyper = {"lr_scale": jnp.broadcast_to(scales, (n,))}
    for name, values in (("l1", l1s), ("l2", l2s)):
        if values.any():
            hyper[name] = jnp.broadcast_to(values, (n,))
    return _train(
        spec, ts, train_keys, hyper, x, y, val, epochs, early_stopping, progress, n
    )


def _select(mask: np.ndarray, new, old):
    """Returns per model ``new`` where ``mask`` else ``old`` (leading model axis)."""

    def pick(a, b):
        m = jnp.asarray(mask).reshape((-1,) + (1,) * (a.ndim - 1))
        return jnp.where(m, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def _train(spec, ts, train_keys, hyper, x, y, val, epochs, es, progress, n):
    history: dict[str, list] = {}
    active = np.ones(n, bool)
    reasons = ["completed"] * n
    trackers = [es.start() for _ in range(n)] if es else None
    best = None
    if es is not None and es.restore_best:  # a copy: ts is donated to each epoch
        best = jax.tree_util.tree_map(jnp.copy, (ts.params, ts.state))
    bar = _progress(progress, epochs, 0)
    done = 0
    ran = np.zeros(n, int)
    try:
        for epoch in range(epochs):
            step_hyper = {**hyper, "active": jnp.asarray(active)}
            ts, logs = _compiled_many(
                spec, ts, train_keys, np.int32(epoch), step_hyper, x, y, val
            )
            logs = jax.device_get(logs)
            logs.pop("first_non_finite_step")
            for name, value in logs.items():
                row = np.where(active, np.asarray(value, np.float32), np.nan)
                history.setdefault(name, []).append(row)
            done = epoch + 1
            ran += active
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.nanmin(logs['loss']):.4g} (best model)")
            bad = active & ~np.isfinite(logs["loss"])
            for i in np.flatnonzero(bad):
                reasons[i] = (
                    f"non_finite: the training loss became nan in epoch {epoch}"
                )
            active &= ~bad
            if es is not None:
                improved = np.zeros(n, bool)
                for i in np.flatnonzero(active):
                    value = float(logs[es.monitor][i])
                    trackers[i], improved[i], stop = es.update(
                        trackers[i], value, epoch
                    )
                    if stop:
                        active[i] = False
                        reasons[i] = (
                            f"early_stopping: {es.monitor} did not improve for "
                            f"{es.patience} epochs (best {trackers[i].best:.6g} at "
                            f"epoch {trackers[i].best_epoch})"
                        )
                if best is not None and improved.any():
                    # jnp.where writes new buffers, so best survives ts's donation
                    best = _select(improved, (ts.params, ts.state), best)
            if not active.any():
                break
    finally:
        if bar is not None:
            bar.close()
    hist = {k: np.stack(v) for k, v in history.items()}
    params, state = best if best is not None else (ts.params, ts.state)
    monitor = es.monitor if es else ("val_loss" if "val_loss" in hist else "loss")
    values = hist.get(monitor, np.full((0, n), np.nan))
    values = np.where(np.isfinite(values), values, np.nan)
    if es is not None and es.direction() == "max":
        values = -values
    best_epoch = np.array(
        [np.nanargmin(c) if not np.isnan(c).all() else -1 for c in values.T], int
    )
    swept = {k: np.asarray(v) for k, v in hyper.items()}
    return ManyResult(params, state, hist, best_epoch, reasons, swept, ts, done, ran)
