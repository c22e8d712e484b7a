"""``fit``, ``evaluate`` and ``predict``: the lecture's training loop, compiled.

Train on the training set, tune on the validation set, judge once on the test
set, W ← W − α ∂L/∂W: ``fit`` runs each epoch as ONE compiled call (see
:func:`annjax.steps.run_epoch`), keeps a per-epoch history, stops early as
pure state (:class:`EarlyStopping`), guards against NaN, and checkpoints and
resumes bit-exactly.

Examples:
  >>> import jax, annjax as ann
  >>> d = ann.datasets.load_digits()
  >>> s = ann.data.split(d.X, d.y, val=0.1, test=0.2, key=jax.random.key(0))
  >>> result = ann.fit(
  ...     ann.mlp([64, 10]), s.train, val_data=s.val,
  ...     loss="softmax_cross_entropy", optimizer=ann.adam(1e-3),
  ...     epochs=20, batch_size=64, metrics=("accuracy",),
  ...     early_stopping=ann.EarlyStopping(patience=3), key=jax.random.key(1))
  >>> result.history["val_accuracy"][result.best_epoch]
  >>> ann.evaluate(model, result.params, result.state, s.test, metrics=("accuracy",))
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from annjax import _checks
from annjax import losses as _losses
from annjax import metrics as _metrics
from annjax._inputs import as_arrays, fit_targets, metric_names, penalties, setup
from annjax._types import Array, Key, Layer
from annjax.steps import (
    TrainState,
    compiled_epoch,
    evaluate_arrays,
    init_train_state,
    output_shape,
    predict_batched,
)

__all__ = ["EarlyStopping", "FitResult", "Tracker", "evaluate", "fit", "predict"]


class Tracker(NamedTuple):
    """Early stopping's state: the best value so far, its epoch, epochs since."""

    best: float
    best_epoch: int
    wait: int


