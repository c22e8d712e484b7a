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
  memory with the same key.
- An iterable keeps its own order; the step keys (dropout, augmentation)
  are the plan's for ``n = steps_per_epoch · B``.

On the device a chunk is one flat array of its rows and a plan of local
indices into it (per model for ``fit_many``, whose host arrays each model
reads in its own order), so ``run_steps`` and ``finish`` are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from annjax import _checks
from annjax._types import Key
from annjax.data.host import Chunk, HostArrays, weight_dtype
from annjax.data.iterables import Batches
from annjax.data.prefetch import Prefetch
from annjax.training.arguments import fit_targets
from annjax.training.epoch import (
    TRAIN_EVAL_EXAMPLES,
    Plan,
    compiled,
    concat_logs,
    part_tracking,
)
from annjax.training.inputs import host_array
from annjax.training.step import output_shape, predict_batched
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
    """A run's streamed training data: its source and the conversion of
    each chunk on the host (the dtype rule, the targets the loss expects)."""

    source: HostArrays | Batches
    convert: Callable[[Chunk], Chunk]
    unroll: bool = False


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
    given (arrays), or the head of a streamed ``source`` (:func:`head`).

    Raises:
      ValueError: for ``steps_per_epoch`` with arrays, streamed data on a
        mesh, or batches for another number of models than ``fit_many``'s.
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
    refuse_mesh(mesh)
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
    return head(source)


def refuse_mesh(mesh) -> None:
    """Raises ValueError for a mesh: streaming is on one device for now."""
    if mesh is not None:
        raise _checks.fail(
            "mesh",
            "None with streamed data (a memmap, an iterable of batches)",
            "a mesh",
            "Put the arrays on the mesh yourself, or stream on one device.",
        )


