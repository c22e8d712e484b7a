"""MNIST's four IDX files: where they are looked for, downloaded and checked.

:func:`annjax.datasets.load_mnist` turns the arrays read here into a Dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from annjax import _checks
from annjax.datasets import _fetch
from annjax.datasets._idx import read_idx

__all__ = ["MIRRORS", "read_mnist"]

#: Mirrors of the original files (yann.lecun.com itself often refuses robots).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# Size and SHA-256 of the compressed files as published at yann.lecun.com.
_FILES = {
    "train-images-idx3-ubyte.gz": (
        9_912_422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train-labels-idx1-ubyte.gz": (
        28_881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "t10k-images-idx3-ubyte.gz": (
        1_648_877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        4_542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}
_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801


def _locate(
    path: str | os.PathLike | None, gz_name: str, download: bool, failures: list[str]
) -> tuple[Path | None, list[Path]]:
    """Returns (the file, or None, and the folders searched).

    The file may be compressed or not (``gz_name`` without ``.gz``). When it is
    nowhere and ``download`` is set, it is fetched into the cache; a failed
    download is appended to ``failures``.
    """
    names = (gz_name, gz_name.removesuffix(".gz"))
    places = _fetch.candidates(path, names, "mnist", allow_file=False)
    found = _fetch.first_existing(places)
    if found is None and download:
        size, sha256 = _FILES[gz_name]
        remote = _fetch.Remote(tuple(m + gz_name for m in MIRRORS), size, sha256)
        try:
            found = _fetch.download(remote, _fetch.cache_dir("mnist") / gz_name)
        except OSError as exc:
            failures.append(f"{gz_name}: {exc}")
    return found, [p.parent for p in places]


def read_mnist(
    path: str | os.PathLike | None, split: str, download: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Returns the uint8 images (n, H, W) and labels (n,) of an MNIST split.

    Raises:
      FileNotFoundError: a file neither found nor downloaded; the message lists
        the missing file names, the folders searched and the download errors.
      ValueError: a corrupt file, or images and labels of different lengths.
    """
    prefix = "train" if split == "train" else "t10k"
    found, missing, searched, failures = {}, [], [], []
    for kind in ("images-idx3", "labels-idx1"):
        gz_name = f"{prefix}-{kind}-ubyte.gz"
        found[kind], places = _locate(path, gz_name, download, failures)
        if found[kind] is None:
            missing.append(gz_name)
            searched.extend(places)
    if missing:
        fix = "".join(f"Download error: {f}\n" for f in failures)
        fix += (
            "Put the files (.gz or uncompressed) in one of these folders, or pass "
            "path=. Offline, annjax.datasets.load_mnist_test_split() splits the "
            "10,000 test images into train and validation sets."
        )
        raise _fetch.not_found(f"MNIST {split} set", searched, missing, fix)
    images = read_idx(found["images-idx3"], expected_magic=_IDX_IMAGES)
    labels = read_idx(found["labels-idx1"], expected_magic=_IDX_LABELS)
    if len(images) != len(labels):
        raise _checks.fail(
            "MNIST labels",
            f"one label per image ({len(images)} in {found['images-idx3']})",
            f"{len(labels)} in {found['labels-idx1']}",
        )
    return images, labels
