"""Any iterable of batches, in its own order, a chunk of batches at a time.

A generator, a grain ``DataLoader`` or dataset iterator, a torch
``DataLoader`` yielding NumPy, ``tf.data``'s ``as_numpy_iterator()``: each
yields batches ``(x, y)`` or ``(x, y, w)``. :class:`Batches` checks them
against the first batch (the same shapes and dtypes; only the last batch of
an epoch may be shorter, and it is padded with weight-0 rows as the on-device
path pads its last batch) and stacks ``steps_per_call`` of them per chunk.

An epoch is ``steps_per_epoch`` batches: ``len(iterable)`` when it has a
length, else the argument (required). A re-iterable (a list, a
``DataLoader``) starts a fresh iterator every epoch; an iterator (a
generator) is read on across epochs. A checkpoint can resume the source when
its iterator has ``get_state``/``set_state`` (grain's iterators) or when it
is a sequence; any other source is refused for ``resume=``
(:meth:`Batches.require_checkpointable`), never silently restarted.

Examples:
  >>> import numpy as np
  >>> from annjax.data.iterables import Batches
  >>> X = np.ones((10, 3), np.float32); y = np.zeros(10, np.int32)
  >>> src = Batches([(X[:4], y[:4]), (X[4:8], y[4:8]), (X[8:], y[8:])])
  >>> src.steps_per_epoch, [c.x.shape for c in src.chunks(0, 2)]
  (3, [(2, 4, 3), (1, 4, 3)])
"""

from __future__ import annotations

import collections.abc as abc
from collections.abc import Iterator
from typing import Any

import numpy as np

from annjax import _checks
from annjax.data.host import Chunk, weight_dtype

__all__ = ["Batches", "is_batch"]

#: A length at least this large means "infinite" (grain reports sys.maxsize).
_INFINITE = 2**62


def is_batch(item) -> bool:
    """Returns whether ``item`` is one batch ``(x, y)`` or ``(x, y, w)`` of arrays."""
    return (
        isinstance(item, tuple | list)
        and len(item) in (2, 3)
        and all(hasattr(a, "shape") for a in item)
    )


def _steps(iterable, steps_per_epoch) -> int:
    """Returns the batches per epoch: the argument, else ``len(iterable)``."""
    if steps_per_epoch is not None:
        return _checks.integer("steps_per_epoch", steps_per_epoch, minimum=1)
    length = None
    if isinstance(iterable, abc.Sized):
        try:
            length = len(iterable)
        except TypeError:  # len() raising: no length after all
            length = None
    if length is None or length >= _INFINITE or length < 1:
        got = "an iterable without a length" if length is None else f"length {length}"
        raise _checks.fail(
            "steps_per_epoch",
            "the number of batches per epoch for an iterable without a finite length",
            got,
            "Pass steps_per_epoch=... (batches per epoch), e.g. ceil(n / batch_size).",
        )
    return length


def _signature(batch, lead: int) -> tuple:
    """Returns what every batch must share with the first: the shapes after
    the batch axis and the dtypes (plus the leading model axis, if any)."""
    return tuple((a.shape[:lead], a.shape[lead + 1 :], a.dtype) for a in batch)


def _describe(batch) -> str:
    return ", ".join(f"{a.dtype}{list(a.shape)}" for a in batch)


