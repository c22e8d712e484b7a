"""Which training data is streamed: the choice by type, and ``ann.data.stream``.

Arrays that fit on the device go there whole, and each compiled epoch gathers
its batches there (the default). Two other kinds of data stay on the host and
reach the compiled loop one chunk of ``steps_per_call`` batches at a time
(one ``jax.device_put`` per chunk, prepared in a background thread:
:mod:`annjax.data.prefetch`):

- host arrays (:class:`~annjax.data.host.HostArrays`): a ``numpy.memmap`` of
  a file larger than memory, or any array-like with ``__len__`` and
  ``__getitem__``, shuffled by the run's key exactly as on the device;
- an iterable of batches (:class:`~annjax.data.iterables.Batches`): a
  generator, a grain ``DataLoader`` or dataset iterator, a torch
  ``DataLoader`` yielding NumPy, ``tf.data``'s ``as_numpy_iterator()``, in
  the source's own order.

The choice is made from the argument's type, never from its size
(:func:`source_of`); :func:`stream` wraps anything explicitly.

Examples:
  >>> import numpy as np, annjax as ann
  >>> X = np.zeros((6, 2), np.float32); y = np.zeros(6, np.int32)
  >>> ann.data.source_of((X, y)) is None  # arrays: on the device, as today
  True
  >>> type(ann.data.stream(X, y)).__name__
  'HostArrays'
  >>> def gen():
  ...     while True:
  ...         yield X[:4], y[:4]
  >>> type(ann.data.source_of(gen(), steps_per_epoch=3)).__name__
  'Batches'
"""

from __future__ import annotations

import collections.abc as abc

import numpy as np

from annjax import _checks
from annjax.data.host import HostArrays
from annjax.data.iterables import Batches, is_batch

__all__ = ["source_of", "stream"]


def source_of(data, *, steps_per_epoch: int | None = None):
    """Returns the streamed source ``data`` stands for, or None for arrays.

    By type, never by size: a :class:`HostArrays` or :class:`Batches` is
    returned as is; an ``(X, y)`` pair of arrays is None (it goes to the
    device) unless X or y is a ``numpy.memmap`` (then :class:`HostArrays`);
    a ``numpy.memmap`` alone (``predict``'s X) is :class:`HostArrays`, any
    other array None; any other iterable is :class:`Batches`
    (``steps_per_epoch`` passed on).

    Raises:
      ValueError: for a memmap in a tuple that is not a pair (X, y).
    """
    if isinstance(data, HostArrays | Batches):
        return data
    if isinstance(data, np.memmap):
        return HostArrays(data)
    if hasattr(data, "shape") or isinstance(data, str | bytes | dict):
        return None
    is_pair = isinstance(data, tuple | list) and len(data) in (2, 3)
    if is_pair and not is_batch(data[0]):
        if not any(isinstance(a, np.memmap) for a in data):
            return None
        if len(data) != 2:
            raise _checks.fail("data", "a pair (X, y) of arrays", f"{len(data)} items")
        return HostArrays(*data)
    if isinstance(data, abc.Iterable):
        return Batches(data, steps_per_epoch=steps_per_epoch)
    return None


def stream(data, y=None, *, steps_per_epoch: int | None = None, models=None):
    """Returns a source that ``fit``, ``evaluate`` and ``predict`` stream.

    ``stream(X, y)`` keeps arrays on the host (:class:`HostArrays`: any
    array-like, read per chunk; ``y`` may be None for ``predict``), however
    small they are; ``stream(iterable, steps_per_epoch=...)`` streams batches
    (:class:`Batches`; ``models=`` for ``fit_many`` batches whose arrays
    carry a leading model axis).

    Raises:
      TypeError: for ``steps_per_epoch`` or ``models`` with arrays.
      ValueError: for the checks of :class:`HostArrays` and :class:`Batches`.

    Examples:
      >>> import numpy as np, annjax as ann
      >>> len(ann.data.stream(np.zeros((5, 3)), np.zeros(5)))
      5
    """
    iterable = isinstance(data, abc.Iterable) and not hasattr(data, "shape")
    if y is not None or not iterable:
        if steps_per_epoch is not None or models is not None:
            raise TypeError(
                "stream: steps_per_epoch and models are for an iterable of "
                "batches, not for arrays (their length gives the steps)."
            )
        return HostArrays(data, y)
    return Batches(data, steps_per_epoch=steps_per_epoch, models=models)
