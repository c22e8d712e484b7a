"""The ONE training loop, for one model (``fit``) or many (``fit_many``).

Everything ``fit`` decides between epochs lives here, once, for any number
of models: the history, the progress bar, the NaN guard's verdict, early
stopping, the best epoch and its params, callbacks and checkpoints. A model
that stops (early stopping, a non-finite epoch) is frozen while the others
go on: its later epochs leave it unchanged (the compiled epoch keeps its
state) and its history entries are NaN. ``fit`` is the case of one model
whose arrays carry no model axis.

Per epoch, in this order: the compiled epoch runs (:func:`run_epoch`); its
values join the history; the NaN guard stops the models whose epoch was not
finite; early stopping updates each model's tracker and copies the params
of improved ones; callbacks run (any may stop training); the checkpoint is
written; the progress bar moves.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from annjax._types import Key
from annjax.training import mesh as _mesh
from annjax.training import streamed as _streamed
from annjax.training import trees as _trees
from annjax.training import vectorize as _vectorize
from annjax.training.epoch import Plan, compiled, concat_logs, part_tracking
from annjax.training.record import Run
from annjax.training.types import EarlyStopping, TrainState


def history_names(run: Run, ts: TrainState, train_keys: Key) -> set[str]:
    """Returns the names this run's epochs add to the history.

    Derived, never listed: the keys of what the record's compiled epoch
    returns, traced abstractly (``eval_shape``: nothing compiles or runs),
    less the NaN guard's verdict. A checkpoint to resume must hold exactly
    these (:func:`annjax.training.checkpoint.resume`).
    """
    how = "vmap" if run.vectorize == "sequential" else run.vectorize  # same names
    shapes = compiled("run_epoch", how, run.spec).eval_shape(
        run.spec, ts, train_keys, np.int32(0), run.hyper, run.x, run.y, run.val
    )[1]
    return set(shapes) - {"finite", "first_non_finite_step"}


def run_epoch(
    run: Run, ts: TrainState, train_keys: Key, epoch: int, active: np.ndarray
):
    """Returns ``(train_state, logs)`` of one epoch, logs on the host.

    ``train_keys`` are the training keys (the initialisation's second half
    of each of the user's ``run.keys``). The NaN guard: a model whose epoch was not
    finite (``logs["finite"]`` False), or that had stopped before it
    (``active`` False), keeps its incoming state. When every model keeps
    its new state (the common case) nothing is copied.
    """
    index = np.int32(epoch)
    if run.stream is not None:  # chunks from the host, k steps per call
        new, logs, ts = _streamed.epoch(run, ts, train_keys, index)
    elif run.steps_per_call is None:  # the incoming state stays valid
        new, logs = compiled("run_epoch", run.vectorize, run.spec)(
            run.spec, ts, train_keys, index, run.hyper, run.x, run.y, run.val
        )
    else:  # run_steps donates its train state: keep a copy
        new, logs, ts = _steps(run, ts, train_keys, index)
    logs = _mesh.to_host(logs)
    keep = np.atleast_1d(logs["finite"]) & active
    if keep.all():
        return new, logs
    return _select(keep, new, ts, run.many), logs


class _Separately:
    """The epochs of ``vectorize="sequential"``: every model's epoch run as
    its own ``fit`` runs it, the models side by side on threads.

    ONE compiled program, ``fit``'s for one model (shared with ``fit``,
    compiled once for all the models), called once per model and epoch
    from here; a stopped model does not run (its state stays, its logs are
    NaN, as the history shows every way's). The models' keys and
    hyper-parameters are split once; their train states are kept apart
    between epochs and stacked for the loop (history, early stopping,
    callbacks, checkpoints) after each, through the host: nothing else
    compiles.

    On one device of one process the models' epochs run on up to one
    thread per core (:func:`_each`): XLA:CPU runs a call on the thread that
    makes it, and one small model's program leaves cores idle (the
    ``sweep-cnn`` workload: 1.9 of 2 cores busy instead of 1.5, see
    ``docs/benchmarks.md``, "Sweeps"). A mesh of several devices, or
    several processes, which must launch their programs in one order, run
    the models one after the other.
    """

    def __init__(self, run: Run, train_keys: Key):
        one = run._replace(many=False, vectorize=None, models=1)
        self.mesh = run.spec.mesh  # placed as fit places one model's trees
        self.keys = self._split(train_keys, run.models)
        hypers = self._split(run.hyper, run.models)
        self.runs = [one._replace(hyper=h) for h in hypers]
        self.kept: tuple = (None, None)  # (the stacked state returned, its models)
        alone = jax.process_count() == 1 and (self.mesh is None or self.mesh.size == 1)
        self.workers = _cores() if alone else 1

    def _split(self, tree, n: int) -> list:
        parts = _vectorize.models_of(tree, n)
        return [_mesh.place_state(p, self.mesh, False) for p in parts]

    def __call__(self, ts: TrainState, epoch: int, active: np.ndarray):
        """Returns ``(train_state, logs)`` as :func:`run_epoch` does."""
        returned, states = self.kept
        if ts is not returned:  # the first epoch (or a state from elsewhere)
            states = self._split(ts, len(self.runs))
        logs: list = [None] * len(self.runs)
        running = [int(i) for i in np.flatnonzero(active)]

        def one(i):
            return run_epoch(
                self.runs[i], states[i], self.keys[i], epoch, active[i : i + 1]
            )

        for i, (state, log) in zip(
            running, _each(one, running, self.workers), strict=True
        ):
            states[i], logs[i] = state, log
        ran = next(log for log in logs if log is not None)
        stopped = {k: np.full(np.shape(v), np.nan, np.float32) for k, v in ran.items()}
        stopped["finite"] = np.bool_(False)
        stopped["first_non_finite_step"] = np.int32(-1)
        logs = [stopped if log is None else log for log in logs]
        out = {k: np.stack([np.asarray(log[k]) for log in logs]) for k in ran}
        ts = _mesh.place_state(_vectorize.stacked(states), self.mesh, True)
        self.kept = (ts, states)
        return ts, out


def _cores() -> int:
    """Returns the number of cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):  # Linux: the CPUs it is bound to
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _jax_context() -> tuple:
    """Returns every jax option and the abstract mesh as the calling thread
    sees them (a ``with jax.default_matmul_precision(...)`` or
    ``jax.set_mesh`` block sets them for its own thread only)."""
    return dict(jax.config.values), jax.sharding.get_abstract_mesh()