class Batches:
    """An iterable of batches ``(x, y)``/``(x, y, w)`` streamed in its order.

    Args:
      iterable: yields batches; NumPy or JAX arrays (JAX ones are copied to
        the host, so a source of host arrays is the fast one).
      steps_per_epoch: batches per epoch; required when ``iterable`` has no
        (finite) length.
      models: for ``fit_many``: every array carries a leading axis of this
        many models (one batch per model); None: the batches are shared.

    Raises:
      TypeError: for a non-iterable.
      ValueError: for a missing or invalid ``steps_per_epoch`` or ``models``.
    """

    def __init__(self, iterable, *, steps_per_epoch=None, models=None):
        if not isinstance(iterable, abc.Iterable):
            raise TypeError(
                f"stream: expected an iterable of batches (x, y) or (x, y, w), "
                f"got {type(iterable).__name__}."
            )
        self.source = iterable
        self.steps_per_epoch = _steps(iterable, steps_per_epoch)
        self.models = None if models is None else _checks.integer("models", models, 1)
        self._one_pass = isinstance(iterable, abc.Iterator)
        self._it = iterable if self._one_pass else None
        self._first = None  # the first batch, kept when peeked before epoch 0
        self._signature = None
        self._batch_size = None
        self._real = 0  # rows of the batch checked last, before padding
        self.rows = 0  # real rows of the epoch read last (its n)

    # ----------------------------------------------------------- the batches

    def _iterator(self) -> Iterator:
        """Returns the iterator of the next epoch (a fresh one if re-iterable)."""
        if self._it is None:
            self._it = iter(self.source)
        return self._it

    def example(self) -> tuple:
        """Returns the first batch as host arrays ``(x, y, w)`` (padded, checked),
        read once and kept for the first epoch."""
        if self._first is None:
            it = self._iterator()
            batch = self._check(self._next(it, 0, 0), 0, 0)
            self._first = (batch, self._real)
        return self._first[0]

    def _next(self, it: Iterator, epoch: int, step: int):
        try:
            return next(it)
        except StopIteration:
            raise ValueError(
                f"train_data: expected steps_per_epoch={self.steps_per_epoch} batches "
                f"in epoch {epoch}, got {step}: the iterator ended. A generator is "
                "read once: pass an infinite one, a re-iterable (a list, a "
                "DataLoader), or a smaller steps_per_epoch."
            ) from None
        except Exception as exc:
            exc.add_note(
                f"annjax: raised by the data source in epoch {epoch}, step {step}"
            )
            raise

    def _check(self, batch, epoch: int, step: int) -> tuple:
        """Returns ``batch`` as host arrays ``(x, y, w)``, short ones padded."""
        where = f"train_data: batch {step} of epoch {epoch}"
        if not is_batch(batch):
            raise TypeError(
                f"{where}: expected a tuple (x, y) or (x, y, w) of arrays, "
                f"got {type(batch).__name__}."
            )
        lead = 0 if self.models is None else 1
        batch = tuple(np.asarray(a) for a in batch)
        sizes = {a.shape[lead] if a.ndim > lead else None for a in batch}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(
                f"{where}: expected x, y (and w) with the same number of rows, "
                f"got {_describe(batch)}."
            )
        if self.models is not None and batch[0].shape[0] != self.models:
            raise ValueError(
                f"{where}: expected a leading model axis of {self.models} models "
                f"(fit_many's keys), got {_describe(batch)}. Yield one batch per "
                "model, or shared batches without models=."
            )
        if self._signature is None:
            self._signature = _signature(batch, lead)
            self._batch_size = batch[0].shape[lead]
        return self._pad(batch, where, lead, step)

    def _pad(self, batch: tuple, where: str, lead: int, step: int) -> tuple:
        b, size = batch[0].shape[lead], self._batch_size
        short_ok = step == self.steps_per_epoch - 1 and b < size
        if _signature(batch, lead) != self._signature or (b != size and not short_ok):
            raise ValueError(
                f"{where}: expected the shapes and dtypes of batch 0 "
                f"({self._describe_first()}; only the last batch of an epoch may "
                f"have fewer rows), got {_describe(batch)}. Yield batches of one "
                "shape and dtype (pad or drop a short batch), or split the epoch."
            )
        w = batch[2] if len(batch) == 3 else np.ones(batch[0].shape[: lead + 1])
        w = np.asarray(w, weight_dtype())
        self._real = b
        if b == size:
            return (*batch[:2], w)
        take = np.arange(size) % b  # real rows, weight 0: as the device path pads
        x, y = (np.take(a, take, axis=lead) for a in batch[:2])
        w = np.where(np.arange(size) < b, np.take(w, take, axis=lead), 0).astype(
            w.dtype
        )
        return x, y, w

    def _describe_first(self) -> str:
        return ", ".join(
            f"{dtype}{[*outer, self._batch_size, *inner]}"
            for outer, inner, dtype in self._signature
        )

    def batches(self, epoch: int) -> Iterator[tuple]:
        """Yields the epoch's ``steps_per_epoch`` batches as host ``(x, y, w)``;
        ``self.rows`` counts their real rows (padding excluded)."""
        it = self._iterator()
        self.rows = 0
        for step in range(self.steps_per_epoch):
            if step == 0 and self._first is not None:
                (batch, real), self._first = self._first, None
            else:
                batch = self._check(self._next(it, epoch, step), epoch, step)
                real = self._real
            self.rows += real
            yield batch
        self._state = self._state_of(it)
        if not self._one_pass:
            self._it = None

    def chunks(self, epoch: int, steps_per_call: int) -> Iterator[Chunk]:
        """Yields the epoch's batches stacked ``steps_per_call`` at a time."""
        k = _checks.integer("steps_per_call", steps_per_call, minimum=1)
        part: list = []
        for batch in self.batches(epoch):
            part.append(batch)
            if len(part) == k:
                yield _stack(part, self.models)
                part = []
        if part:
            yield _stack(part, self.models)

    # ------------------------------------------------------------ checkpoints

    def _state_of(self, it) -> Any:
        return it.get_state() if hasattr(it, "get_state") else None

    @property
    def checkpointable(self) -> bool:
        """True when a checkpoint can resume this source where it stood, as
        for a sequence (re-read the same every epoch) or an iterator with
        ``get_state``/``set_state`` (grain's)."""
        if isinstance(self.source, abc.Sequence):
            return True
        it = self._iterator()
        return hasattr(it, "get_state") and hasattr(it, "set_state")

    def require_checkpointable(self, why: str = "resume") -> None:
        """Raises ValueError when a checkpoint cannot restore this source."""
        if not self.checkpointable:
            raise ValueError(
                f"{why}: expected a data source whose position can be saved and "
                f"restored, got a {type(self.source).__name__}, which would restart "
                "from its beginning. Use a grain iterator (get_state/set_state, see "
                "ann.data.grain_source), host arrays (ann.data.stream(X, y)), or "
                "train again from the start."
            )

    def get_state(self) -> Any:
        """Returns the source's position after the last full epoch (grain's
        iterator state), or None for a re-iterable (a fresh iterator each epoch)."""
        self.require_checkpointable("checkpoint")
        return getattr(self, "_state", None) if self._one_pass else None

    def set_state(self, state) -> None:
        """Restores the position :meth:`get_state` returned."""
        self.require_checkpointable("resume")
        if self._one_pass and state is not None:
            self._it.set_state(state)
            self._first = None


def _stack(batches: list[tuple], models: int | None) -> Chunk:
    """Returns the batches stacked along a new step axis (after the model axis)."""
    axis = 0 if models is None else 1
    x, y, w = (np.stack(parts, axis=axis) for parts in zip(*batches, strict=True))
    return Chunk(x, y, w)
