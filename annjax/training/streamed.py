"""The streamed epoch: the same compiled steps, fed a chunk at a time from the host.

For data that stays on the host (:mod:`annjax.data.stream`: host arrays and
memmaps, any iterable of batches) the loop runs an epoch as
:func:`annjax.training.epoch.plan`, then ``run_steps`` on each chunk of
``steps_per_call`` batches, then ``finish``: the functions of the on-device
path with ``steps_per_call=k``, compiled once for every full chunk. Each
chunk is read on the host, converted by the dtype rule, and transferred with
one ``jax.device_put`` in a background thread while the previous one trains
(:class:`annjax.data.prefetch.Prefetch`); nothing waits on the device
between steps.

- Host arrays follow the run's plan: the permutation and the step keys of
  ``plan(key, epoch, n)``, so a memmap trains exactly as the same array in
  memory with the same key. Its random words are drawn on the device
  (:func:`annjax.training.epoch.draw`) and sorted on the host
  (:func:`~annjax.training.epoch.host_order`, the same order with less
  memory than the device's sort on a CPU backend).
- An iterable keeps its own order; the step keys (dropout, augmentation)
  are the plan's for ``n = steps_per_epoch · B`` (nothing is sorted).

On the device a chunk is its batches ``(batches, B, ...)`` and a plan whose
indices are batch numbers (per model for ``fit_many``, whose host arrays
each model reads in its own order): the step's ``x[i]`` takes one whole
batch, so ``run_steps`` and ``finish`` are unchanged.

On a mesh each batch is split along its rows over ``"data"``, as the
on-device path splits it, and each process reads and transfers only its
own rows of every batch (:func:`annjax.training.mesh.local_rows`,
:func:`~annjax.training.mesh.place_part`): host arrays follow the one
global plan, each process gathering its columns of it; an iterable is each
process's own loader, its batches that process's part of the global ones.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from annjax import _checks
from annjax._types import Key
from annjax.data.host import (
    Buffers,
    Chunk,
    HostArrays,
    Padding,
    release_freed,
)
from annjax.data.iterables import Batches
from annjax.data.prefetch import Prefetch
from annjax.training import mesh as _mesh
from annjax.training import trees as _trees
from annjax.training.arguments import fit_targets
from annjax.training.epoch import (
    TRAIN_EVAL_EXAMPLES,
    Plan,
    compiled,
    concat_logs,
    host_order,
    part_tracking,
)
from annjax.training.inputs import host_array
from annjax.training.step import output_shape, predict_batched, predict_steps
from annjax.training.types import TrainState

__all__ = [
    "Stream",
    "check",
    "epoch",
    "head",
    "outputs",
    "resolve",
    "restore",
    "state",
]

#: The host memory a chunk's inputs may take when ``steps_per_call`` is not
#: given: 16 MiB (128 MNIST batches of 128), far above the size at which a
#: transfer's fixed cost matters, far below any device's memory.
CHUNK_BYTES = 16 * 2**20


class Stream(NamedTuple):
    """A run's streamed training data: its source, the conversion of each
    chunk on the host (the dtype rule, the targets the loss expects), and
    for host arrays the run's chunk buffers: reused epoch after epoch, since
    fresh pages cost a page fault each (mapping a pass's buffers anew made
    the first chunks of every epoch wait on the host)."""

    source: HostArrays | Batches
    convert: Callable[[Chunk], Chunk]
    unroll: bool = False
    buffers: Buffers | None = None


def head(source) -> tuple[np.ndarray, np.ndarray]:
    """Returns the first training examples ``(X, y)`` of ``source`` on the
    host: what ``fit`` checks and infers shapes from, and what its
    ``train_eval_*`` values read (host arrays: the first
    :data:`TRAIN_EVAL_EXAMPLES` rows, as on the device; an iterable: its
    first batch's real rows)."""
    if isinstance(source, HostArrays):
        if source.y is None:
            raise ValueError("train_data: expected targets y, got stream(X) alone.")
        m = np.arange(min(len(source), TRAIN_EVAL_EXAMPLES))
        return source.take(m)
    x, y, w = source.example()
    if source.models is not None:
        x, y, w = x[0], y[0], w[0]
    real = int(np.flatnonzero(w > 0)[-1]) + 1 if (w > 0).any() else len(w)
    return x[:real], y[:real]


def convert(
    chunk: Chunk, *, loss, out_shape, metrics, name: str = "train_data"
) -> Chunk:
    """Returns ``chunk`` in the dtypes of ``fit``'s rule, its targets those
    the loss expects (:func:`annjax.training.arguments.fit_targets`)."""
    x = host_array(f"{name} X", chunk.x)
    y = host_array(f"{name} y", chunk.y, labels=True)
    rows = y.reshape(-1, *y.shape[chunk.w.ndim :])
    y = fit_targets(name, rows, loss, out_shape, metrics)
    return Chunk(x, y.reshape(*chunk.w.shape, *y.shape[1:]), chunk.w)


def check(source, train_data, steps_per_epoch, mesh, models: int | None, resume=None):
    """Returns the training data for ``fit``'s checks: ``train_data`` as
    given (arrays), or the head of a streamed ``source`` (:func:`head`; on
    several processes an iterable's is every process's first batch).

    Raises:
      ValueError: for ``steps_per_epoch`` with arrays, batches for another
        number of models than ``fit_many``'s, or on a mesh, batches that do
        not split over this process's devices or processes that disagree
        on the epoch (:func:`check_shards`).
    """
    if source is None:
        if steps_per_epoch is not None:
            raise _checks.fail(
                "steps_per_epoch",
                "None for arrays (their length gives the steps; it is for an "
                "iterable of batches)",
                steps_per_epoch,
            )
        return train_data
    per_model = getattr(source, "models", None)
    if per_model is not None and per_model != models:
        raise ValueError(
            f"train_data: expected batches for {models or 'one'} model(s) "
            f"({'fit_many' if models else 'fit'}), got a stream of batches for "
            f"{per_model} models (stream(..., models={per_model})). Yield one "
            "batch per key of fit_many, or shared batches without models=."
        )
    if resume is not None:
        source.require_checkpointable("resume")
    if mesh is None:
        return head(source)
    mesh = _mesh.check(mesh, many=models is not None, models=models or 1)
    check_shards(source, mesh)
    x, y = head(source)
    if isinstance(source, Batches) and jax.process_count() > 1:
        x, y = _everyones_head(source)
    return x, y


def check_shards(source, mesh, name: str = "train_data") -> None:
    """Raises ValueError when ``source`` (the argument ``name``) cannot be
    split over ``mesh``.

    An iterable's batches are this process's part of each global batch:
    their rows must split evenly over this process's devices along
    ``"data"``, next to each other (:func:`annjax.training.mesh.local_rows`).
    On several processes, every process must stream as many
    batches per epoch, of as many rows (iterables), or the same number of
    examples (host arrays): compared here, at the start, with one
    collective, since a process that runs out later would leave the others
    waiting.
    """
    d, own = _mesh.data_devices(mesh)
    _mesh.local_rows(mesh, d)  # each process's devices neighbours on "data"
    if isinstance(source, Batches):
        b = source.example()[0].shape[0 if source.models is None else 1]
        if b % own:
            raise ValueError(
                f"{name}: expected batches whose rows split evenly over the "
                f"{own} devices of this process on the mesh's 'data' axis, got "
                f"batches of {b} rows. Yield batches of a multiple of {own} rows "
                f"(e.g. {own * max(1, b // own)})"
                + (
                    f"; each global batch is {d // own} processes' batches."
                    if d > own
                    else "."
                )
            )
        mine = {"steps_per_epoch": source.steps_per_epoch, "rows per batch": b}
    else:
        mine = {"number of examples": len(source)}
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    every = np.asarray(multihost_utils.process_allgather(np.array([*mine.values()])))
    for j, what in enumerate(mine):
        values = every[:, j].tolist()
        if len(set(values)) > 1:
            raise ValueError(
                f"{name}: expected the same {what} on every process, got "
                f"{values} (process 0, 1, ...). Every process streams its part "
                "of every global batch: give each the same number of batches "
                "of the same size (steps_per_epoch=, a loader sharded evenly)."
            )


def _everyones_head(source: Batches) -> tuple[np.ndarray, np.ndarray]:
    """Returns the real rows of every process's first batch, process 0's
    first: the global first batch, the same on every process."""
    from jax.experimental import multihost_utils

    x, y, w = source.example()
    if source.models is not None:
        x, y, w = x[0], y[0], w[0]
    x, y, w = (
        np.asarray(a) for a in multihost_utils.process_allgather((x, y, w), tiled=True)
    )
    real = w > 0
    return x[real], y[real]


def resolve(source, spec, x, batch_size: int, steps_per_call):
    """Returns ``(spec, stream, steps_per_call)`` for a streamed ``source``
    (the global batch size: ``batch_size`` for host arrays, the iterable's
    own times the processes sharing each batch; chunks of at most
    :data:`CHUNK_BYTES`), or ``spec`` unchanged and no stream for arrays."""
    if source is None:
        return spec, None, steps_per_call
    spec = spec._replace(batch_size=batch_size_of(source, batch_size, spec.mesh))
    if isinstance(source, HostArrays):
        _mesh.check_batch("batch_size", batch_size, spec.mesh, len(source))
    out = output_shape(spec.model, x.shape[1:])
    to_rule = functools.partial(
        convert, loss=spec.loss, out_shape=out, metrics=spec.metrics
    )
    _, steps = steps_of(source, spec.batch_size)
    bytes_per_batch = x[:1].nbytes * spec.batch_size
    unroll = steps_per_call is not None  # as the on-device path's k steps
    if steps_per_call is None:
        steps_per_call = max(1, CHUNK_BYTES // max(1, bytes_per_batch))
    pool = Buffers() if isinstance(source, HostArrays) else None
    stream = Stream(source, to_rule, unroll, pool)
    return spec, stream, min(steps_per_call, steps)


def batch_size_of(source, batch_size: int, mesh=None) -> int:
    """Returns the (global) batch size of a streamed epoch: ``batch_size``
    (at most n) for host arrays; for an iterable its own, times the
    processes whose batches make one global batch on ``mesh``."""
    if isinstance(source, HostArrays):
        return min(batch_size, len(source))
    d, own = _mesh.data_devices(mesh)
    return source.example()[0].shape[0 if source.models is None else 1] * d // own


def steps_of(source, batch_size: int) -> tuple[int, int]:
    """Returns ``(n, steps)``: the examples the plan draws for and the
    batches per epoch."""
    if isinstance(source, HostArrays):
        return len(source), -(-len(source) // batch_size)
    return source.steps_per_epoch * batch_size, source.steps_per_epoch


def _host_chunks(run, words, n: int, index: int):
    """Yields the epoch's chunks on the host, converted: this process's rows
    of each batch (host arrays: the plan's columns that its devices hold,
    the plan's order sorted on the host from its ``words``,
    :func:`annjax.training.epoch.host_order`; an iterable: what its own
    loader yields)."""
    src, k = run.stream.source, run.steps_per_call
    if isinstance(src, HostArrays):
        words = _mesh.to_host(words)  # waits for the draw
        release_freed()  # the draw's temporaries, before the sort's
        idx = host_order(words, run.spec.batch_size)
        mine = _mesh.local_rows(run.spec.mesh, idx.shape[-1])
        w = Padding(n, idx.shape[-1], mine, idx.shape[:-2])
        chunks = src.chunks(idx[..., mine], w, k, run.stream.buffers)
    else:
        chunks = src.chunks(index, k)
    return map(run.stream.convert, chunks)


@functools.lru_cache(maxsize=64)
def _numbers(shape: tuple, per_model: bool) -> np.ndarray:
    """Returns each step's batch in a chunk of batches whose weights have
    ``shape`` (``(steps, B)``, or ``(models, steps, B)``: batches per model
    when ``per_model``, else batches shared by every model)."""
    if len(shape) == 3 and not per_model:
        return np.broadcast_to(np.arange(shape[1], dtype=np.int32), shape[:2])
    return np.arange(int(np.prod(shape[:-1])), dtype=np.int32).reshape(shape[:-1])


def _batches(chunk: Chunk, models: int | None) -> tuple:
    """Returns ``(x, y, idx, w)``: the chunk's batches ``(batches, B, ...)``
    and each step's batch number (per model for ``fit_many``), so that the
    step's ``x[i]`` slices one whole batch (no gather, none across devices)."""
    lead = chunk.w.ndim  # 3: a batch per model; 2: shared batches
    x = chunk.x.reshape(-1, *chunk.x.shape[lead - 1 :])
    y = chunk.y.reshape(-1, *chunk.y.shape[lead - 1 :])
    w = chunk.w
    if models is not None and lead == 2:
        w = np.broadcast_to(w, (models, *w.shape))
    return x, y, _numbers(w.shape, lead == 3), w


def epoch(run, ts: TrainState, train_keys: Key, index):
    """Returns ``(train_state, logs, copy of ts)`` after one streamed epoch.

    The same steps as the loop's ``steps_per_call`` path: ``plan`` (its
    :func:`~annjax.training.epoch.draw` here, sorted on the host), then
    ``run_steps`` per chunk (the profiler measures the same steps, see
    ``part_tracking``), then ``finish`` with the last chunk, the head of the
    data and the epoch's number of examples.
    """
    spec, many, how = run.spec, run.many, run.vectorize
    n, total = steps_of(run.stream.source, spec.batch_size)
    release_freed()  # the last epoch's leftovers, before the draw's temporaries
    # the plan's words and step keys; its order is sorted on the host
    words, keys = compiled("draw", how, spec)(spec, train_keys, index, n, run.hyper)
    old = _trees.copy(ts)  # the guard's fallback
    axis, models = (1 if many else 0), (run.models if many else None)
    logs, recent, start, last = _Logs(axis), [], 0, None
    put = functools.partial(_put, models=models, mesh=spec.mesh, rows=spec.batch_size)
    host = _host_chunks(run, words, n, int(index))
    del words  # sorted: its memory goes before the reading starts
    with Prefetch(host, put=put) as chunks:
        for x, y, idx, w in chunks:
            end = start + w.shape[axis]
            # the start traced: one program serves every chunk (a static
            # slice compiled one per chunk: memory grew with n)
            step_keys = _trees.take(keys, start, size=end - start, axis=axis)
            local = Plan(idx, w, step_keys)
            part_spec, track = part_tracking(spec, start, end, total)
            ts, part = compiled("run_steps", how, part_spec)(
                part_spec, ts, run.hyper, x, y, local, track, run.stream.unroll
            )
            logs.add(part)
            recent = [*recent[-IN_FLIGHT:], part]
            _bound(recent)
            start, last = end, (x, y, local)
    src = run.stream.source
    real = len(src) if isinstance(src, HostArrays) else _rows(src.rows, spec.mesh)
    head = (run.x, run.y)
    out = compiled("finish", how, spec)(
        spec, ts, logs.joined(), last, run.val, run.hyper, index, head, real
    )
    return ts, out, old


class _Logs:
    """An epoch's per-step logs, joined :data:`JOIN` parts at a time as the
    chunks' steps return them (then :data:`JOIN` joined ones at a time, and
    so on up): the same logs as joining them all at the end, bit for bit.

    Joining P parts at once compiles a program of P operands, and P grows
    with the data: for the 335 chunks of a 4 GB memmap that took 48 MiB of
    host memory (and 0.65 s). Joined so, the programs have at most
    :data:`JOIN` operands, one per level, and the end joins at most
    ``(JOIN − 1)`` parts per level, ``log_JOIN P`` levels.
    """

    def __init__(self, axis: int):
        self.axis, self.levels = axis, [[]]

    def add(self, part: dict) -> None:
        """Adds the logs of the next chunk's steps."""
        self.levels[0].append(part)
        for level in itertools.count():
            if len(self.levels[level]) < JOIN:
                return
            if level + 1 == len(self.levels):
                self.levels.append([])
            self.levels[level + 1].append(concat_logs(self.levels[level], self.axis))
            self.levels[level] = []

    def joined(self) -> dict:
        """Returns the logs of every step added, in step order."""
        # a higher level holds earlier steps than any part below it
        parts = [part for level in reversed(self.levels) for part in level]
        return concat_logs(parts, self.axis)


#: Parts of an epoch's logs joined at once, at most (:class:`_Logs`).
JOIN = 8


def state(stream: Stream | None) -> Any:
    """Returns where ``stream``'s source stands after the last epoch, for the
    checkpoint (None: nothing to save, or a source that cannot be saved)."""
    if stream is None or not stream.source.checkpointable:
        return None
    return stream.source.get_state()


def restore(stream: Stream | None, saved: Callable[[], Any]) -> None:
    """Puts ``stream``'s source where the checkpoint left it (``saved()``
    reads its state).

    Raises:
      ValueError: for a source that cannot be restored (a generator, a
        torch DataLoader): resuming it would silently restart its data.
    """
    if stream is None:
        return
    stream.source.require_checkpointable("resume")
    stream.source.set_state(saved())


#: Chunks dispatched to the device and not yet computed, at most. Dispatch
#: is asynchronous: without this bound the loop would hand the device every
#: chunk of the epoch as fast as the host reads them, each one held until
#: its steps ran, and memory would grow with the data.
IN_FLIGHT = 2


def _bound(results: list) -> None:
    """Waits for the result of the chunk :data:`IN_FLIGHT` before the last:
    once per chunk, never per step, and the device stays busy meanwhile."""
    if len(results) > IN_FLIGHT:
        jax.block_until_ready(results[-1 - IN_FLIGHT])


def _put(chunk: Chunk, models: int | None, mesh, rows: int) -> Any:
    """Returns the chunk on the device(s): this process's rows of each batch
    as its part of global batches of ``rows`` rows split over ``"data"``
    (the step numbers the same everywhere)."""
    x, y, idx, w = _batches(chunk, models)
    if mesh is None:
        return jax.device_put((x, y, idx, w))
    place = functools.partial(_mesh.place_part, mesh=mesh, rows=rows)
    return (
        place(x, axis=1),
        place(y, axis=1),
        place(idx, axis=None),
        place(np.ascontiguousarray(w), axis=w.ndim - 1),
    )


def _rows(rows: int, mesh) -> int:
    """Returns the real rows of an iterable's epoch over every process."""
    if mesh is None or jax.process_count() == 1:
        return rows
    from jax.experimental import multihost_utils

    return int(np.sum(multihost_utils.process_allgather(np.array([rows]))))


# ---------------------------------------------------------- evaluate, predict
# One pass over the data in its order. On a mesh each chunk arrives as its
# batches split along their rows over "data", as fit's chunks do (each
# process reading and transferring only its rows), and each batch is
# predicted split so, as predict_batched splits an in-memory batch.


def example(source, name: str, targets: bool) -> np.ndarray:
    """Returns one example's inputs ``(1, ...)`` of ``source``, for the shape
    checks of ``evaluate`` and ``predict`` (host arrays: the first row only).

    Raises:
      ValueError: for batches of several models (``stream(..., models=)``),
        or host arrays without targets when ``targets``.
    """
    if isinstance(source, HostArrays):
        if targets and source.y is None:
            raise _checks.fail(
                name, "targets y", "stream(X) alone", "Pass ann.data.stream(X, y)."
            )
        return source.example()[0]
    if source.models is not None:
        raise _checks.fail(
            name,
            "batches of one model",
            f"a stream of batches for {source.models} models "
            f"(stream(..., models={source.models}))",
            "Evaluate each model's params on shared batches.",
        )
    return source.example()[0][:1]


def _in_order(n: int, b: int) -> np.ndarray:
    """Returns the indices that read ``n`` examples front to back in batches
    of ``b`` (which may exceed ``n``), the last batch filled up with the
    last example again, which the process holding the end of the data reads
    anyway (weighted 0 by :class:`~annjax.data.host.Padding`)."""
    slots = np.arange(-(-n // b) * b)
    return np.minimum(slots, n - 1).astype(np.int32).reshape(-1, b)


def _pass_batch_size(source, batch_size: int, mesh) -> int:
    """Returns the global batch of a pass over ``source``: for host arrays
    ``min(batch_size, n)`` rounded up to a multiple of the ``"data"``
    devices, as :func:`~annjax.training.step.predict_batched` rounds an
    in-memory one (the padding is cut from the outputs); for an iterable
    :func:`batch_size_of`."""
    if isinstance(source, HostArrays):
        d = _mesh.size(mesh, _mesh.DATA)
        return -(-min(batch_size, len(source)) // d) * d
    return batch_size_of(source, batch_size, mesh)


def _pass_chunks(source, b: int, mesh):
    """Yields this process's chunks of one pass in order, a chunk of at most
    :data:`CHUNK_BYTES` of inputs: host arrays' rows ``local_rows`` of every
    batch of ``b``; an iterable's own batches."""
    if isinstance(source, HostArrays):
        idx = _in_order(len(source), b)
        mine = _mesh.local_rows(mesh, b)
        k = max(1, CHUNK_BYTES // max(1, source.example()[0].nbytes * b))
        w = Padding(len(source), b, mine)
        return source.chunks(idx[:, mine], w, min(k, len(idx)))
    x = source.example()[0]
    return source.chunks(0, max(1, CHUNK_BYTES // max(1, x.nbytes)))


def _put_rows(chunk: Chunk, mesh, rows: int) -> tuple:
    """Returns the chunk's ``(x, y, w)`` on the device(s) (y and w None
    without targets): this process's rows of global batches
    ``(steps, rows, ...)`` split over ``"data"``."""
    if chunk.y is None:
        return _mesh.place_part(chunk.x, mesh, 1, rows), None, None
    place = functools.partial(_mesh.place_part, mesh=mesh, axis=1, rows=rows)
    return place(chunk.x), place(chunk.y), place(np.ascontiguousarray(chunk.w))


def _predict_chunk(model, params, state, x, mesh):
    """Returns the outputs ``(steps, B, ...)`` of a chunk's batches: each
    split over ``"data"`` on a mesh (:func:`predict_steps`, as in memory),
    else :func:`predict_batched` of its rows (as in memory)."""
    if _mesh.size(mesh, _mesh.DATA) > 1:
        return predict_steps(model, params, state, x, mesh)
    out = predict_batched(model, params, state, x.reshape(-1, *x.shape[2:]), x.shape[1])
    return out.reshape(*x.shape[:2], *out.shape[1:])


def _real_ranges(source, b: int, mesh) -> tuple[tuple[int, int], ...]:
    """Returns the ranges of a pass's flat outputs (global batches of ``b``
    rows one after another) that hold real examples, not padding.

    Host arrays are padded after their last example. An iterable pads its
    last batch; on several processes every process pads its own part, so
    the padding lies after each process's real rows of the last global batch
    (their counts gathered with one collective).
    """
    if isinstance(source, HostArrays):
        return ((0, len(source)),)
    mine = _mesh.local_rows(mesh, b)
    full = (source.steps_per_epoch - 1) * b
    last = source.rows - (source.steps_per_epoch - 1) * (mine.stop - mine.start)
    parts = np.array([[mine.start, last]])
    if mesh is not None and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        parts = np.asarray(multihost_utils.process_allgather(parts, tiled=True))
    ranges = [(0, full)] + [(full + a, full + a + r) for a, r in sorted(parts.tolist())]
    merged: list[list[int]] = []
    for a, z in ranges:
        if merged and merged[-1][1] == a:
            merged[-1][1] = z
        elif z > a:
            merged.append([a, z])
    return tuple((a, z) for a, z in merged)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _cut(parts: list, ranges: tuple, mesh):
    """Returns the chunks' outputs ``(steps, B, ...)`` as one array of the
    real examples' rows (``ranges``), replicated on ``mesh``'s devices."""
    a = jnp.concatenate(parts)
    a = a.reshape(-1, *a.shape[2:])
    a = jnp.concatenate([a[start:stop] for start, stop in ranges])
    if mesh is None:
        return a
    return jax.lax.with_sharding_constraint(a, NamedSharding(mesh, P()))


def outputs(model, params, state, source, batch_size: int, convert, mesh=None):
    """Returns ``(pred, y, w)`` on every example of ``source``, in its order,
    on the device, ``w`` the examples' weights (y and w None when ``convert``
    drops the targets); on a mesh, replicated on its devices.

    Chunks of :data:`CHUNK_BYTES` are read and transferred in the background
    while the previous one is predicted; only the outputs (and targets) of
    all the examples are kept, never the inputs. On a mesh each batch is
    split along its rows over ``"data"``, each process reading only its
    rows (host arrays) or its own loader's batches (an iterable); the global
    order is the batches', each one's rows in process order, and the
    padding of short batches is cut (:func:`_real_ranges`).
    """
    b = _pass_batch_size(source, batch_size, mesh)
    chunks = map(convert, _pass_chunks(source, b, mesh))
    put = functools.partial(_put_rows, mesh=mesh, rows=b)
    preds, ys, ws = [], [], []
    with Prefetch(chunks, put=put) as it:
        for x, y, w in it:
            preds.append(_predict_chunk_jit(model, params, state, x, mesh))
            _bound(preds)
            if y is not None:
                ys.append(y)
                ws.append(w)
    ranges = _real_ranges(source, b, mesh)
    pred = _cut(preds, ranges, mesh)
    if not ys:
        return pred, None, None
    return pred, _cut(ys, ranges, mesh), _cut(ws, ranges, mesh)


_predict_chunk_jit = jax.jit(_predict_chunk, static_argnums=(0, 4))
