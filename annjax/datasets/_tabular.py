"""Tables as NumPy matrices: CSV reading, one-hot encoding, California housing's
raw files, and the imputer.

Kept apart from :mod:`annjax.datasets` so that the loaders there read as a list
of data sets; everything here works on plain NumPy arrays (pandas is not a
dependency).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from annjax import _checks

__all__ = [
    "CALIFORNIA_RAW",
    "Imputer",
    "all_numbers",
    "california_features",
    "encode_columns",
    "numeric_column",
    "one_hot_column",
    "read_california",
    "read_table",
]


def read_table(
    path: str | os.PathLike, delimiter: str = ","
) -> tuple[list[str], dict[str, list[str]]]:
    """Returns the header and the columns (lists of stripped strings) of a CSV.

    Blank lines are skipped. A row with the wrong number of fields raises a
    ValueError naming the file and the line.
    """
    name = os.fspath(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f, delimiter=delimiter)
        header = [h.strip() for h in next(rows, [])]
        if not header:
            raise ValueError(f"{name}: expected a header line, got an empty file.")
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise ValueError(f"{name}: duplicate column names {duplicates}.")
        cells: list[list[str]] = [[] for _ in header]
        for row in rows:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{name}, line {rows.line_num}: expected {len(header)} fields, "
                    f"got {len(row)}."
                )
            for column, value in zip(cells, row, strict=True):
                column.append(value.strip())
    return header, dict(zip(header, cells, strict=True))


def numeric_column(name: str, values: Sequence[str], source: str = "") -> np.ndarray:
    """Returns a column of numbers as float64; blank fields become NaN.

    Raises:
      ValueError: for a field that is neither blank nor a number, with the fix
        (list the column in ``categorical``).
    """
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        try:
            out[i] = float(value) if value else np.nan
        except ValueError:
            where = f"{source}: " if source else ""
            raise ValueError(
                f"{where}column {name!r}, data row {i + 1}: expected a number or a "
                f"blank field, got {value!r}. If the column is categorical, pass "
                f"categorical=[{name!r}] to one-hot encode it."
            ) from None
    return out


def one_hot_column(name: str, values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Returns the one-hot matrix (n, k) of a text column and its names ``name=v``.

    The k categories are the distinct non-blank values, sorted; a blank field
    gives a row of NaN, so that an :class:`Imputer` can fill it like any other
    missing value.
    """
    categories = sorted({v for v in values if v})
    index = {c: j for j, c in enumerate(categories)}
    out = np.zeros((len(values), len(categories)), dtype=np.float64)
    for i, value in enumerate(values):
        if value:
            out[i, index[value]] = 1.0
        else:
            out[i] = np.nan
    return out, [f"{name}={c}" for c in categories]


