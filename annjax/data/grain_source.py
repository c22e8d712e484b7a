"""grain as the recommended loader: ``ann.data.grain_source(X, y, batch_size)``.

Needs the optional extra ``annjax[data]`` (``pip install grain``); nothing
imports grain until :func:`grain_source` is called. The pipeline is
``MapDataset.range(steps).repeat().map_with_index(batch order).map(read
rows)``: each element is a whole batch, so grain's machinery runs once per
batch, not once per example. Batch ``i`` of the stream is batch
``i mod steps`` of epoch ``i // steps``, whose order is one vectorised
permutation of the n examples drawn from ``numpy.random.default_rng([seed,
epoch])`` (a different order every epoch), and each batch's rows are read in
increasing order (front to back through a memmap's file). Since the element
is a function of its index alone, the iterator's ``get_state``/``set_state``
(grain's next index) let a checkpoint resume the stream exactly. grain runs
no reading thread of its own (annjax's prefetch thread reads ahead); with
``workers > 0`` the reading (and ``transform``) runs in grain's worker
processes, where a memmap is reopened from its file, never copied.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from annjax import _checks
from annjax.data.host import gather
from annjax.data.iterables import Batches

__all__ = ["grain_source"]


class _Order:
    """Returns the sorted row indices of stream batch ``i``: batch ``i mod
    steps`` of epoch ``i // steps``, cut from that epoch's permutation (one
    vectorised draw per epoch, kept while the epoch is read)."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.steps = math.ceil(n / batch_size)
        self._epoch = (-1, None)  # (epoch, its order): one tuple, swapped whole

    def __getstate__(self):
        return {**self.__dict__, "_epoch": (-1, None)}

    def order(self, epoch: int) -> np.ndarray:
        """Returns the order of the n examples in ``epoch``."""
        cached, order = self._epoch
        if cached != epoch:
            if self.shuffle:
                order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            else:
                order = np.arange(self.n)
            self._epoch = (epoch, order)
        return order

    def __call__(self, index: int, _step) -> np.ndarray:
        epoch, step = divmod(index, self.steps)
        rows = self.order(epoch)[step * self.batch_size : (step + 1) * self.batch_size]
        return np.sort(rows)


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
        batch = tuple(gather(a, idx) for a in self._open)
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


def _default_worker_profiling() -> None:
    """Lets grain's workers start where no absl flags were parsed (a script, a
    notebook, pytest): grain (0.2.18, with jaxlib's profiler hooks) reads its
    flag ``grain_enable_multiprocess_worker_profiling`` when it starts them,
    and absl refuses to read an unparsed flag. Marked given, the flag keeps its
    default (False, no profiling), as grain marks its own flags in the workers."""
    from absl import flags

    name = "grain_enable_multiprocess_worker_profiling"
    if name in flags.FLAGS and not flags.FLAGS.is_parsed():
        flags.FLAGS[name].present = True


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
      seed: the shuffle's seed; epoch e's order is
        ``numpy.random.default_rng([seed, e]).permutation(n)``.
      shuffle: False reads the examples in order.
      transform: ``(x, y) -> (x, y)`` on each batch of host arrays, run in
        grain (in the workers with ``workers > 0``): augmentation there.
      workers: grain worker processes (0: read in annjax's prefetch thread).

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
    seed = _checks.integer("seed", seed, minimum=0)
    order = _Order(n, batch_size, seed, bool(shuffle))
    # one element per batch: grain's per-element machinery runs once per batch
    ds = (
        grain.MapDataset.range(order.steps)
        .repeat()
        .map_with_index(order)
        .map(_Rows((X, y), transform))
    )
    # no reading thread of grain's: annjax's prefetch thread reads the chunks ahead
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    if workers:
        _default_worker_profiling()
        options = grain.MultiprocessingOptions(num_workers=workers)
        it = it.mp_prefetch(options)
    return Batches(iter(it), steps_per_epoch=order.steps)