def _each(fn: Callable, items: list, workers: int) -> list:
    """Returns ``[fn(item) for item in items]``, computed on up to
    ``workers`` threads.

    The threads run ``fn`` only when they see jax's options and mesh as
    the caller does: otherwise a program would compile again, for other
    options than the user's, and the items run here one after the other.
    An error in any call is raised here, once the calls already running
    have ended; the others do not start.
    """
    if workers < 2 or len(items) < 2:
        return [fn(item) for item in items]
    pool = concurrent.futures.ThreadPoolExecutor(min(workers, len(items)))
    try:
        if pool.submit(_jax_context).result() != _jax_context():
            return [fn(item) for item in items]
        return list(pool.map(fn, items))
    finally:  # after an error (or ^C), the calls not yet started never start
        pool.shutdown(cancel_futures=True)


def epochs_of(run: Run, train_keys: Key) -> Callable:
    """Returns ``epoch_of(ts, epoch, active) -> (train_state, logs)``: the
    run's epochs, in the way ``run.vectorize`` runs its models."""
    if run.vectorize == "sequential":
        return _Separately(run, train_keys)

    def epoch_of(ts, epoch, active):
        return run_epoch(run, ts, train_keys, epoch, active)

    return epoch_of


def _steps(run: Run, ts: TrainState, train_keys: Key, index):
    """Returns ``(train_state, logs, copy of ts)`` with ``steps_per_call``."""
    n = run.x.shape[0]
    steps = compiled("plan", run.vectorize, run.spec)(
        run.spec, train_keys, index, n, run.hyper
    )
    old = _trees.copy(ts)  # the guard's fallback
    new, logs = _chunks(run, ts, steps)
    out = compiled("finish", run.vectorize, run.spec)(
        run.spec,
        new,
        logs,
        (run.x, run.y, steps),
        run.val,
        run.hyper,
        index,
        None,
        None,
    )
    return new, out, old


def _chunks(run: Run, ts: TrainState, steps: Plan):
    """Returns ``(train_state, logs)`` after the planned steps, k per call
    (unrolled; the profiler measures the same steps, see ``part_tracking``)."""
    axis = 1 if run.many else 0
    total, k = steps.idx.shape[axis], run.steps_per_call
    parts = []
    for start in range(0, total, k):
        end = min(start + k, total)
        chunk = _trees.take(steps, start, size=end - start, axis=axis)
        spec, track = part_tracking(run.spec, start, end, total)
        ts, part = compiled("run_steps", run.vectorize, spec)(
            spec, ts, run.hyper, run.x, run.y, chunk, track, True
        )
        parts.append(part)
    return ts, concat_logs(parts, axis)