def encode_columns(
    columns: dict[str, list[str]],
    names: Sequence[str],
    categorical: Sequence[str] = (),
    source: str = "",
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Returns the float32 matrix of ``names`` (in order) and its column names.

    Numeric columns give one column each (blank -> NaN); each column listed in
    ``categorical`` gives one 0/1 column per category, named ``column=value``.
    """
    blocks, feature_names = [], []
    for name in names:
        if name in categorical:
            block, block_names = one_hot_column(name, columns[name])
        else:
            block = numeric_column(name, columns[name], source)[:, None]
            block_names = [name]
        blocks.append(block)
        feature_names.extend(block_names)
    n = len(next(iter(columns.values()), []))
    X = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    return X.astype(np.float32), tuple(feature_names)


def all_numbers(values: Sequence[str]) -> bool:
    """Returns whether every string in ``values`` parses as a float."""
    try:
        for v in values:
            float(v)
    except ValueError:
        return False
    return True


# The raw columns, named as in the CSV; StatLib's cal_housing.data has the same
# nine in this order (longitude, latitude, housingMedianAge, ...) and no header.
CALIFORNIA_RAW = (
    "longitude",
    "latitude",
    "housing_median_age",
    "total_rooms",
    "total_bedrooms",
    "population",
    "households",
    "median_income",
    "median_house_value",
)


def read_california(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Returns the nine raw columns of the CSV or of StatLib's file, as float64."""
    source = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    if all_numbers(first.strip().split(",")):
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        if table.shape[1] != len(CALIFORNIA_RAW):
            raise _checks.fail(
                source, "9 columns (StatLib's cal_housing.data)", table.shape[1]
            )
        return dict(zip(CALIFORNIA_RAW, table.T, strict=True))
    header, columns = read_table(path)
    missing = [c for c in CALIFORNIA_RAW if c not in columns]
    if missing:
        raise _checks.fail(
            source, f"the columns {', '.join(CALIFORNIA_RAW)}", ", ".join(header)
        )
    return {c: numeric_column(c, columns[c], source) for c in CALIFORNIA_RAW}


def california_features(raw: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Returns scikit-learn's 8 features and the target in units of $100,000."""
    households = raw["households"]
    X = np.stack(
        [
            raw["median_income"],
            raw["housing_median_age"],
            raw["total_rooms"] / households,
            raw["total_bedrooms"] / households,
            raw["population"],
            raw["population"] / households,
            raw["latitude"],
            raw["longitude"],
        ],
        axis=1,
    )
    return X.astype(np.float32), (raw["median_house_value"] / 1e5).astype(np.float32)


def _as_matrix(name: str, X: ArrayLike) -> np.ndarray:
    """Returns ``X`` as a 2-D floating NumPy array, or raises ValueError."""
    X = np.asarray(_checks.numeric_array(name, X))
    if X.ndim != 2:
        raise _checks.fail(name, "a 2-D array (samples, features)", f"shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float32)
    return X


class Imputer(NamedTuple):
    r"""Fills missing values (NaN) with per-column statistics of the TRAINING set.

    Fit it on the training split only, then apply it to every split; the
    validation and test sets are filled with the training statistics, so
    nothing about them leaks into training:

    .. math:: \hat x_{ij} = \begin{cases} x_{ij} & x_{ij} \ne \text{NaN} \\
              m_j & \text{otherwise} \end{cases}, \qquad
              m_j = \operatorname{mean}/\operatorname{median}
              \{x_{kj} : k \in \text{train},\ x_{kj} \ne \text{NaN}\}

    Attributes:
      fill: the per-column fill values m_j, shape (features,).
      strategy: ``"mean"`` or ``"median"``.

    Examples:
      >>> import numpy as np
      >>> train = np.array([[1.0, np.nan], [3.0, 4.0]])
      >>> test = np.array([[np.nan, np.nan]])
      >>> imputer = Imputer.fit(train)
      >>> imputer.transform(test)
      array([[2., 4.]])
    """

    fill: np.ndarray
    strategy: str = "mean"

    @classmethod
    def fit(cls, X: ArrayLike, strategy: str = "mean") -> Imputer:
        """Returns an Imputer holding the mean or median of each column of ``X``.

        Only the non-NaN values count. ``X`` must be the training split.

        Raises:
          ValueError: for an unknown strategy, ``X`` not 2-D, or a column with no
            value at all in ``X`` (nothing to fill it with).
        """
        _checks.one_of("strategy", strategy, ("mean", "median"))
        X = _as_matrix("X", X)
        observed = ~np.isnan(X)
        empty = np.flatnonzero(~observed.any(axis=0))
        if empty.size:
            raise _checks.fail(
                "X",
                "at least one non-missing value in every column",
                f"columns {empty.tolist()} entirely NaN",
                "Drop those columns before imputing.",
            )
        stat = np.nanmean if strategy == "mean" else np.nanmedian
        fill = stat(X.astype(np.float64), axis=0).astype(X.dtype)
        return cls(fill=fill, strategy=strategy)

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Returns a copy of ``X`` whose NaN entries hold the fitted fill values.

        Raises:
          ValueError: if ``X`` does not have as many columns as the fitted data.
        """
        X = _as_matrix("X", X)
        if X.shape[1] != self.fill.shape[0]:
            raise _checks.fail(
                "X",
                f"{self.fill.shape[0]} columns (as in the data the imputer was "
                "fitted on)",
                f"{X.shape[1]} columns",
            )
        return np.where(np.isnan(X), self.fill.astype(X.dtype), X)
