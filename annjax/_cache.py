"""JAX's persistent compilation cache, on by default for annjax.

The lecture's workflows train small models a few times, so most of a run's
time is XLA compilation. With the persistent cache a second process running
the same script reads every compiled program from disk and compiles nothing.

Where the cache lives, in this order:

* a cache the user configured (``jax.config.jax_compilation_cache_dir``, set
  in code or through ``JAX_COMPILATION_CACHE_DIR``) is left untouched;
* ``$ANNJAX_CACHE_DIR``; the value ``off`` (or ``0``, ``false``, ``none``, or
  an empty string) leaves the cache off;
* else ``~/.cache/annjax/xla`` (``$XDG_CACHE_HOME/annjax/xla`` when set).

Clear it with ``rm -rf ~/.cache/annjax/xla`` (or the folder of
:func:`cache_dir`). annjax keeps every entry, however small or quick to
compile (the lecture's models compile in well under JAX's default threshold
of one second), unless the user set those thresholds themselves. The folder
is bounded: past :data:`MAX_BYTES` JAX deletes the least recently used
entries (``jax_compilation_cache_max_size``, which needs the ``filelock``
package; ``JAX_COMPILATION_CACHE_MAX_SIZE`` in bytes overrides it, ``-1``
for no bound). An entry of the lecture's models takes 2 to 60 kB.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jax

__all__ = ["CompileCount", "cache_dir", "count_compiles", "enable"]

_OFF = ("off", "0", "false", "no", "none", "")
_ENV = "ANNJAX_CACHE_DIR"

#: The bound on annjax's cache folder: 1 GiB, some 40,000 compiled programs
#: of the lecture's size.
MAX_BYTES = 1 << 30


def default_dir() -> Path:
    """Returns the folder annjax uses when ``$ANNJAX_CACHE_DIR`` is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "annjax" / "xla"


def cache_dir() -> str | None:
    """Returns the persistent compilation cache's folder in use, or None (off)."""
    return jax.config.jax_compilation_cache_dir


def _set_unless_user(name: str, value) -> None:
    """Sets a JAX option unless the user set it through its environment variable."""
    if name.upper() not in os.environ:
        jax.config.update(name, value)


def enable() -> str | None:
    """Returns the cache folder after turning the persistent cache on (None: off).

    Called once when annjax is imported. A cache the user configured wins;
    ``ANNJAX_CACHE_DIR=off`` disables annjax's own. Thresholds: every entry
    is kept (``jax_persistent_cache_min_compile_time_secs = 0``,
    ``jax_persistent_cache_min_entry_size_bytes = -1``) unless set in the
    environment. The folder is bounded by :data:`MAX_BYTES` (least recently
    used entries go first) unless ``JAX_COMPILATION_CACHE_MAX_SIZE`` is set.
    A folder that cannot be created leaves the cache off.
    """
    configured = jax.config.jax_compilation_cache_dir
    if configured:  # the user's own cache: leave it (and its thresholds) alone
        return configured
    value = os.environ.get(_ENV)
    if value is not None and value.strip().lower() in _OFF:
        return None
    folder = Path(value).expanduser() if value is not None else default_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    _set_unless_user("jax_persistent_cache_min_compile_time_secs", 0.0)
    _set_unless_user("jax_persistent_cache_min_entry_size_bytes", -1)
    if importlib.util.find_spec("filelock") is not None:  # JAX's eviction needs it
        _set_unless_user("jax_compilation_cache_max_size", MAX_BYTES)
    return str(folder)


_COMPILE = "/jax/core/compile/backend_compile_duration"
_HIT = "/jax/compilation_cache/cache_hits"


@dataclass
class CompileCount:
    """What XLA did while :func:`count_compiles` was open.

    Attributes:
      requests: programs handed to the backend (new to this process).
      hits: those read from the persistent cache instead of compiled.
      seconds: time spent in the backend, hits included.
    """

    requests: int = 0
    hits: int = 0
    seconds: float = 0.0

    @property
    def compiled(self) -> int:
        """Returns the programs XLA really compiled: requests − cache hits."""
        return self.requests - self.hits


@contextlib.contextmanager
def count_compiles() -> Iterator[CompileCount]:
    """Yields a :class:`CompileCount` filled by ``jax.monitoring`` events.

    Example::

        with count_compiles() as c:
            ann.fit(model, data, epochs=1)
        print(c.compiled, c.hits, c.seconds)
    """
    count = CompileCount()

    def on_duration(event: str, duration: float, **_) -> None:
        if event == _COMPILE:
            count.requests += 1
            count.seconds += duration

    def on_event(event: str, **_) -> None:
        if event == _HIT:
            count.hits += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(on_duration)
        jax.monitoring.unregister_event_listener(on_event)
