"""JAX's persistent compilation cache, turned on by an explicit call.

The lecture's workflows train small models a few times, so most of a run's
time is XLA compilation. With the persistent cache a second process running
the same script reads every compiled program from disk and compiles nothing.

Importing annjax changes no JAX setting and touches no file: the cache is
on only after :func:`enable_compilation_cache` (``ann.enable_compilation_cache``),
which sets JAX's process-wide cache options, so it then serves every JAX
program of the process (Flax's, a user's own), not only annjax's.

Where the cache lives, in this order:

* a cache the user configured (``jax.config.jax_compilation_cache_dir``, set
  in code or through ``JAX_COMPILATION_CACHE_DIR``) is kept as it is;
* the ``path`` argument;
* ``$ANNJAX_CACHE_DIR``; the value ``off`` (or ``0``, ``false``, ``none``, or
  an empty string) leaves the cache off;
* else ``~/.cache/annjax/xla`` (``$XDG_CACHE_HOME/annjax/xla`` when set).

The folder is bounded (:func:`prune`): at most once a day, when the cache is
enabled, the least recently used entries go until the folder holds at most
``max_mb`` megabytes (``$ANNJAX_CACHE_MAX_MB`` replaces it; ``off``, 0 or
``inf`` for no bound).
"""

from __future__ import annotations

import contextlib
import math
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
    "enable_compilation_cache",
    "max_bytes",
    "prune",
]

_OFF = ("off", "0", "false", "no", "none", "")
_ENV = "ANNJAX_CACHE_DIR"

#: The default bound on the cache folder: 1 GiB (``max_mb=1024``).
MAX_BYTES = 1 << 30
#: :func:`prune` scans the folder at most once per this many seconds.
PRUNE_EVERY = 24 * 3600.0
_MAX_ENV = "ANNJAX_CACHE_MAX_MB"
_MARK = ".annjax-pruned"


def default_dir() -> Path:
    """Returns the folder used when no ``path`` nor ``$ANNJAX_CACHE_DIR`` is given."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "annjax" / "xla"


def cache_dir() -> str | None:
    """Returns the persistent compilation cache's folder in use, or None (off)."""
    return jax.config.jax_compilation_cache_dir


def _set_unless_user(name: str, value) -> None:
    """Sets a JAX option unless the user set it through its environment variable."""
    if name.upper() not in os.environ:
        jax.config.update(name, value)


def enable_compilation_cache(
    path: str | os.PathLike | None = None, max_mb: float | None = 1024
) -> str | None:
    """Returns the cache folder after turning JAX's persistent cache on (None: off).

    Process-wide: it sets JAX's own options (``jax_compilation_cache_dir``,
    and, unless set in the environment, ``jax_persistent_cache_min_compile_time_secs
    = 0`` and ``jax_persistent_cache_min_entry_size_bytes = -1`` so that every
    program is kept, however quick to compile), so the cache then serves
    every JAX program of this process. A cache the user configured
    (``jax_compilation_cache_dir`` already set) is kept as it is, thresholds
    included. ``$ANNJAX_CACHE_DIR=off`` turns it off. A folder that cannot be
    created leaves the cache off, with a warning.

    Args:
      path: the cache folder; default ``$ANNJAX_CACHE_DIR``, else
        ``~/.cache/annjax/xla``.
      max_mb: the folder's bound in megabytes (pruned at most once a day,
        least recently used first, see :func:`prune`); None, 0 or ``inf``:
        no bound. ``$ANNJAX_CACHE_MAX_MB``, when set, replaces it (a value
        that is not a number warns and keeps ``max_mb``).

    Raises:
      ValueError: for a ``max_mb`` that is NaN or not a number.

    Examples:
      >>> import annjax as ann
      >>> folder = ann.enable_compilation_cache()  # doctest: +SKIP
    """
    limit = max_bytes(max_mb)
    configured = jax.config.jax_compilation_cache_dir
    if configured:  # the user's own cache: leave it (and its thresholds) alone
        return configured
    value = os.environ.get(_ENV) if path is None else os.fspath(path)
    if path is None and value is not None and value.strip().lower() in _OFF:
        return None
    folder = Path(value).expanduser() if value is not None else default_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warnings.warn(
            f"annjax: the compilation cache stays off: cannot create {folder} ({exc})",
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    _set_unless_user("jax_persistent_cache_min_compile_time_secs", 0.0)
    _set_unless_user("jax_persistent_cache_min_entry_size_bytes", -1)
    if limit is not None:
        with contextlib.suppress(OSError):  # a full disk never stops training
            prune(folder, limit)
    return str(folder)


def _megabytes(name: str, value) -> float | None:
    """Returns ``value`` as megabytes (None: no bound), or raises ValueError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"{name}: expected a number of megabytes or None, got {value!r}."
        )
    if math.isnan(value):
        raise ValueError(f"{name}: expected a number of megabytes or None, got nan.")
    return None if value <= 0 or math.isinf(value) else float(value)


def max_bytes(max_mb: float | None = 1024) -> int | None:
    """Returns the bound on the cache folder in bytes, or None (no bound).

    ``$ANNJAX_CACHE_MAX_MB`` when set (``off``, 0 or less, ``inf`` or a
    value too large for a float such as ``1e400``: no bound), else
    ``max_mb``. An environment value that is not a number warns and keeps
    ``max_mb``.

    Examples:
      >>> from annjax._cache import max_bytes
      >>> max_bytes(1), max_bytes(float("inf")), max_bytes(None)
      (1048576, None, None)
    """
    megabytes = _megabytes("max_mb", max_mb)
    value = os.environ.get(_MAX_ENV)
    if value is not None:
        if value.strip().lower() in _OFF:
            return None
        try:
            megabytes = _megabytes(_MAX_ENV, float(value))
        except ValueError:
            warnings.warn(
                f"annjax: {_MAX_ENV}={value!r} is not a number of megabytes; the "
                f"compilation cache keeps its bound of {max_mb} MB",
                stacklevel=2,
            )
    if megabytes is None:
        return None
    # in integers: megabytes × 2**20 overflows a float from about 1.7e302 MB
    return (int(megabytes) << 20) + int(megabytes % 1 * (1 << 20))


def prune(folder, limit: int, *, every: float = PRUNE_EVERY, now=None) -> int:
    """Returns how many cache entries were deleted to bring ``folder`` under ``limit``.

    Runs at most once per ``every`` seconds: a marker file's time says when it
    last did, so other calls cost one ``stat``. Entries go least recently
    used first (the later of a file's access and modification times), down
    to 90 % of ``limit``, so that a full folder is not pruned at every start.

    Written here because JAX's own bound (``jax_compilation_cache_max_size``)
    scans the whole folder at every write (measured in ``benchmarks/README.md``).
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

    Built on JAX's public listeners
    (``jax.monitoring.register_event_duration_secs_listener`` and
    ``register_event_listener``), it relies on two event names JAX records:
    ``/jax/core/compile/backend_compile_duration`` (one per program handed to
    XLA, with its duration) and ``/jax/compilation_cache/cache_hits`` (one per
    program read from the persistent cache). Should JAX rename them, the
    counts read 0.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from annjax._cache import count_compiles
      >>> with count_compiles() as c:
      ...     _ = jax.jit(lambda x: x * 3.0 + 1.0)(jnp.ones(7))
      >>> c.requests >= 1
      True
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
