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
of one second), unless the user set those thresholds themselves.

The folder is bounded (:func:`prune`): at most once a day, when annjax is
imported, the least recently used entries go until the folder holds at most
:data:`MAX_BYTES` (``$ANNJAX_CACHE_MAX_MB`` in MB, ``off`` for no bound). An
entry of the lecture's models takes 2 to 70 kB.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jax

__all__ = [
    "CompileCount",
    "cache_dir",
    "count_compiles",
    "enable",
    "max_bytes",
    "prune",
]

_OFF = ("off", "0", "false", "no", "none", "")
_ENV = "ANNJAX_CACHE_DIR"

#: The bound on annjax's cache folder: 1 GiB, some 40,000 compiled programs
#: of the lecture's size.
MAX_BYTES = 1 << 30
#: :func:`prune` scans the folder at most once per this many seconds.
PRUNE_EVERY = 24 * 3600.0
_MAX_ENV = "ANNJAX_CACHE_MAX_MB"
_MARK = ".annjax-pruned"


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
    environment. The folder is pruned to :func:`max_bytes` (:func:`prune`).
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
    limit = max_bytes()
    if limit is not None:
        with contextlib.suppress(OSError):  # a cache never stops an import
            prune(folder, limit)
    return str(folder)


def max_bytes() -> int | None:
    """Returns the bound on annjax's cache folder in bytes, or None (none).

    ``$ANNJAX_CACHE_MAX_MB`` (megabytes; ``off``, ``0`` or less: no bound),
    else :data:`MAX_BYTES`. A value that is not a number warns and keeps
    the default.
    """
    value = os.environ.get(_MAX_ENV)
    if value is None:
        return MAX_BYTES
    if value.strip().lower() in _OFF:
        return None
    try:
        megabytes = float(value)
    except ValueError:
        warnings.warn(
            f"annjax: {_MAX_ENV}={value!r} is not a number of megabytes; the "
            f"compilation cache keeps its bound of {MAX_BYTES >> 20} MB",
            stacklevel=2,
        )
        return MAX_BYTES
    return int(megabytes * (1 << 20)) if megabytes > 0 else None


def prune(folder, limit: int, *, every: float = PRUNE_EVERY, now=None) -> int:
    """Returns how many cache entries were deleted to bring ``folder`` under ``limit``.

    Runs at most once per ``every`` seconds: a marker file's time says when it
    last did, so other calls cost one ``stat``. Entries go least recently
    used first (the later of a file's access and modification times), down
    to 90 % of ``limit``, so that a full folder is not pruned at every start.

    Written here because JAX's own bound (``jax_compilation_cache_max_size``)
    scans the whole folder at every write: with 5,000 entries in the folder
    it added 2 s to a cold run of ``benchmarks/many_vs_sequential.py``.
    """
    now = time.time() if now is None else now
    mark = Path(folder) / _MARK
    with contextlib.suppress(FileNotFoundError):
        if now - mark.stat().st_mtime < every:
            return 0
    entries, total = [], 0
    with os.scandir(folder) as found:
        for entry in found:
            if entry.name.endswith("-cache") and entry.is_file():
                st = entry.stat()
                entries.append((max(st.st_atime, st.st_mtime), entry.path, st.st_size))
                total += st.st_size
    removed = 0
    goal = limit if total <= limit else 0.9 * limit
    for _, path, size in sorted(entries):
        if total <= goal:
            break
        for name in (path, path[: -len("cache")] + "atime"):  # JAX's LRU's too
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
        total, removed = total - size, removed + 1
    mark.touch()
    os.utime(mark, (now, now))
    return removed


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