def resolve(source, spec, x, batch_size: int, steps_per_call):
    """Returns ``(spec, stream, steps_per_call)`` for a streamed ``source``
    (the batch size its own for an iterable; chunks of at most
    :data:`CHUNK_BYTES`), or ``spec`` unchanged and no stream for arrays."""
    if source is None:
        return spec, None, steps_per_call
    spec = spec._replace(batch_size=batch_size_of(source, batch_size))
    out = output_shape(spec.model, x.shape[1:])
    to_rule = functools.partial(
        convert, loss=spec.loss, out_shape=out, metrics=spec.metrics
    )
    _, steps = steps_of(source, spec.batch_size)
    bytes_per_batch = x[:1].nbytes * spec.batch_size
    unroll = steps_per_call is not None  # as the on-device path's k steps
    if steps_per_call is None:
        steps_per_call = max(1, CHUNK_BYTES // max(1, bytes_per_batch))
    return spec, Stream(source, to_rule, unroll), min(steps_per_call, steps)


def batch_size_of(source, batch_size: int) -> int:
    """Returns the batch size of a streamed epoch: ``batch_size`` (at most
    n) for host arrays, the iterable's own for batches."""
    if isinstance(source, HostArrays):
        return min(batch_size, len(source))
    return source.example()[0].shape[0 if source.models is None else 1]


def steps_of(source, batch_size: int) -> tuple[int, int]:
    """Returns ``(n, steps)``: the examples the plan draws for and the
    batches per epoch."""
    if isinstance(source, HostArrays):
        return len(source), -(-len(source) // batch_size)
    return source.steps_per_epoch * batch_size, source.steps_per_epoch


def _host_chunks(run, steps: Plan, index: int):
    """Yields the epoch's chunks on the host, converted."""
    src, k = run.stream.source, run.steps_per_call
    if isinstance(src, HostArrays):
        idx, w = jax.device_get((steps.idx, steps.weights))
        chunks = src.chunks(idx, w, k)
    else:
        chunks = src.chunks(index, k)
    return map(run.stream.convert, chunks)


@functools.lru_cache(maxsize=64)
def _local(shape: tuple, per_model: bool) -> np.ndarray:
    """Returns each batch's indices into a flattened chunk whose weights have
    ``shape`` (``(steps, B)``, or ``(models, steps, B)``: rows per model when
    ``per_model``, else rows shared by every model)."""
    if len(shape) == 3 and not per_model:
        shared = np.arange(shape[1] * shape[2], dtype=np.int32).reshape(shape[1:])
        return np.broadcast_to(shared, shape)
    return np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)


def _flat(chunk: Chunk, models: int | None) -> tuple:
    """Returns ``(x, y, idx, w)``: the chunk's rows as one flat array and the
    plan's local indices into it (per model for ``fit_many``)."""
    lead = chunk.w.ndim  # 3: a batch per model; 2: shared batches
    x = chunk.x.reshape(-1, *chunk.x.shape[lead:])
    y = chunk.y.reshape(-1, *chunk.y.shape[lead:])
    w = chunk.w
    if models is not None and lead == 2:
        w = np.broadcast_to(w, (models, *w.shape))
    return x, y, _local(w.shape, lead == 3), w


def epoch(run, ts: TrainState, train_keys: Key, index):
    """Returns ``(train_state, logs, copy of ts)`` after one streamed epoch.

    The same steps as the loop's ``steps_per_call`` path: ``plan``, then
    ``run_steps`` per chunk (the profiler measures the same steps, see
    ``part_tracking``), then ``finish`` with the last chunk, the head of the
    data and the epoch's number of examples.
    """
    spec, many, how = run.spec, run.many, run.vectorize
    n, total = steps_of(run.stream.source, spec.batch_size)
    steps = compiled("plan", how, spec)(spec, train_keys, index, n, run.hyper)
    old = jax.tree_util.tree_map(jnp.copy, ts)  # the guard's fallback
    axis, models = (1 if many else 0), (run.models if many else None)
    parts, start, last = [], 0, None
    put = functools.partial(_put, models=models)
    with Prefetch(_host_chunks(run, steps, int(index)), put=put) as chunks:
        for x, y, idx, w in chunks:
            end = start + w.shape[axis]
            # dynamic: the start is data, so one program serves every chunk
            # (a static slice compiled one per chunk: memory grew with n)
            step_keys = jax.lax.dynamic_slice_in_dim(
                steps.keys, start, end - start, axis=axis
            )
            local = Plan(idx, w, step_keys)
            part_spec, track = part_tracking(spec, start, end, total)
            ts, part = compiled("run_steps", how, part_spec)(
                part_spec, ts, run.hyper, x, y, local, track, run.stream.unroll
            )
            parts.append(part)
            _bound(parts)
            start, last = end, (x, y, local)
    src = run.stream.source
    real = len(src) if isinstance(src, HostArrays) else src.rows
    logs = concat_logs(parts, axis)
    head = (run.x, run.y)
    out = compiled("finish", how, spec)(
        spec, ts, logs, last, run.val, run.hyper, index, head, real
    )
    return ts, out, old


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


def _put(chunk: Chunk, models: int | None) -> Any:
    return jax.device_put(_flat(chunk, models))


# ---------------------------------------------------------- evaluate, predict


def _in_order(source: HostArrays, batch_size: int):
    """Returns the plan ``(idx, w)`` that reads host arrays front to back,
    the last batch padded with weight-0 rows as :func:`plan` pads."""
    n = len(source)
    b = min(batch_size, n)
    slots = np.arange(-(-n // b) * b)
    idx = (slots % n).astype(np.int32).reshape(-1, b)
    return idx, (slots < n).astype(weight_dtype()).reshape(-1, b)


def outputs(model, params, state, source, batch_size: int, convert) -> tuple:
    """Returns ``(pred, y)`` on every example of ``source``, in its order, on
    the device (y None for host arrays without targets).

    Chunks of :data:`CHUNK_BYTES` are read and transferred in the background
    while the previous one is predicted; only the outputs (and targets) of
    all the examples are kept, never the inputs.
    """
    if isinstance(source, HostArrays):
        idx, w = _in_order(source, batch_size)
        b, n = idx.shape[1], len(source)
        k = max(1, CHUNK_BYTES // max(1, source.example()[0].nbytes * b))
        chunks = source.chunks(idx, w, min(k, len(idx)))
    else:
        x = source.example()[0]
        b = x.shape[0]
        chunks = source.chunks(0, max(1, CHUNK_BYTES // max(1, x.nbytes)))
    preds, ys = [], []
    with Prefetch(map(convert, chunks)) as it:
        for chunk in it:
            x = chunk.x.reshape(-1, *chunk.x.shape[2:])
            preds.append(_predict(model, params, state, x, b))
            _bound(preds)
            if chunk.y is not None:
                ys.append(chunk.y.reshape(-1, *chunk.y.shape[2:]))
    n = len(source) if isinstance(source, HostArrays) else source.rows
    pred = jnp.concatenate(preds)[:n]
    return pred, (jnp.concatenate(ys)[:n] if ys else None)


_predict = jax.jit(predict_batched, static_argnums=(0, 4))
