"""Arrays that stay on the host (a memmap, any array-like), read a chunk at a time.

The run's plan (the example indices the on-device path would gather for the
same key) says which rows each batch holds; :meth:`HostArrays.chunks` reads
``steps_per_call`` batches of them at a time (:func:`gather`), stacked as one
:class:`Chunk` for one ``jax.device_put``.

Examples:
  >>> import numpy as np
  >>> from annjax.data.host import HostArrays
  >>> X = np.arange(12, dtype=np.float32).reshape(6, 2); y = np.arange(6) % 2
  >>> idx = np.array([[5, 0], [3, 1], [2, 4]]); w = np.ones((3, 2), np.float32)
  >>> [c.x.shape for c in HostArrays(X, y).chunks(idx, w, 2)]
  [(2, 2, 2), (1, 2, 2)]
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from annjax import _checks

__all__ = [
    "Buffers",
    "Chunk",
    "HostArrays",
    "Padding",
    "gather",
    "release_freed",
    "weight_dtype",
]


class Chunk(NamedTuple):
    """``steps`` batches stacked: ``x`` (steps, B, ...), ``y`` (steps, B, ...)
    or None, ``w`` (steps, B) weights (0 for padding). With a model axis
    (``fit_many``) every array has a leading (models,) axis first."""

    x: Any
    y: Any
    w: Any


class Padding(NamedTuple):
    """The weights of an epoch's batches when only padding weighs 0: slot
    ``j`` of batch ``t`` weighs 1 when ``t·batch + j < n`` (the last batch
    filled up with repeats), else 0. :meth:`HostArrays.chunks` makes each
    chunk's weights as it reads it, so the epoch's are never held at once.

    Examples:
      >>> from annjax.data.host import Padding
      >>> Padding(n=5, batch=2).rows(1, 3)
      array([[1., 1.],
             [1., 0.]], dtype=float32)
    """

    n: int
    batch: int
    columns: slice = slice(None)  #: the slots of each batch that are read
    models: tuple = ()  #: a leading model axis (``fit_many``): ``(models,)``

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Returns the weights of batches ``start:stop`` (a read-only view
        broadcast over the model axis)."""
        slots = np.arange(start * self.batch, stop * self.batch).reshape(-1, self.batch)
        w = (slots[:, self.columns] < self.n).astype(weight_dtype())
        return np.broadcast_to(w, (*self.models, *w.shape))


def weight_dtype() -> np.dtype:
    """The dtype of the on-device path's batch weights (float32, or float64
    under ``jax_enable_x64``)."""
    return np.dtype(jnp.result_type(float))


class Buffers:
    """Host buffers for one pass's chunks, each reused once no array holds it.

    A streamed epoch reads each chunk into a buffer of 16 MiB by default,
    in the prefetch thread, and frees it in another once the device has
    used it. From ``malloc``
    those freed buffers stayed in glibc's arenas: anonymous memory grew with
    the number of chunks, i.e. with the file (1 GB and 4 GB memmaps: 523 and
    645 MiB at peak, 180 to 210 of them in use). Fresh pages instead cost a
    page fault each (23 ms per 16 MiB on the 2-core test machine, more than
    the read itself). So :meth:`take` hands out a buffer that no array views
    any more (its reference count: a NumPy view, a ``jax.device_put`` that
    uses it in place or copies from it asynchronously, each holds one), and
    maps a new one only when all are in use: a pool keeps as many as chunks
    are alive at once (the prefetch depth plus those in flight), its pages
    are written again and again, and they are unmapped with the pool (a
    streamed ``fit`` keeps one pool for all its epochs). Being page-aligned,
    they are used in place by the CPU backend's ``jax.device_put``, without
    a copy.

    Examples:
      >>> import numpy as np
      >>> from annjax.data.host import Buffers
      >>> pool = Buffers()
      >>> a = pool.take((512, 1024), np.float32)   # 2 MiB: mapped
      >>> b = pool.take((512, 1024), np.float32)   # a is alive: another one
      >>> del a
      >>> c = pool.take((256, 1024), np.float32)   # a's pages, reused
      >>> len(pool)
      2
    """

    #: Smaller buffers come from ``malloc`` (``np.empty``), never pooled.
    MIN_BYTES = 2**20

    def __init__(self):
        self._owned: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._owned)

    def take(self, shape: tuple, dtype) -> np.ndarray:
        """Returns an uninitialised array of ``shape`` and ``dtype``."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if nbytes < self.MIN_BYTES:
            return np.empty(shape, dtype)
        for i in range(len(self._owned)):
            # 2: the list and the call's argument; any view adds one
            if self._owned[i].nbytes >= nbytes and sys.getrefcount(self._owned[i]) == 2:
                return self._owned[i][:nbytes].view(dtype).reshape(shape)
        owner = np.frombuffer(mmap.mmap(-1, nbytes), np.uint8)
        self._owned.append(owner)
        return owner.view(dtype).reshape(shape)


def release_freed() -> None:
    """Hands the memory that glibc's ``malloc`` holds freed back to the OS
    (``malloc_trim(0)``); does nothing with another C library.

    A streamed epoch calls it before and after the draw of its plan, and as
    its reading starts and ends: the draw's temporaries (on the CPU
    backend, n-sized arrays in the host's memory, freed in XLA's threads'
    arenas), the plan's sort and the previous epoch's small buffers leave
    freed memory in glibc's arenas that it keeps, and which would otherwise
    pile up, or sit under the next phase's peak.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