class EarlyStopping(NamedTuple):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Pure state: :meth:`update` maps a :class:`Tracker` and the epoch's value to
    a new tracker and the decision; ``fit`` only calls it.

    Attributes:
      monitor: a history name, e.g. ``"val_loss"``, ``"val_accuracy"``, ``"loss"``.
      patience: epochs without improvement before stopping (≥ 1).
      min_delta: the least change that counts as an improvement (≥ 0).
      mode: ``"min"``, ``"max"``, or ``"auto"`` (the metric's own direction).
      restore_best: return the params of the best epoch, not the last.
    """

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "min"
    restore_best: bool = True

    def direction(self) -> str:
        """Returns ``"min"`` or ``"max"``, resolving ``"auto"`` from the metric."""
        if self.mode != "auto":
            return self.mode
        name = self.monitor.removeprefix("val_")
        return "min" if name == "loss" else _metrics.mode(name)

    def validate(self) -> EarlyStopping:
        """Returns self, or raises ValueError for an invalid field."""
        _checks.integer("EarlyStopping patience", self.patience, minimum=1)
        _checks.non_negative("EarlyStopping min_delta", self.min_delta)
        _checks.one_of("EarlyStopping mode", self.mode, ("min", "max", "auto"))
        return self

    def start(self) -> Tracker:
        """Returns the tracker before the first epoch."""
        return Tracker(math.inf if self.direction() == "min" else -math.inf, -1, 0)

    def update(self, tracker: Tracker, value: float, epoch: int):
        """Returns ``(tracker, improved, stop)`` after an epoch's ``value``."""
        sign = 1.0 if self.direction() == "min" else -1.0
        improved = bool(sign * (tracker.best - value) > self.min_delta)
        if improved:
            return Tracker(float(value), epoch, 0), True, False
        tracker = tracker._replace(wait=tracker.wait + 1)
        return tracker, False, tracker.wait >= self.patience


class FitResult(NamedTuple):
    """What ``fit`` returns.

    Attributes:
      params, state: the trained model (the best epoch's when early stopping
        restores it, else the last finite epoch's).
      history: name → per-epoch ``np.ndarray`` (``loss``, ``val_loss``, each
        metric and ``val_`` metric, and the profiler's measurements).
      best_epoch: the index into the history arrays of the best epoch of the
        monitored value (early stopping's, else ``val_loss``, else ``loss``).
      stop_reason: ``"completed"``, or why training stopped.
      train_state: the last finite epoch's full state (optimizer included),
        from which ``fit(resume=...)`` continues.
      epochs: the number of epochs run in all (resumed ones included).
    """

    params: Any
    state: Any
    history: dict[str, np.ndarray]
    best_epoch: int
    stop_reason: str
    train_state: TrainState | None = None
    epochs: int = 0


def _progress(enabled: bool, total: int, start: int):
    """Returns a tqdm bar over epochs, or None when off or not on a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm lives in the `examples` extra
        return None
    return tqdm(total=total, initial=start, unit="epoch", leave=False)


def _tracker_from_history(es: EarlyStopping, history: dict[str, list]) -> Tracker:
    """Returns the early-stopping tracker a resumed run would have had."""
    tracker = es.start()
    for epoch, value in enumerate(history.get(es.monitor, [])):
        tracker, _, _ = es.update(tracker, float(value), epoch)
    return tracker


def fit(
    model: Layer,
    train_data: tuple[Any, Any],
    val_data: tuple[Any, Any] | None = None,
    *,
    loss: str | Callable = "softmax_cross_entropy",
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 20,
    batch_size: int = 128,
    metrics: Sequence[str] = (),
    l1: float = 0.0,
    l2: float = 0.0,
    early_stopping: EarlyStopping | None = None,
    augment: Callable | None = None,
    track_gradients: bool = False,
    track_every: int = 10,
    key: Key | None = None,
    progress: bool = True,
    resume: str | None = None,
    checkpoint: str | None = None,
    eval_batch_size: int = 1024,
) -> FitResult:
    r"""Returns the trained model and its history; each epoch is ONE compiled call.

    Minimises the mean ``loss`` (+ λ₁Σ|W| + λ₂ΣW² when ``l1``/``l2`` are set;
    the history's ``loss`` is the data loss alone, comparable to ``val_loss``)
    with ``optimizer`` over mini-batches of a fresh permutation every epoch.
    The data goes to the device once; shuffling, the steps, the NaN guard and
    the validation pass all run inside one jitted call per epoch, compiled
    once per (model, optimizer, loss, shapes), so a second ``fit`` reuses it.

    The last batch of an epoch is filled up with examples from the start of
    the permutation, weighted 0, so every example counts exactly once per
    epoch and every step has the same shape. ``batch_size`` larger than the
    data is reduced to it.

    Args:
      model: an annjax Layer (``ann.mlp``, ``ann.serial``, ``ann.from_flax``).
      train_data: ``(X, y)``; X of shape (n, *input_shape); y integer labels,
        one-hot rows, or targets of the model's output shape ((n,) is taken as
        (n, 1) for a one-output model).
      val_data: ``(X_val, y_val)``, evaluated after every epoch.
      loss: a name from :func:`annjax.losses.get` or a function
        ``(y_true, y_pred, reduction)``.
      optimizer: any optax transformation; default ``ann.sgd(0.01)``.
      epochs: epochs to run in this call (on resume: more epochs).
      batch_size: examples per step.
      metrics: names from :func:`annjax.metrics.get`.
      l1, l2: penalty strengths λ ≥ 0 on the weights (biases and norm params
        spared); ``weight_decay`` in the optimizer is the decoupled form.
      early_stopping: an :class:`EarlyStopping`, or None.
      augment: ``fn(key, x) -> x`` applied to each training batch inside the
        compiled step (never to validation data); see :mod:`annjax.augment`.
      track_gradients: record the profiler's per-layer measurements.
      track_every: measure them in one step out of this many (every step
        with 1); the steps between run untouched, which keeps the profiler's
        cost to a few percent (see ``benchmarks/``).
      key: the random key for init, shuffling, dropout and augmentation;
        default ``jax.random.key(0)``, so runs are reproducible.
      progress: show a tqdm bar (only on a terminal).
      resume: a checkpoint path written by :func:`annjax.save` or
        ``checkpoint=``; training continues from its last state.
      checkpoint: a path to save the result to (atomically) after every epoch.
      eval_batch_size: batch size of the validation pass.

    Returns:
      A :class:`FitResult`.

    Raises:
      ValueError: for any invalid argument or data, before anything compiles.
    """
    epochs = _checks.integer("epochs", epochs, minimum=0)
    hyper = penalties(l1, l2)
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
    key = jax.random.key(0) if key is None else _checks.random_key("key", key)
    init_key, train_key = jax.random.split(key)
    ts, _ = init_train_state(model, spec.optimizer, init_key, x.shape[1:])

    history: dict[str, list] = {}
    done = 0
    best_params = None
    if resume is not None:
        from annjax.checkpoint import load, restore_train_state

        previous = load(resume)
        ts = restore_train_state(previous.train_state, ts)
        history = {k: list(v) for k, v in previous.history.items()}
        done = previous.epochs
        best_params = (previous.params, previous.state)

    tracker = _tracker_from_history(early_stopping, history) if early_stopping else None
    stop_reason = "completed"
    bar = _progress(progress, done + epochs, done)
    try:
        for epoch in range(done, done + epochs):
            ts, logs = compiled_epoch(
                spec, ts, train_key, np.int32(epoch), hyper, x, y, val
            )
            logs = jax.device_get(logs)
            bad_step = int(logs.pop("first_non_finite_step"))
            for name, value in logs.items():
                history.setdefault(name, []).append(float(value))
            done = epoch + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    {k: f"{logs[k]:.4g}" for k in ("loss", "val_loss") if k in logs}
                )
            if not np.isfinite(logs["loss"]):
                kept = f"epoch {epoch - 1}" if epoch > 0 else "initialisation"
                stop_reason = (
                    f"non_finite: the training loss became {logs['loss']} in epoch "
                    f"{epoch} (step {bad_step}); returned the params of {kept}"
                )
                break
            if early_stopping is not None:
                value = float(logs[early_stopping.monitor])
                tracker, improved, stop = early_stopping.update(tracker, value, epoch)
                if improved and early_stopping.restore_best:
                    best_params = jax.tree_util.tree_map(
                        jnp.copy, (ts.params, ts.state)
                    )
                if stop:
                    stop_reason = (
                        f"early_stopping: {early_stopping.monitor} did not improve "
                        f"for {early_stopping.patience} epochs (best "
                        f"{tracker.best:.6g} at epoch {tracker.best_epoch})"
                    )
            if checkpoint is not None:
                _save_progress(
                    checkpoint,
                    ts,
                    history,
                    done,
                    best_params,
                    early_stopping,
                    stop_reason,
                )
            if stop_reason != "completed":
                break
    finally:
        if bar is not None:
            bar.close()
    return _result(ts, history, done, best_params, early_stopping, stop_reason)


def _result(ts, history, done, best_params, early_stopping, stop_reason) -> FitResult:
    hist = {k: np.asarray(v, np.float32) for k, v in history.items()}
    params, state = ts.params, ts.state
    if early_stopping is not None:
        if early_stopping.restore_best and best_params is not None:
            params, state = best_params
        # the tracker's epoch (min_delta included): the one restore_best returns
        best_epoch = _tracker_from_history(early_stopping, history).best_epoch
        return FitResult(params, state, hist, best_epoch, stop_reason, ts, done)
    monitor = "val_loss" if "val_loss" in hist else "loss"
    best_epoch = -1
    if monitor in hist and len(hist[monitor]):
        values = np.where(np.isfinite(hist[monitor]), hist[monitor], np.nan)
        if not np.all(np.isnan(values)):
            best_epoch = int(np.nanargmin(values))
    return FitResult(params, state, hist, best_epoch, stop_reason, ts, done)


def _save_progress(path, ts, history, done, best_params, early_stopping, stop_reason):
    from annjax.checkpoint import save

    save(path, _result(ts, history, done, best_params, early_stopping, stop_reason))


# ---------------------------------------------------------- predict, evaluate

_predict = jax.jit(predict_batched, static_argnums=(0, 4))
_evaluate = jax.jit(evaluate_arrays, static_argnums=(0, 1, 2, 3))


def predict(model: Layer, params, state, x, batch_size: int = 1024) -> Array:
    """Returns the model's outputs on ``x`` in evaluation mode, batched and jitted."""
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    x = jnp.asarray(_checks.numeric_array("x", x), jnp.float32)
    return _predict(model, params, state, x, batch_size)


def evaluate(
    model: Layer,
    params,
    state,
    data: tuple[Any, Any],
    loss: str | Callable = "softmax_cross_entropy",
    metrics: Sequence[str] = (),
    batch_size: int = 1024,
) -> dict[str, float]:
    """Returns ``{"loss": …, metric: …}`` on ``data = (X, y)``, batched and jitted.

    Metrics are computed on all predictions at once (exact F1, R²…).
    """
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    _losses.get(loss)
    metrics = metric_names(metrics)
    x, y = as_arrays("data", data)
    y = fit_targets("data", y, loss, output_shape(model, x.shape[1:]))
    logs = _evaluate(model, loss, metrics, batch_size, params, state, x, y)
    return {k: float(v) for k, v in logs.items()}
