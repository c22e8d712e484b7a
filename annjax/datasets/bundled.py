"""The data sets that need no file: logic gates, and scikit-learn's bundles.

:class:`Dataset` is what every loader of :mod:`annjax.datasets` returns.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from annjax import _checks

__all__ = ["Dataset", "load_breast_cancer", "load_digits", "logic_gate"]


class Dataset(NamedTuple):
    """A data set: features, targets and their names.

    Attributes:
      X: float32 features, shape ``(n, features)``; images ``(n, H, W)``.
      y: int32 class labels in ``0 .. k-1`` (classification) or float32 values
        (regression), shape ``(n,)``.
      feature_names: one name per feature (per pixel for images, ``pixel_r_c``).
      target_names: the class names, label ``i`` being ``target_names[i]``; for
        regression a 1-tuple with the target's name.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]


def _pixel_names(height: int, width: int) -> tuple[str, ...]:
    return tuple(f"pixel_{r}_{c}" for r in range(height) for c in range(width))


# ---------------------------------------------------------------- logic gates

_GATES = {
    "and": lambda bits: bits.all(axis=1),
    "or": lambda bits: bits.any(axis=1),
    "xor": lambda bits: bits.sum(axis=1) % 2 == 1,
    "nand": lambda bits: ~bits.all(axis=1),
    "nor": lambda bits: ~bits.any(axis=1),
}
_MAX_GATE_INPUTS = 24  # 2**24 rows already take 400 MB of float32


def logic_gate(name: str, n_inputs: int = 2) -> Dataset:
    r"""Returns the truth table of a logic gate: all 2ⁿ binary inputs and outputs.

    Rows are in counting order (``00, 01, 10, 11`` for two inputs). For n inputs
    ``xor`` is the parity, y = (x₁ + … + xₙ) mod 2, which no single perceptron
    can learn for n ≥ 2 (the classes are not linearly separable).

    Args:
      name: ``"and"``, ``"or"``, ``"xor"``, ``"nand"`` or ``"nor"`` (any case).
      n_inputs: the number of inputs n, 1 ≤ n ≤ 24.

    Raises:
      ValueError: for an unknown name (the message lists the known ones) or n
        outside [1, 24].
    """
    key = name.lower() if isinstance(name, str) else name
    _checks.one_of("name", key, sorted(_GATES))
    n = _checks.integer("n_inputs", n_inputs, minimum=1)
    if n > _MAX_GATE_INPUTS:
        raise _checks.fail("n_inputs", f"an integer <= {_MAX_GATE_INPUTS}", n_inputs)
    bits = np.array(list(itertools.product((False, True), repeat=n)), dtype=bool)
    return Dataset(
        X=bits.astype(np.float32),
        y=_GATES[key](bits).astype(np.int32),
        feature_names=tuple(f"x{i + 1}" for i in range(n)),
        target_names=("0", "1"),
    )


# ------------------------------------------------------ scikit-learn's bundles


def _sklearn_datasets():
    try:
        import sklearn.datasets
    except ImportError as exc:
        raise ImportError(
            "This loader needs scikit-learn: pip install 'annjax[examples]'."
        ) from exc
    return sklearn.datasets


def load_digits(*, as_images: bool = False) -> Dataset:
    """Returns scikit-learn's 1,797 handwritten digits (8 × 8), pixels in [0, 1].

    The data ship with scikit-learn (no network). The raw pixels count dark
    cells in 4 × 4 blocks, 0..16; they are divided by 16, so x ∈ [0, 1].

    Args:
      as_images: return X of shape (1797, 8, 8) instead of (1797, 64), e.g. for
        :mod:`annjax.data.augment`.
    """
    bunch = _sklearn_datasets().load_digits()
    X = bunch.data.astype(np.float32) / np.float32(16.0)
    if as_images:
        X = X.reshape(-1, 8, 8)
    return Dataset(
        X=X,
        y=bunch.target.astype(np.int32),
        feature_names=_pixel_names(8, 8),
        target_names=tuple(str(t) for t in bunch.target_names),
    )


def load_breast_cancer() -> Dataset:
    """Returns scikit-learn's Wisconsin breast-cancer set: 569 × 30, 2 classes.

    The data ship with scikit-learn (no network). Features are unscaled (areas
    in the hundreds next to ratios below 1): standardise them, with statistics
    of the training split only. Label 0 is malignant, 1 benign.
    """
    bunch = _sklearn_datasets().load_breast_cancer()
    return Dataset(
        X=bunch.data.astype(np.float32),
        y=bunch.target.astype(np.int32),
        feature_names=tuple(str(f) for f in bunch.feature_names),
        target_names=tuple(str(t) for t in bunch.target_names),
    )
