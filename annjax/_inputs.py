"""Checks and conversions of the data given to ``fit`` and ``evaluate``.

Every problem is reported before anything is compiled, with a ValueError that
names the argument, what was expected, what came, and the fix.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from annjax import _checks
from annjax import losses as _losses


def as_arrays(name: str, data) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(X, y)`` as host arrays after checking them, or raises ValueError."""
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise _checks.fail(name, "a pair (X, y)", type(data).__name__)
    x, y = (
        np.asarray(_checks.numeric_array(f"{name} {p}", a))
        for p, a in zip("Xy", data, strict=True)
    )
    if x.ndim < 1 or x.shape[0] == 0:
        raise _checks.fail(f"{name} X", "at least one example", f"shape {x.shape}")
    if y.ndim < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name}: expected X and y with the same number of examples, got X of "
            f"shape {x.shape} and y of shape {y.shape}."
        )
    for part, arr in (("X", x), ("y", y)):
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad = int(np.size(arr) - np.isfinite(arr).sum())
            raise ValueError(
                f"{name} {part}: expected finite values, got {bad} NaN or inf. "
                "Impute or drop them first (see annjax.datasets.Imputer)."
            )
    x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.float32) else x
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        y = y.astype(np.int32)
    else:
        y = y.astype(np.float32)
    return x, y


def _batch_of(shape) -> str:
    """Returns "(n, a, b)" for an example shape (a, b)."""
    return "(n" + "".join(f", {d}" for d in shape) + ")"


def fit_targets(
    name: str, y: np.ndarray, loss: str | Callable, out_shape
) -> np.ndarray:
    """Returns y checked against the model's output, (n,) → (n, 1) for one output."""
    out_shape = tuple(out_shape)
    if _losses.name_of(loss) in _losses.CLASSIFICATION and np.issubdtype(
        y.dtype, np.integer
    ):
        k = out_shape[-1]
        if y.shape[1:] != out_shape[:-1]:
            raise ValueError(
                f"{name} y: expected integer labels of shape "
                f"{_batch_of(out_shape[:-1])} for a model with output shape "
                f"{out_shape}, got {y.shape}."
            )
        if y.min() < 0 or y.max() >= k:
            raise ValueError(
                f"{name} y: expected integer labels in [0, {k}) for a model with {k} "
                f"outputs, got labels from {y.min()} to {y.max()}. Make the last "
                f"layer as wide as the number of classes."
            )
        return y
    if y.ndim == 1 and out_shape == (1,):
        y = y.reshape(-1, 1)
    if y.shape[1:] != out_shape:
        raise ValueError(
            f"{name} y: expected targets of shape {_batch_of(out_shape)} "
            f"to match the model's output, got {y.shape}."
        )
    return y
