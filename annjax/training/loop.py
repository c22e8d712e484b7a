"""The ONE training loop, for one model (``fit``) or many (``fit_many``).

Everything ``fit`` decides between epochs lives here, once, for any number
of models: the history, the progress bar, the NaN guard's verdict, early
stopping, the best epoch and its params, callbacks and checkpoints. A model
that stops (early stopping, a non-finite epoch) is frozen while the others
go on: its later epochs leave it unchanged (the compiled epoch keeps its
state) and its history entries are NaN. ``fit`` is the case of one model
whose arrays carry no model axis.

Per epoch, in this order: the compiled epoch runs (:class:`Engine`); its
values join the history; the NaN guard stops the models whose epoch was not
finite; early stopping updates each model's tracker and copies the params
of improved ones; callbacks run (any may stop training); the checkpoint is
written; the progress bar moves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from annjax._types import Key
from annjax.training import mesh as _mesh
from annjax.training.epoch import COMPILED, EpochSpec, Plan
from annjax.training.scan import concat_logs, part_tracking
from annjax.training.types import EarlyStopping, TrainState


class Engine(NamedTuple):
    """How each epoch of one training runs: the compiled epoch and its inputs.

    Attributes:
      spec: the static description of the compiled epoch.
      keys: the training key (one model) or keys (models,).
      hyper: the dynamic hyper-parameters (``l1``, ``l2``), per model when many.
      x, y, val: the data on the device.
      many: whether the train state carries a leading model axis.
      steps_per_call: None (the whole epoch in one call) or k steps per call.
      ready: the background compilation of the epoch
        (:func:`annjax.training.ahead.compile_ahead`), awaited before the
        first epoch, or None.
    """

    spec: EpochSpec
    keys: Key
    hyper: dict[str, Any]
    x: Any
    y: Any
    val: Any
    many: bool
    steps_per_call: int | None = None
    ready: Future | None = None

    def epoch(self, ts: TrainState, epoch: int, active: np.ndarray):
        """Returns ``(train_state, logs)`` of one epoch, logs on the host.

        The NaN guard: a model whose epoch was not finite (``logs["finite"]``
        False), or that had stopped before it (``active`` False), keeps its
        incoming state. When every model keeps its new state (the common
        case) nothing is copied.
        """
        index = np.int32(epoch)
        if self.ready is not None:  # its failure, if any, recurs in the call
            wait([self.ready])
        if self.steps_per_call is None:  # the incoming state stays valid
            new, logs = COMPILED["run_epoch", self.many](
                self.spec, ts, self.keys, index, self.hyper, self.x, self.y, self.val
            )
        else:  # run_steps donates its train state: keep a copy
            new, logs, ts = self._steps(ts, index)
        logs = _mesh.to_host(logs)
        keep = np.atleast_1d(logs["finite"]) & active
        if keep.all():
            return new, logs
        return _select(keep, new, ts, self.many), logs

    def _steps(self, ts: TrainState, index):
        """Returns ``(train_state, logs, copy of ts)`` with ``steps_per_call``."""
        n = self.x.shape[0]
        steps = COMPILED["plan", self.many](self.spec, self.keys, index, n)
        old = jax.tree_util.tree_map(jnp.copy, ts)  # the guard's fallback
        new, logs = self._chunks(ts, self.hyper, steps)
        out = COMPILED["finish", self.many](
            self.spec, new, logs, (self.x, self.y, steps), self.val
        )
        return new, out, old

    def _chunks(self, ts: TrainState, hyper, steps: Plan):
        """Returns ``(train_state, logs)`` after the planned steps, k per call
        (unrolled; the profiler measures the same steps, see ``part_tracking``)."""
        axis = 1 if self.many else 0
        total, k = steps.idx.shape[axis], self.steps_per_call
        parts = []
        for start in range(0, total, k):
            end = min(start + k, total)
            chunk = Plan(
                *(jax.lax.slice_in_dim(a, start, end, axis=axis) for a in steps)
            )
            spec, track = part_tracking(self.spec, start, end, total)
            ts, part = COMPILED["run_steps", self.many](
                spec, ts, hyper, self.x, self.y, chunk, track, True
            )
            parts.append(part)
        return ts, concat_logs(parts, axis)


class Progress(NamedTuple):
    """Where a training stands between epochs (restored on resume)."""

    history: dict[str, list]
    done: int
    best: Any  # (params, state) of each model's best epoch, or None
    active: np.ndarray
    reasons: list[str]
    ran: np.ndarray
    kept_epoch: np.ndarray


def start(n: int, ts: TrainState, es: EarlyStopping | None) -> Progress:
    """Returns the progress before the first epoch."""
    best = None
    if es is not None and es.restore_best:  # a copy: ts is donated to each epoch
        best = jax.tree_util.tree_map(jnp.copy, (ts.params, ts.state))
    return Progress(
        {},
        0,
        best,
        np.ones(n, bool),
        ["completed"] * n,
        np.zeros(n, int),
        np.full(n, -1),
    )


def _select(mask: np.ndarray, new, old, many: bool):
    """Returns per model ``new`` where ``mask`` else ``old``, as fresh buffers."""
    if not many:
        return jax.tree_util.tree_map(jnp.copy, new if mask[0] else old)

    def pick(a, b):
        m = jnp.asarray(mask).reshape((-1,) + (1,) * (a.ndim - 1))
        return jnp.where(m, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def _progress_bar(enabled: bool, total: int, initial: int):
    """Returns a tqdm bar over epochs, or None (off, or not on a terminal)."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="epoch", leave=False)


