"""Arrays that stay on the host (a memmap, any array-like), read a chunk at a time.

The run's plan (the example indices the on-device path would gather for the
same key) says which rows each batch holds; :meth:`HostArrays.chunks` reads
``steps_per_call`` batches of them at a time, each chunk's distinct rows in
increasing order (front to back through a memmap's file), stacked as one
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

from collections.abc import Iterator
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from annjax import _checks

__all__ = ["Chunk", "HostArrays", "gather", "weight_dtype"]


class Chunk(NamedTuple):
    """``steps`` batches stacked: ``x`` (steps, B, ...), ``y`` (steps, B, ...)
    or None, ``w`` (steps, B) weights (0 for padding). With a model axis
    (``fit_many``) every array has a leading (models,) axis first."""

    x: Any
    y: Any
    w: Any


def weight_dtype() -> np.dtype:
    """The dtype of the on-device path's batch weights (float32, or float64
    under ``jax_enable_x64``)."""
    return np.dtype(jnp.result_type(float))


def _read(arr, rows: np.ndarray) -> np.ndarray:
    """Returns ``arr[rows]`` for sorted, distinct ``rows``, as a NumPy array."""
    if hasattr(arr, "shape") and hasattr(arr, "dtype"):  # ndarray, memmap, h5py
        return np.asarray(arr[rows])
    return np.stack([np.asarray(arr[int(i)]) for i in rows])


def gather(arr, idx) -> np.ndarray:
    """Returns ``arr[idx]`` (shape ``idx.shape + row shape``), read in order.

    The distinct indices are read once each, in increasing order (a memmap
    reads its file front to back; h5py-like arrays need increasing indices),
    then put in ``idx``'s order. Any array-like with ``__getitem__`` works; one
    without NumPy indexing is read row by row.
    """
    idx = np.asarray(idx)
    rows, where = np.unique(idx.reshape(-1), return_inverse=True)
    values = _read(arr, rows)
    return values[where].reshape(idx.shape + values.shape[1:])


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

    def chunks(self, idx, weights, steps_per_call: int) -> Iterator[Chunk]:
        """Yields the planned batches, ``steps_per_call`` at a time, on the host.

        Args:
          idx: the plan's example indices, ``(steps, B)`` (or ``(models,
            steps, B)``): :func:`annjax.training.epoch.plan`'s ``idx``, so the
            order equals the on-device path's for the same key.
          weights: the plan's weights, same shape (0 for padding).
          steps_per_call: batches per chunk (the last chunk may hold fewer).
        """
        idx, weights = np.asarray(idx), np.asarray(weights, weight_dtype())
        k = _checks.integer("steps_per_call", steps_per_call, minimum=1)
        total = idx.shape[-2]
        for start in range(0, total, k):
            part = idx[..., start : start + k, :]
            y = None if self.y is None else gather(self.y, part)
            yield Chunk(gather(self.x, part), y, weights[..., start : start + k, :])

    def require_checkpointable(self, why: str = "resume") -> None:
        """Accepts: a checkpoint always resumes host arrays (``why`` unused)."""
        del why

    def get_state(self) -> None:
        """Returns None: the run's key and epoch say where the data stands."""
        return None

    def set_state(self, state) -> None:
        """Accepts the None that :meth:`get_state` returned."""
        del state
