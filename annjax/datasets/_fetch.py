"""Where data files are looked for, and how a missing one is downloaded safely.

Search order for every loader of :mod:`annjax.datasets`:

1. the ``path`` the caller gives (a file, or a folder holding the file);
2. ``$ANNJAX_DATA_DIR/<subdir>`` and then ``$ANNJAX_DATA_DIR`` itself;
3. the user cache, ``$XDG_CACHE_HOME/annjax/<subdir>`` (default
   ``~/.cache/annjax/<subdir>``), where downloads are written.

A download is written to a temporary file in the cache folder, checked against
its known size and SHA-256, and only then renamed into place (``os.replace``),
so an interrupted download never leaves a half file that a later run would
trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "DATA_DIR_ENV",
    "Remote",
    "cache_dir",
    "candidates",
    "download",
    "first_existing",
    "not_found",
]

#: The environment variable naming a folder of data files (CI points it at
#: ``shared/datasets``).
DATA_DIR_ENV = "ANNJAX_DATA_DIR"
#: Seconds to wait for a server before giving up (offline machines fail fast).
TIMEOUT_S = 10.0


class Remote(NamedTuple):
    """A downloadable file: its mirrors, exact size in bytes and SHA-256."""

    urls: tuple[str, ...]
    size: int
    sha256: str


def cache_dir(subdir: str = "") -> Path:
    """Returns the user cache folder for annjax data (not created here).

    ``$XDG_CACHE_HOME/annjax/<subdir>``, or ``~/.cache/annjax/<subdir>`` when
    ``XDG_CACHE_HOME`` is unset.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "annjax" / subdir


def _search_dirs(subdir: str) -> list[Path]:
    """Returns the folders searched after the caller's ``path``, in order."""
    dirs = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        root = Path(env).expanduser()
        if subdir:
            dirs.append(root / subdir)
        dirs.append(root)
    dirs.append(cache_dir(subdir))
    return dirs


def candidates(
    path: str | os.PathLike | None,
    names: Sequence[str],
    subdir: str = "",
    *,
    allow_file: bool = True,
) -> list[Path]:
    """Returns every place a file called one of ``names`` is looked for, in order.

    ``path`` may be a folder (searched for ``names``) or, with ``allow_file``,
    the file itself.
    """
    found: list[Path] = []
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir() or not allow_file:
            found.extend(p / name for name in names)
            if subdir:  # a data folder holding e.g. mnist/, as $ANNJAX_DATA_DIR
                found.extend(p / subdir / name for name in names)
        else:
            found.append(p)
    for folder in _search_dirs(subdir):
        found.extend(folder / name for name in names)
    return found


def first_existing(paths: Sequence[Path]) -> Path | None:
    """Returns the first of ``paths`` that is an existing file, or None."""
    return next((p for p in paths if p.is_file()), None)


def not_found(
    what: str, searched: Sequence[Path], expected: Sequence[str], fix: str = ""
) -> FileNotFoundError:
    """Returns a FileNotFoundError listing the places searched and the names."""
    places = "\n".join(f"  - {p}" for p in dict.fromkeys(searched))
    message = (
        f"{what}: not found. Expected file(s) {', '.join(expected)}; "
        f"looked in:\n{places}"
    )
    if fix:
        message += f"\n{fix}"
    return FileNotFoundError(message)


def _fetch_one(url: str, remote: Remote, timeout: float) -> bytes:
    """Returns the verified bytes at ``url``, or raises OSError saying why."""
    chunks, total = [], 0
    with urllib.request.urlopen(url, timeout=timeout) as response:
        while total <= remote.size:  # stop early on an oversized answer
            chunk = response.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    data = b"".join(chunks)
    if len(data) != remote.size:
        raise OSError(f"expected {remote.size} bytes, got {len(data)}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != remote.sha256:
        raise OSError(f"sha256 mismatch: expected {remote.sha256}, got {digest}")
    return data


def download(remote: Remote, dest: Path, timeout: float = TIMEOUT_S) -> Path:
    """Returns ``dest`` after downloading ``remote`` into it atomically.

    Each mirror is tried in turn; the first whose bytes have the expected size
    and SHA-256 is written to a temporary file beside ``dest`` and renamed.

    Raises:
      OSError: when no mirror gave the file (offline, timeout, bad checksum);
        the message lists each mirror and its failure.
    """
    failures = []
    for url in remote.urls:
        try:
            data = _fetch_one(url, remote, timeout)
        # URLError and timeouts are OSErrors; a cut connection HTTPException.
        except (OSError, ValueError, http.client.HTTPException) as exc:
            failures.append(f"{url}: {exc}")
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return dest
    raise OSError("download failed: " + "; ".join(failures))