def _non_finite_reason(logs, i: int, epoch: int) -> str:
    loss = float(np.atleast_1d(logs["loss"])[i])
    step = int(np.atleast_1d(logs["first_non_finite_step"])[i])
    kept = f"epoch {epoch - 1}" if epoch > 0 else "initialisation"
    what = (
        f"the training loss became {loss} in epoch {epoch} (step {step})"
        if not np.isfinite(loss)
        else f"the parameters became non-finite, or give a non-finite loss, in "
        f"epoch {epoch} (its last updates overflowed; the mean loss was still "
        f"{loss:.6g})"
    )
    return f"non_finite: {what}; returned the params of {kept}"


def _row(value, active: np.ndarray, many: bool) -> np.ndarray:
    """Returns an epoch's value per model (NaN for the stopped ones)."""
    arr = np.asarray(value, np.float32)
    arr = arr.T if many else arr[..., None]  # step_loss: (steps, models)
    return np.where(active, arr, np.nan)


def _stops(value) -> bool:
    """Returns whether a callback's return value stops training.

    ``True``, and a NumPy or JAX boolean scalar that is true (what
    ``logs["loss"] < 0.1`` gives); ``None``, ``False`` and anything else go on.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, np.generic | np.ndarray | jax.Array):
        return np.ndim(value) == 0 and np.asarray(value).dtype == bool and bool(value)
    return False


def _callback_name(cb: Callable) -> str:
    return getattr(cb, "__name__", None) or type(cb).__name__


class _Run:
    """The loop's mutable bookkeeping between epochs (one entry per model)."""

    def __init__(self, progress: Progress, es: EarlyStopping | None, many: bool):
        self.history, self.done, self.best = progress[:3]
        self.active, self.ran, self.kept = (
            progress.active.copy(),
            progress.ran.copy(),
            progress.kept_epoch.copy(),
        )
        self.reasons = list(progress.reasons)
        self.es, self.many = es, many
        self.trackers = None
        if es is not None:
            values = np.asarray(self.history.get(es.monitor, []), np.float32)
            values = values.reshape(-1, len(self.active))
            self.trackers = [es.replay(values[:, i]) for i in range(len(self.active))]

    def progress(self) -> Progress:
        return Progress(
            self.history,
            self.done,
            self.best,
            self.active,
            self.reasons,
            self.ran,
            self.kept,
        )

    def record(self, epoch: int, logs: dict) -> None:
        """Adds the epoch to the history and applies the NaN guard's verdict."""
        was_active = self.active.copy()
        finite = np.atleast_1d(logs.pop("finite"))
        bad_step = logs.pop("first_non_finite_step")
        for name, value in logs.items():
            row = _row(value, was_active, self.many)
            self.history.setdefault(name, []).append(row)
            if self.many:  # callbacks see what the history holds (NaN: stopped)
                logs[name] = row.T
        self.done = epoch + 1
        self.ran += was_active
        for i in np.flatnonzero(was_active & ~finite):
            self.reasons[i] = _non_finite_reason(
                {**logs, "first_non_finite_step": bad_step}, i, epoch
            )
        self.active &= finite
        self.kept[self.active] = epoch

    def early_stopping(self, epoch: int, logs: dict, ts: TrainState) -> None:
        """Updates each running model's tracker; keeps the params that improved."""
        es = self.es
        if es is None:
            return
        improved = np.zeros(len(self.active), bool)
        for i in np.flatnonzero(self.active):
            value = float(np.atleast_1d(logs[es.monitor])[i])
            tracker, improved[i], stop = es.update(self.trackers[i], value, epoch)
            self.trackers[i] = tracker
            if stop:
                self.active[i] = False
                self.reasons[i] = (
                    f"early_stopping: {es.monitor} did not improve for "
                    f"{es.patience} epochs (best {tracker.best:.6g} at epoch "
                    f"{tracker.best_epoch})"
                )
        if self.best is not None and improved.any():
            self.best = _select(improved, (ts.params, ts.state), self.best, self.many)

    def callbacks(self, callbacks, epoch: int, logs: dict, ts, save_now) -> None:
        """Calls each callback; True from one stops every model.

        A callback with a true attribute ``wants_train_state`` is called as
        ``cb(epoch, logs, train_state)`` with the epoch's train state (read it
        during the call: its buffers are donated to the next epoch).
        """
        for cb in callbacks:
            try:
                if getattr(cb, "wants_train_state", False):
                    stop = cb(epoch, logs, ts)
                else:
                    stop = cb(epoch, logs)
            except Exception as exc:
                save_now()
                exc.add_note(
                    f"annjax: raised by the callback {_callback_name(cb)} after "
                    f"epoch {epoch}; the progress up to it was kept (and saved "
                    "when checkpoint= was given)."
                )
                raise
            if _stops(stop):
                for i in np.flatnonzero(self.active):
                    self.reasons[i] = (
                        f"callback: {_callback_name(cb)} stopped training after "
                        f"epoch {epoch}"
                    )
                self.active[:] = False


