"""The IDX file format of MNIST: a reader that names what is wrong with a bad file.

An IDX file is a big-endian header followed by the raw array:

- the magic number, 4 bytes ``0x00 0x00 T D``: two zero bytes, the element type
  code ``T`` and the number of dimensions ``D`` (so ``0x00000803`` is a 3-D array
  of uint8, MNIST's images, and ``0x00000801`` a 1-D array of uint8, its labels);
- ``D`` sizes, each an unsigned 32-bit big-endian integer;
- the elements, row-major, big-endian, ``prod(sizes) * itemsize`` bytes exactly.

Files may be gzip-compressed (recognised by their content, not their name).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

__all__ = ["IDX_DTYPES", "read_idx"]

#: Element type codes of the IDX format (third byte of the magic number).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str | os.PathLike) -> bytes:
    """Returns the file's bytes, decompressed if the file is gzip."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(
            f"{os.fspath(path)}: corrupt gzip data ({exc}); the download was "
            "probably cut short. Delete the file and fetch it again."
        ) from exc


def read_idx(
    path: str | os.PathLike, *, expected_magic: int | None = None
) -> np.ndarray:
    """Returns the array stored in an IDX file (raw or gzip-compressed).

    The element type and shape come from the header (see the module
    docstring); the result is in native byte order, ``uint8`` for MNIST.

    Args:
      path: the file, e.g. ``t10k-images-idx3-ubyte.gz``.
      expected_magic: if given, the magic number the file must carry, e.g.
        ``0x00000803`` for MNIST images or ``0x00000801`` for its labels.

    Raises:
      ValueError: for a bad magic number (not IDX, unknown type code, or not
        ``expected_magic``), a truncated header or body, or bytes left over after
        the data; the message names the file and what is wrong.
      FileNotFoundError: if the file does not exist.

    Examples:
      MNIST's test images read as ``(10000, 28, 28)`` uint8; here a file of two
      blank 28 × 28 images, written with its header (magic ``0x00000803``:
      unsigned bytes, 3 dimensions; then the sizes, big-endian):

      >>> import gzip, os, struct, tempfile
      >>> from annjax.datasets import read_idx
      >>> path = os.path.join(tempfile.mkdtemp(), "images-idx3-ubyte.gz")
      >>> with gzip.open(path, "wb") as f:
      ...     _ = f.write(struct.pack(">I3I", 0x00000803, 2, 28, 28) + bytes(2 * 784))
      >>> images = read_idx(path, expected_magic=0x00000803)
      >>> images.shape, images.dtype
      ((2, 28, 28), dtype('uint8'))
    """
    name = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(
            f"{name}: truncated IDX header: expected at least 4 bytes, got {len(data)}."
        )
    (magic,) = struct.unpack(">I", data[:4])
    zeros, code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zeros != 0 or code not in IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{name}: bad magic number 0x{magic:08X}: expected 0x0000TTDD with a type "
            f"code TT in {{{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)}}} and "
            "DD >= 1 dimensions; this is not an IDX file."
        )
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{name}: bad magic number: expected 0x{expected_magic:08X}, "
            f"got 0x{magic:08X}."
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{name}: truncated IDX header: expected {header_size} bytes for "
            f"{ndim} dimensions, got {len(data)}."
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header_size
    if got < expected:
        raise ValueError(
            f"{name}: truncated data: expected {expected} bytes for shape {shape}, "
            f"got {got}."
        )
    if got > expected:
        raise ValueError(
            f"{name}: too much data: expected {expected} bytes for shape {shape}, "
            f"got {got} ({got - expected} trailing bytes)."
        )
    array = np.frombuffer(data, dtype, expected // dtype.itemsize, header_size)
    array = array.reshape(shape)
    return array.astype(dtype.newbyteorder("="))
