"""The data types of training: the train state, early stopping, the results.

They live apart from the loop so that the loop, the argument checks and the
checkpoints all import them without importing each other.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import numpy as np

from annjax import _checks
from annjax import metrics as _metrics
from annjax._types import Array

__all__ = ["EarlyStopping", "FitResult", "ManyResult", "Tracker", "TrainState"]


class TrainState(NamedTuple):
    """Everything that changes during training, as one pytree.

    Attributes:
      params: the model's parameters.
      state: the model's state (batch-norm running statistics).
      opt_state: the optimizer's state.
      step: the number of optimizer steps taken (int32 scalar).
      ema: the exponential moving average of the params (``fit(ema=...)``),
        updated after every step, or None.
    """

    params: Any
    state: Any
    opt_state: Any
    step: Array
    ema: Any = None


class Tracker(NamedTuple):
    """Early stopping's state: the best value so far, its epoch, epochs since."""

    best: float
    best_epoch: int
    wait: int


class EarlyStopping(NamedTuple):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Pure state: :meth:`update` maps a :class:`Tracker` and the epoch's value to
    a new tracker and the decision; the training loop only calls it.

    Attributes:
      monitor: a history name, e.g. ``"val_loss"``, ``"val_accuracy"``,
        ``"loss"``, or ``"val_<name>"`` of a custom metric function.
      patience: epochs without improvement before stopping (≥ 1).
      min_delta: the least change that counts as an improvement (≥ 0).
      mode: ``"auto"`` (default: the metric's own direction, as Keras),
        ``"min"`` or ``"max"``. A custom metric has no known direction: give
        ``"min"`` or ``"max"``.
      restore_best: return the params of the best epoch, not the last.
    """

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best: bool = True

    def direction(self) -> str:
        """Returns ``"min"`` or ``"max"``, resolving ``"auto"`` from the metric."""
        if self.mode != "auto":
            return self.mode
        name = self.monitor.removeprefix("val_")
        if name == "loss":
            return "min"
        if name not in _metrics.names():
            raise _checks.fail(
                "EarlyStopping mode",
                f"'min' or 'max' for the custom metric {name!r} ('auto' knows "
                "only the registered metrics)",
                self.mode,
            )
        return _metrics.mode(name)

    def validate(self) -> EarlyStopping:
        """Returns self, or raises ValueError for an invalid field."""
        if not isinstance(self.monitor, str):
            raise TypeError(
                f"EarlyStopping monitor: expected a history name such as "
                f"'val_loss', got {self.monitor!r}."
            )
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

    def replay(self, values) -> Tracker:
        """Returns the tracker after the given per-epoch values (NaN: not run)."""
        tracker = self.start()
        for epoch, value in enumerate(values):
            if np.isfinite(value):
                tracker, _, _ = self.update(tracker, float(value), epoch)
        return tracker


class FitResult(NamedTuple):
    """What ``fit`` returns.

    Attributes:
      params: the trained model's parameters (the best epoch's when early
        stopping restores it, else the last finite epoch's).
      state: its layer state, of the same epoch.
      history: name → per-epoch ``np.ndarray`` (``loss``, ``val_loss``, each
        metric and ``val_`` metric, ``lr`` when the optimizer's learning rate
        is injected, the profiler's measurements; ``step_loss`` with
        ``log_steps=True`` has one value per step).
      best_epoch: the index into the history arrays of the best epoch of the
        monitored value (early stopping's, else ``val_loss``, else ``loss``).
      stop_reason: ``"completed"``, or why training stopped.
      train_state: the last finite epoch's full state (optimizer included),
        from which ``fit(resume=...)`` continues.
      epochs: the number of epochs run in all (resumed ones included).
      params_epoch: the epoch whose params ``params`` are (−1: the
        initialisation); ``fit(resume=...)`` reads it to restore the best.
      ema_params: with ``fit(ema=decay)``, the moving average of the params
        (of the same epoch as ``params``), else None.
    """

    params: Any
    state: Any
    history: dict[str, np.ndarray]
    best_epoch: int
    stop_reason: str
    train_state: TrainState | None = None
    epochs: int = 0
    params_epoch: int = -1
    ema_params: Any = None


class ManyResult(NamedTuple):
    """What ``fit_many`` returns; every array has a model axis.

    Attributes:
      params: stacked along a leading model axis (``params[..][i]`` is
        model i); the best epoch's per model when early stopping restores it.
      state: the layer state, stacked as ``params``.
      history: name → array of shape (epochs, models) (NaN after a model
        stopped).
      best_epoch: (models,) index of each model's best epoch of the monitored
        value (early stopping's, else ``val_loss``, else ``loss``).
      stop_reason: one string per model.
      hyper: the per-model hyper-parameters, name → (models,) array.
      train_state: the stacked last state of every model.
      epochs: epochs run.
      model_epochs: (models,) epochs each model ran before it stopped.
      params_epoch: (models,) the epoch whose params each model's are.
      ema_params: with ``ema=decay``, each model's moving average of the
        params (stacked), else None.
      model: the Layer every model is an instance of (for :meth:`predict`
        and :meth:`ensemble`; None after :func:`annjax.load`).
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
    params_epoch: np.ndarray | None = None
    ema_params: Any = None
    model: Any = None

    def predict(self, X: Any, model: Any = None) -> Array:
        """Returns every model's evaluation-mode outputs on ``X``, (models, n, ...).

        One vmapped, compiled call for all the models (compiled once per
        model and shape). ``model`` is needed only for a loaded result.
        """
        model = self.model if model is None else model
        if model is None:
            raise _checks.fail(
                "model",
                "the Layer the models were trained as",
                None,
                "A loaded ManyResult does not keep it: pass predict(X, model=...).",
            )
        return _predict_all(model, self.params, self.state, jax.numpy.asarray(X))

    def ensemble(self, X: Any, how: str = "mean", model: Any = None) -> Array:
        """Returns the ensemble's prediction on ``X``: every model's, combined.

        ``how="mean"``: the average output, (n, ...) (for regression, and for
        probabilities; averaging logits is the geometric-mean ensemble).
        ``how="vote"``: the most frequent label (argmax of each model's
        scores, or a single output ≥ 0.5), ties to the smaller, (n,).
        """
        how = _checks.one_of("how", how, ("mean", "vote"))
        outputs = self.predict(X, model)
        if how == "mean":
            return outputs.mean(axis=0)
        if outputs.ndim == 3 and outputs.shape[-1] > 1:
            labels = outputs.argmax(axis=-1)
        else:
            labels = (outputs.reshape(outputs.shape[:2]) >= 0.5).astype(jax.numpy.int32)
        classes = int(labels.max()) + 1
        counts = jax.nn.one_hot(labels, classes, dtype=jax.numpy.int32).sum(axis=0)
        return counts.argmax(axis=-1)

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

        steps = len(self.history.get("step_loss", ())) // max(self.epochs, 1)
        history = {
            k: v[: ran * steps if k == "step_loss" else ran, i]
            for k, v in self.history.items()
        }
        return FitResult(
            take(self.params),
            take(self.state),
            history,
            int(self.best_epoch[i]),
            self.stop_reason[i],
            take(self.train_state),
            ran,
            -1 if self.params_epoch is None else int(self.params_epoch[i]),
            None if self.ema_params is None else take(self.ema_params),
        )

    def table(self, metric: str = "val_loss", mode: str = "auto") -> SweepTable:
        """Returns the configurations against their best ``metric``, best first.

        One row per model: its index (the index of its key), the swept
        hyper-parameters that differ between models, the best value of the
        history's ``metric`` over the epochs the model ran and that epoch.
        ``print(result.table("val_accuracy"))`` shows it as text.

        Args:
          metric: a history name (``"val_loss"``, ``"val_accuracy"``, …).
          mode: ``"min"``, ``"max"`` or ``"auto"`` (the metric's own
            direction, as :class:`EarlyStopping`).

        Raises:
          ValueError: for a name the history does not hold, or a mode.
        """
        if metric not in self.history or metric == "step_loss":
            names = sorted(k for k in self.history if k != "step_loss")
            raise _checks.fail("table metric", f"a history name of {names}", metric)
        direction = EarlyStopping(monitor=metric, mode=mode).validate().direction()
        values = np.asarray(self.history[metric], np.float64)
        sign = 1.0 if direction == "min" else -1.0
        swept = {
            k: np.asarray(v)
            for k, v in self.hyper.items()
            if np.unique(np.asarray(v)).size > 1
        }
        rows = []
        for i in range(values.shape[1]):
            column = np.where(np.isfinite(values[:, i]), sign * values[:, i], np.inf)
            epoch = int(np.argmin(column))
            best = float(values[epoch, i]) if np.isfinite(column[epoch]) else math.nan
            row = {"model": i, **{k: v[i].item() for k, v in swept.items()}}
            rows.append({**row, metric: best, "epoch": epoch})
        rows.sort(key=lambda r: (math.isnan(r[metric]), sign * r[metric]))
        return SweepTable(tuple(rows), metric)

    def best(self, metric: str = "val_loss", mode: str = "auto") -> FitResult:
        """Returns the model with the best ``metric`` (the first row of
        :meth:`table`) as :meth:`select` gives it."""
        return self.select(self.table(metric, mode).rows[0]["model"])


class SweepTable(NamedTuple):
    """:meth:`ManyResult.table`: rows of (model, hyper-parameters, best value,
    epoch), best first; ``str()`` formats them as a text table."""

    rows: tuple[dict[str, Any], ...]
    metric: str

    def __str__(self) -> str:
        if not self.rows:
            return "(no models)"
        columns = list(self.rows[0])
        cells = [[_cell(r[c]) for c in columns] for r in self.rows]
        widths = [
            max(len(c), *(len(row[j]) for row in cells)) for j, c in enumerate(columns)
        ]
        lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += [
            "  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True))
            for row in cells
        ]
        return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _apply_eval(model, params, state, x):
    return model.apply(params, state, x, train=False)[0]


#: Every model's outputs in one compiled call: vmapped over params and state.
_predict_all = jax.jit(
    jax.vmap(_apply_eval, in_axes=(None, 0, 0, None)), static_argnums=0
)