def _read(arr, rows: np.ndarray) -> np.ndarray:
    """Returns ``arr[rows]`` for sorted, distinct ``rows``, as a NumPy array."""
    if hasattr(arr, "shape") and hasattr(arr, "dtype"):  # h5py-like
        return np.asarray(arr[rows])
    return np.stack([np.asarray(arr[int(i)]) for i in rows])


def gather(arr, idx, buffers: Buffers | None = None) -> np.ndarray:
    """Returns ``arr[idx]`` (shape ``idx.shape + row shape``).

    A NumPy array or memmap is read with one ``np.take`` in ``idx``'s
    order, each byte copied once (``mode="wrap"`` after a bounds check:
    NumPy buffers a take into ``out`` that may raise, a second copy). Read
    so, a memmap whose pages are cached is read fastest; one that is not
    costs a page fault per row in any order (its chunk's rows are spread
    over the file). Any other array-like reads its distinct indices once
    each, in increasing order (h5py-like arrays need increasing indices),
    then they are put in ``idx``'s order; one without NumPy indexing is
    read row by row. With ``buffers``, a NumPy array's rows are read into
    and returned in its reused buffers (:class:`Buffers`).

    Raises:
      IndexError: for an index out of ``arr``'s range.
    """
    idx = np.asarray(idx)
    if isinstance(arr, np.ndarray):  # ndarray, memmap
        n, flat = len(arr), idx.reshape(-1)
        if flat.size and (flat.min() < -n or flat.max() >= n):
            raise IndexError(
                f"gather: expected indices in [-{n}, {n}), got "
                f"{int(flat.min())}..{int(flat.max())}."
            )
        row = arr.shape[1:]
        out = None if buffers is None else buffers.take((flat.size, *row), arr.dtype)
        out = np.take(np.asarray(arr), flat, axis=0, out=out, mode="wrap")
        return out.reshape(idx.shape + row)
    rows, where = np.unique(idx.reshape(-1), return_inverse=True)
    values = _read(arr, rows)
    return values[where.reshape(-1)].reshape(idx.shape + values.shape[1:])


class HostArrays:
    """Arrays that stay on the host (a memmap, any array-like), read per chunk.

    Args:
      x: the inputs, ``len(x)`` examples, indexable by example.
      y: the targets (same length), or None (``predict``).

    Raises:
      ValueError: for no example or lengths that differ.
    """

    checkpointable = True  # the order is the run's key schedule: nothing to save

    def __init__(self, x, y=None):
        for part, arr in (("X", x), ("y", y)):
            if arr is not None and not hasattr(arr, "__getitem__"):
                raise TypeError(
                    f"stream {part}: expected an array-like with __len__ and "
                    f"__getitem__, got {type(arr).__name__}."
                )
        n = len(x)
        if n == 0:
            raise _checks.fail("stream X", "at least one example", "length 0")
        if y is not None and len(y) != n:
            raise ValueError(
                f"stream: expected X and y with the same number of examples, "
                f"got {n} and {len(y)}."
            )
        self.x, self.y, self.n = x, y, n

    def __len__(self) -> int:
        return self.n

    def example(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Returns the first example's ``(x, y)`` (shapes and dtypes)."""
        return self.take(np.zeros(1, np.int64))

    def take(self, idx) -> tuple[np.ndarray, np.ndarray | None]:
        """Returns ``(x[idx], y[idx])`` read in order (y None without targets)."""
        return gather(self.x, idx), None if self.y is None else gather(self.y, idx)

    def chunks(
        self, idx, weights, steps_per_call: int, buffers: Buffers | None = None
    ) -> Iterator[Chunk]:
        """Yields the planned batches, ``steps_per_call`` at a time, on the host.

        Args:
          idx: the plan's example indices, ``(steps, B)`` (or ``(models,
            steps, B)``): :func:`annjax.training.epoch.plan`'s ``idx``, so the
            order equals the on-device path's for the same key.
          weights: the plan's weights, same shape (0 for padding), or a
            :class:`Padding` that makes them chunk by chunk.
          steps_per_call: batches per chunk (the last chunk may hold fewer).
          buffers: the pool the chunks are read into; a run's, reused pass
            after pass (a pool of this pass's own by default).
        """
        idx = np.asarray(idx)
        if not isinstance(weights, Padding):
            weights = np.asarray(weights, weight_dtype())
        k = _checks.integer("steps_per_call", steps_per_call, minimum=1)
        release_freed()  # what was freed before the reading (the plan's sort)
        total = idx.shape[-2]
        buffers = Buffers() if buffers is None else buffers
        for start in range(0, total, k):
            part = idx[..., start : start + k, :]
            y = None if self.y is None else gather(self.y, part, buffers)
            x = gather(self.x, part, buffers)
            if isinstance(weights, Padding):
                w = weights.rows(start, start + part.shape[-2])
            else:
                w = weights[..., start : start + k, :]
            yield Chunk(x, y, w)
            del x, y  # the pool reuses them once the device is done
        release_freed()

    def require_checkpointable(self, why: str = "resume") -> None:
        """Accepts: a checkpoint always resumes host arrays (``why`` unused)."""
        del why

    def get_state(self) -> None:
        """Returns None: the run's key and epoch say where the data stands."""
        return None

    def set_state(self, state) -> None:
        """Accepts the None that :meth:`get_state` returned."""
        del state
