"""grain as the recommended loader: ``ann.data.grain_source(X, y, batch_size)``.

Needs the optional extra ``annjax[data]`` (``pip install grain``); nothing
imports grain until :func:`grain_source` is called. The pipeline is
``MapDataset.range(n).shuffle(seed).batch(B).repeat().map(read rows)``:
grain shuffles each epoch differently (its seed folded with the epoch), each
batch's rows are read in increasing order (front to back through a memmap's
file), and the iterator's ``get_state``/``set_state`` let a checkpoint resume
the stream exactly. With ``workers > 0`` the reading (and ``transform``) runs
in grain's worker processes; a memmap is reopened there from its file, never
copied into the workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from annjax import _checks
from annjax.data.host import gather
from annjax.data.iterables import Batches

__all__ = ["grain_source"]


class _Rows:
    """Reads the rows of a batch of indices: picklable for grain's workers
    (a memmap travels as its file name and layout, and is reopened there)."""

    def __init__(self, arrays, transform):
        self.arrays = [_portable(a) for a in arrays]
        self.transform = transform
        self._open = None

    def __getstate__(self):
        return {"arrays": self.arrays, "transform": self.transform, "_open": None}

    def __call__(self, idx):
        if self._open is None:
            self._open = [_reopen(a) for a in self.arrays]
        batch = tuple(gather(a, np.asarray(idx)) for a in self._open)
        return batch if self.transform is None else tuple(self.transform(*batch))


def _portable(arr):
    if isinstance(arr, np.memmap) and arr.filename is not None:
        return ("memmap", arr.filename, arr.dtype.str, arr.shape, arr.offset)
    return arr


def _reopen(arr):
    if isinstance(arr, tuple) and arr and arr[0] == "memmap":
        _, filename, dtype, shape, offset = arr
        return np.memmap(filename, dtype=dtype, mode="r", shape=shape, offset=offset)
    return arr


def grain_source(
    X,
    y,
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    transform: Callable | None = None,
    workers: int = 0,
) -> Batches:
    """Returns a checkpointable stream of ``(x, y)`` batches read by grain.

    Args:
      X, y: host arrays of n examples (a ``numpy.memmap`` stays on disk).
      batch_size: B; each epoch is ⌈n / B⌉ batches, the last one shorter
        (padded with weight-0 rows by the stream).
      seed: grain's shuffle seed (each epoch reshuffled from it).
      shuffle: False reads the examples in order.
      transform: ``(x, y) -> (x, y)`` on each batch of host arrays, run in
        grain (in the workers with ``workers > 0``): augmentation there.
      workers: grain worker processes (0: read in the prefetch thread).

    Returns:
      A :class:`~annjax.data.iterables.Batches` over grain's iterator, with
      ``steps_per_epoch`` = ⌈n / B⌉, that ``fit`` streams and a checkpoint
      resumes.

    Raises:
      ImportError: without grain (``pip install 'annjax[data]'``).
      ValueError: for X, y of different lengths or a bad batch size.

    Examples:
      >>> import numpy as np, annjax as ann
      >>> X = np.arange(10, dtype=np.float32)[:, None]; y = np.arange(10) % 2
      >>> src = ann.data.grain_source(X, y, 4, seed=1)
      >>> src.steps_per_epoch, [c.x.shape for c in src.chunks(0, 3)]
      (3, [(3, 4, 1)])
    """
    try:
        import grain
    except ImportError as exc:
        raise ImportError(
            "grain_source needs grain: pip install 'annjax[data]' (or pip install "
            "grain)."
        ) from exc
    n = len(X)
    if len(y) != n or n == 0:
        raise _checks.fail("grain_source", "X and y of one length >= 1", (n, len(y)))
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    workers = _checks.integer("workers", workers, minimum=0)
    ds = grain.MapDataset.range(n)
    if shuffle:
        ds = ds.shuffle(seed=_checks.integer("seed", seed, minimum=0))
    ds = (
        ds.batch(batch_size, batch_fn=np.asarray).repeat().map(_Rows((X, y), transform))
    )
    # one reading thread: the chunks are read ahead by annjax's own prefetch thread
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2))
    if workers:
        options = grain.MultiprocessingOptions(num_workers=workers)
        it = it.mp_prefetch(options)
    return Batches(iter(it), steps_per_epoch=math.ceil(n / batch_size))