@dataclasses.dataclass
class Progress:
    """Where a training stands between epochs, one entry per model.

    Built by :meth:`fresh` before the first epoch or by :meth:`restored`
    from a checkpoint; the loop updates it after every epoch
    (:meth:`record`, :meth:`early_stopping`, :meth:`callbacks`) and the
    result is read from it (:mod:`.results`).

    Attributes:
      history: name → list of per-epoch rows (models,) (``step_loss``: one
        (steps, models) block per epoch).
      done: epochs run so far.
      best: (params, state, ema) of each model's best epoch, or None (no
        ``EarlyStopping(restore_best=True)``).
      active: which models still train.
      reasons: each model's stop reason.
      ran: epochs each model ran.
      kept_epoch: the epoch of each model's last finite state (−1: init).
      early_stop: the early stopping rule, or None.
      many: whether the train state carries a model axis.
      trackers: each model's early-stopping tracker (replayed from the
        history), or None.
    """

    history: dict[str, list]
    done: int
    best: Any
    active: np.ndarray
    reasons: list[str]
    ran: np.ndarray
    kept_epoch: np.ndarray
    early_stop: EarlyStopping | None = None
    many: bool = False
    trackers: list | None = None

    def __post_init__(self):
        es, n = self.early_stop, len(self.active)
        if es is not None and self.trackers is None:
            values = np.asarray(self.history.get(es.monitor, []), np.float32)
            values = values.reshape(-1, n)
            self.trackers = [es.replay(values[:, i]) for i in range(n)]

    @classmethod
    def fresh(cls, run: Run, ts: TrainState) -> Progress:
        """Returns the progress before the first epoch."""
        n, es = run.models, run.early_stopping
        best = None
        if es is not None and es.restore_best:  # a copy: ts is donated
            best = _trees.copy(_kept(ts))
        return cls(
            {},
            0,
            best,
            np.ones(n, bool),
            ["completed"] * n,
            np.zeros(n, int),
            np.full(n, -1),
            es,
            run.many,
        )

    @classmethod
    def restored(cls, run: Run, previous, best) -> Progress:
        """Returns the progress saved in ``previous`` (a FitResult or a
        ManyResult read from a checkpoint), every model active again;
        ``best``: the best epoch's (params, state), or None."""
        n = run.models
        history = {}
        for k, v in previous.history.items():
            v = np.asarray(v, np.float32).reshape(len(v), n)
            history[k] = [v] if k == "step_loss" else list(v)
        done = int(previous.epochs)
        ran = np.full(n, done) if not run.many else np.asarray(previous.model_epochs)
        return cls(
            history,
            done,
            best,
            np.ones(n, bool),
            ["completed"] * n,
            ran.copy(),
            np.full(n, done - 1),
            run.early_stopping,
            run.many,
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
        self.kept_epoch[self.active] = epoch

    def early_stopping(self, epoch: int, logs: dict, ts: TrainState) -> None:
        """Updates each running model's tracker; keeps the params that improved."""
        es = self.early_stop
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
            self.best = _select(improved, _kept(ts), self.best, self.many)

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


def _kept(ts: TrainState) -> tuple:
    """Returns what a result holds of a train state: (params, state, ema)."""
    return ts.params, ts.state, ts.ema


def _select(mask: np.ndarray, new, old, many: bool):
    """Returns per model ``new`` where ``mask`` else ``old``, as fresh buffers."""
    if not many:
        return _trees.copy(new if mask[0] else old)
    return _trees.where(jnp.asarray(mask), new, old)


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


def train(
    run: Run,
    ts: TrainState,
    train_keys: Key,
    progress: Progress,
    *,
    save: Callable[[Any], None] | None = None,
    finish: Callable[[TrainState, Progress], Any],
) -> Any:
    """Returns ``finish(ts, progress)`` after up to ``run.epochs`` more epochs.

    ``train_keys``: the training keys. ``save(result)``, when given, receives
    ``finish(...)`` after every epoch (the checkpoint). An exception in a
    callback saves the progress first, then propagates with the epoch named.
    """
    bar = _progress_bar(run.progress, progress.done + run.epochs, progress.done)
    current = [ts]
    epoch_of = epochs_of(run, train_keys)

    def save_now():
        if save is not None:
            save(finish(current[0], progress))

    try:
        for epoch in range(progress.done, progress.done + run.epochs):
            ts, logs = epoch_of(ts, epoch, progress.active)
            current[0] = ts
            progress.record(epoch, logs)
            progress.early_stopping(epoch, logs, ts)
            progress.callbacks(run.callbacks, epoch, logs, ts, save_now)
            save_now()
            if bar is not None:
                bar.update(1)
                loss = np.nanmin(np.atleast_1d(logs["loss"]))
                bar.set_postfix(loss=f"{loss:.4g}")
            if not progress.active.any():
                break
    finally:
        if bar is not None:
            bar.close()
    return finish(ts, progress)
