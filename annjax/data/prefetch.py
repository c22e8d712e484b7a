"""Double buffering: the next chunks prepared and transferred in a background thread.

While the device trains on one chunk, a thread reads the next one on the host
(a memmap's rows, a loader's batches) and transfers it with one
``jax.device_put``; a bounded queue (``depth`` chunks) keeps the host at most
that far ahead, so memory stays flat however large the data. The thread and
the queue are made per :class:`Prefetch` (one per streamed pass), never at
import; the consumer never waits on the device (no host sync per step).

Examples:
  >>> from annjax.data.prefetch import Prefetch
  >>> with Prefetch(iter(range(5)), put=lambda v: v * 10) as items:
  ...     list(items)
  [0, 10, 20, 30, 40]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax

from annjax import _checks

__all__ = ["Prefetch"]

_ITEM, _END, _ERROR = range(3)


class Prefetch:
    """Iterates ``put(item)`` for each item of ``items``, made ``depth`` ahead.

    ``items`` is read and ``put`` called in a background thread (so a
    generator's body, such as a chunk's gathering, runs there too). An
    exception raised there is raised again by ``next`` in the consumer, with
    its traceback. :meth:`close` (or leaving the ``with`` block) stops the
    thread early; a thread blocked inside ``items`` itself (a loader that
    waits) ends when that call returns.

    Args:
      items: an iterator of host values (chunks).
      put: the transfer, ``jax.device_put`` by default (one call per chunk).
      depth: chunks ready ahead of the consumer (2: double buffering).
    """

    def __init__(
        self, items: Iterator, put: Callable[[Any], Any] = jax.device_put, depth=2
    ):
        depth = _checks.integer("depth", depth, minimum=1)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(
            target=self._produce, args=(items, put), name="annjax-prefetch", daemon=True
        )
        self._thread.start()

    def _offer(self, message) -> bool:
        """Puts ``message`` on the queue unless the consumer closed; False then."""
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, items: Iterator, put: Callable) -> None:
        try:
            for item in items:
                if not self._offer((_ITEM, put(item))):
                    return
            self._offer((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._offer((_ERROR, exc))

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _ITEM:
            return value
        self._done = True
        self._thread.join()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stops the thread and drops the chunks made ahead."""
        self._stop.set()
        self._done = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
