"""The data sets read from files: MNIST (IDX), California housing, Pima, any CSV.

Files are looked for in the ``path`` given, then in ``$ANNJAX_DATA_DIR`` (with
its ``mnist/`` subfolder for MNIST), then in the user cache
``$XDG_CACHE_HOME/annjax`` (``~/.cache/annjax``). MNIST is downloaded into the
cache when the machine is online; otherwise a ``FileNotFoundError`` lists the
places searched and the file names expected.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from annjax import _checks
from annjax.datasets import _fetch, _mnist
from annjax.datasets._tabular import (
    all_numbers,
    california_features,
    encode_columns,
    numeric_column,
    read_california,
    read_table,
)
from annjax.datasets.bundled import Dataset, _pixel_names, _sklearn_datasets

__all__ = [
    "PIMA_ZERO_MEANS_MISSING",
    "load_california_housing",
    "load_csv",
    "load_mnist",
    "load_mnist_test_split",
    "load_pima_diabetes",
]


# ----------------------------------------------------------------------- MNIST


def load_mnist(
    path: str | os.PathLike | None = None,
    split: str = "train",
    *,
    download: bool = True,
) -> Dataset:
    """Returns MNIST's 60,000 training or 10,000 test digits, pixels in [0, 1].

    X has shape (n, 28, 28), float32 = byte / 255; y holds int32 labels 0..9.
    The four standard IDX files (``train-images-idx3-ubyte.gz`` …, ``.gz`` or
    uncompressed) are looked for in ``path``, ``$ANNJAX_DATA_DIR/mnist``,
    ``$ANNJAX_DATA_DIR`` and ``~/.cache/annjax/mnist``; with ``download`` a
    missing file is fetched into that cache and checked against its size and
    SHA-256.

    Offline, without the training images, :func:`load_mnist_test_split` splits
    the 10,000 test images into a training and a validation part.

    Args:
      path: a folder holding the IDX files (optional).
      split: ``"train"`` or ``"test"``.
      download: try to download missing files (10 s timeout per mirror).

    Raises:
      FileNotFoundError: a file is neither found nor downloadable; the message
        lists the missing file names and the folders searched.
      ValueError: a corrupt file (bad magic number, truncated, trailing data),
        or images and labels of different lengths.
    """
    _checks.one_of("split", split, ("train", "test"))
    images, labels = _mnist.read_mnist(path, split, download)
    return Dataset(
        X=images.astype(np.float32) / np.float32(255.0),
        y=labels.astype(np.int32),
        feature_names=_pixel_names(*images.shape[1:]),
        target_names=tuple(str(d) for d in range(10)),
    )


def load_mnist_test_split(
    path: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    download: bool = True,
) -> tuple[Dataset, Dataset]:
    """Returns (train, validation) made from MNIST's 10,000 TEST images.

    For machines without the 60,000 training images: the test set is shuffled
    (NumPy generator seeded by ``seed``) and cut into ``1 - val_fraction`` for
    training and ``val_fraction`` for validation. No independent test set is
    left, so report final scores on the real training/test split when you can.

    Raises:
      ValueError: ``val_fraction`` outside (0, 1).
      FileNotFoundError: as :func:`load_mnist`.
    """
    fraction = _checks.number("val_fraction", val_fraction)
    if not 0.0 < fraction < 1.0:
        raise _checks.fail("val_fraction", "a number in (0, 1)", val_fraction)
    data = load_mnist(path, split="test", download=download)
    order = np.random.default_rng(seed).permutation(len(data.y))
    n_val = max(1, round(fraction * len(order)))
    train, val = order[n_val:], order[:n_val]
    return (
        data._replace(X=data.X[train], y=data.y[train]),
        data._replace(X=data.X[val], y=data.y[val]),
    )


# ---------------------------------------------------------------------- tables


def load_csv(
    path: str | os.PathLike,
    target: str,
    categorical: Sequence[str] = (),
    *,
    drop: Sequence[str] = (),
    classification: bool | None = None,
    delimiter: str = ",",
) -> Dataset:
    """Returns the table in a CSV file (with a header line) as a Dataset.

    Every column but ``target`` and ``drop`` becomes a feature, in file order:
    numeric columns as float32 (blank fields -> NaN), columns listed in
    ``categorical`` one-hot encoded, one 0/1 column per distinct value, named
    ``column=value`` (e.g. ``ocean_proximity=INLAND``).

    Args:
      path: the CSV file.
      target: the name of the column to predict.
      categorical: names of text columns to one-hot encode.
      drop: names of columns to leave out.
      classification: True maps the target's distinct values (sorted) to labels
        0..k-1 (int32) and stores them in ``target_names``; False reads it as
        float32 numbers; None (default) decides from the target column: text
        (or listed in ``categorical``) is classification, numbers regression.
      delimiter: the field separator.

    Raises:
      ValueError: a column named in ``target``, ``categorical`` or ``drop`` that
        the file lacks (the message lists the columns it has), a non-numeric
        field in a numeric column, or a ragged row.
    """
    source = os.fspath(path)
    header, columns = read_table(path, delimiter)
    for arg, names in (
        ("target", [target]),
        ("categorical", categorical),
        ("drop", drop),
    ):
        for name in names:
            if name not in columns:
                raise _checks.fail(
                    arg, f"a column of {source} ({', '.join(header)})", name
                )
    features = [h for h in header if h != target and h not in drop]
    X, feature_names = encode_columns(columns, features, categorical, source)
    raw = columns[target]
    numbers = all_numbers(raw)
    if classification is None:
        classification = target in categorical or not numbers
    if not classification:
        y = numeric_column(target, raw, source).astype(np.float32)
        return Dataset(X, y, feature_names, (target,))
    classes = sorted(set(raw), key=float if numbers else None)
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in raw], dtype=np.int32)
    return Dataset(X, y, feature_names, tuple(classes))


_CALIFORNIA_FEATURES = (
    "MedInc",
    "HouseAge",
    "AveRooms",
    "AveBedrms",
    "Population",
    "AveOccup",
    "Latitude",
    "Longitude",
)


def load_california_housing(
    path: str | os.PathLike | None = None, *, download: bool = True
) -> Dataset:
    """Returns California housing (1990 census): 20,640 × 8, target in $100,000.

    The features are scikit-learn's: MedInc, HouseAge, AveRooms = rooms /
    households, AveBedrms = bedrooms / households, Population, AveOccup =
    population / households, Latitude, Longitude; y = median house value / 10⁵.

    Reads the common ``california_housing.csv`` (or ``housing.csv``; 10 columns
    with a header) or StatLib's ``cal_housing.data`` (9 columns, no header),
    looked for in ``path``, ``$ANNJAX_DATA_DIR`` and ``~/.cache/annjax``; else
    scikit-learn's ``fetch_california_housing`` (its cache, or the network when
    ``download``).

    The CSV leaves ``total_bedrooms`` blank in 207 rows: their AveBedrms is NaN.
    The loader does not fill them, since any fill value computed here would
    include the future test rows; fit an :class:`Imputer` on the training split.

    Raises:
      FileNotFoundError: no file found and scikit-learn could not fetch it; the
        message lists the places searched.
    """
    names = ("california_housing.csv", "housing.csv", "cal_housing.data")
    places = _fetch.candidates(path, names)
    found = _fetch.first_existing(places)
    if found is not None:
        X, y = california_features(read_california(found))
    else:
        try:
            bunch = _sklearn_datasets().fetch_california_housing(
                download_if_missing=download
            )
        except (OSError, ImportError) as exc:  # URLError is an OSError
            raise _fetch.not_found(
                "California housing",
                places,
                names,
                f"scikit-learn's fetch_california_housing failed too: {exc}",
            ) from exc
        X, y = bunch.data.astype(np.float32), bunch.target.astype(np.float32)
    return Dataset(X, y, _CALIFORNIA_FEATURES, ("MedHouseVal",))


#: Pima columns where a 0 is physiologically impossible and means "not measured".
PIMA_ZERO_MEANS_MISSING = (
    "Glucose",
    "BloodPressure",
    "SkinThickness",
    "Insulin",
    "BMI",
)


def load_pima_diabetes(
    path: str | os.PathLike | None = None, *, zeros_as_missing: bool = False
) -> Dataset:
    """Returns the Pima Indians diabetes set: 768 × 8, label 1 = diabetes (268).

    Reads ``diabetes.csv`` (columns Pregnancies, Glucose, BloodPressure,
    SkinThickness, Insulin, BMI, DiabetesPedigreeFunction, Age, Outcome) from
    ``path``, ``$ANNJAX_DATA_DIR`` or ``~/.cache/annjax``.

    Quirk of the data: a 0 in Glucose, BloodPressure, SkinThickness, Insulin or
    BMI means "not measured" (374 of the 768 Insulin values are 0). By default
    the zeros are kept as in the file; ``zeros_as_missing=True`` turns them into
    NaN, to be filled by an :class:`Imputer` fitted on the training split.

    Raises:
      FileNotFoundError: the file is not found; the message lists the places.
    """
    places = _fetch.candidates(path, ("diabetes.csv",))
    found = _fetch.first_existing(places)
    if found is None:
        raise _fetch.not_found(
            "Pima diabetes",
            places,
            ("diabetes.csv",),
            "It is on the UCI repository and Kaggle (pima-indians-diabetes-database).",
        )
    data = load_csv(found, target="Outcome", classification=True)
    X = data.X
    if zeros_as_missing:
        X = X.copy()
        for column in PIMA_ZERO_MEANS_MISSING:
            j = data.feature_names.index(column)
            X[X[:, j] == 0, j] = np.nan
    return Dataset(X, data.y, data.feature_names, ("negative", "positive"))
