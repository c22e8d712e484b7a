"""Data sets as NumPy arrays: logic gates, digits, MNIST, California housing, Pima.

Every loader returns a :class:`Dataset` ``(X, y, feature_names, target_names)``
with ``X`` float32 and ``y`` int32 class labels (classification) or float32
values (regression). They are NumPy arrays on purpose: ``fit`` moves them to the
device once.

Files are looked for in the ``path`` given, then in ``$ANNJAX_DATA_DIR`` (with
its ``mnist/`` subfolder for MNIST), then in the user cache
``$XDG_CACHE_HOME/annjax`` (``~/.cache/annjax``). MNIST is downloaded into the
cache when the machine is online; otherwise a ``FileNotFoundError`` lists the
places searched and the file names expected.

Missing values come back as NaN. Fill them with an :class:`Imputer` fitted on
the TRAINING split only, after splitting, so that no statistic of the
validation or test data leaks into training.

Examples:
  >>> from annjax import datasets
  >>> gate = datasets.logic_gate("xor")
  >>> gate.X.tolist(), gate.y.tolist()
  ([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 1, 0])
"""

from annjax.datasets._idx import read_idx
from annjax.datasets._tabular import Imputer
from annjax.datasets.bundled import Dataset, load_breast_cancer, load_digits, logic_gate
from annjax.datasets.files import (
    PIMA_ZERO_MEANS_MISSING,
    load_california_housing,
    load_csv,
    load_mnist,
    load_mnist_test_split,
    load_pima_diabetes,
)

__all__ = [
    "PIMA_ZERO_MEANS_MISSING",
    "Dataset",
    "Imputer",
    "load_breast_cancer",
    "load_california_housing",
    "load_csv",
    "load_digits",
    "load_mnist",
    "load_mnist_test_split",
    "load_pima_diabetes",
    "logic_gate",
    "read_idx",
]