def train(
    engine: Engine,
    ts: TrainState,
    progress: Progress,
    *,
    epochs: int,
    early_stopping: EarlyStopping | None,
    callbacks: Sequence[Callable] = (),
    show_progress: bool = True,
    save: Callable[[Any], None] | None = None,
    finish: Callable[[TrainState, Progress], Any],
) -> Any:
    """Returns ``finish(ts, progress)`` after up to ``epochs`` more epochs.

    ``save(result)``, when given, receives ``finish(...)`` after every epoch
    (the checkpoint). An exception in a callback saves the progress first,
    then propagates with the epoch named.
    """
    run = _Run(progress, early_stopping, engine.many)
    bar = _progress_bar(show_progress, run.done + epochs, run.done)
    current = [ts]

    def save_now():
        if save is not None:
            save(finish(current[0], run.progress()))

    try:
        for epoch in range(run.done, run.done + epochs):
            ts, logs = engine.epoch(ts, epoch, run.active)
            current[0] = ts
            run.record(epoch, logs)
            run.early_stopping(epoch, logs, ts)
            run.callbacks(callbacks, epoch, logs, ts, save_now)
            save_now()
            if bar is not None:
                bar.update(1)
                loss = np.nanmin(np.atleast_1d(logs["loss"]))
                bar.set_postfix(loss=f"{loss:.4g}")
            if not run.active.any():
                break
    finally:
        if bar is not None:
            bar.close()
    return finish(ts, run.progress())
