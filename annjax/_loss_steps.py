"""The steps every loss of :mod:`annjax.losses` shares: dtypes, shape checks,
per-example values, the reduction over the batch, and clipping of probabilities.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from annjax import _checks

Array = jax.Array

#: The values ``reduction=`` accepts.
REDUCTIONS = ("mean", "sum", "none")


def _float_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array]:
    """Returns both arrays in ŷ's float dtype (integer targets are cast)."""
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    dtype = y_pred.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)  # float32, or float64 under x64
    # An explicit cast, not promotion, so that the losses also run under
    # jax.numpy_dtype_promotion("strict").
    return y_true.astype(dtype), y_pred.astype(dtype)


def _same_shape(loss: str, y_true: Array, y_pred: Array) -> None:
    """Raises ValueError naming both shapes unless they are equal."""
    if y_true.shape != y_pred.shape:
        raise _checks.fail(
            f"{loss}: y_true",
            f"the shape of y_pred {y_pred.shape}",
            y_true.shape,
            "Reshape one of them: a (batch,) target does not broadcast against a "
            "(batch, 1) prediction here.",
        )


def _is_sparse(loss: str, y_true: Array, y_pred: Array) -> bool:
    """Returns True for integer class labels, False for one-hot targets.

    Raises ValueError unless ``y_true`` has ŷ's shape (one-hot or
    probabilities) or is integer labels of shape ``y_pred.shape[:-1]``.
    """
    if y_pred.ndim == 0:
        raise _checks.fail(f"{loss}: y_pred", "a class axis (at least 1-D)", ())
    if y_true.shape == y_pred.shape:
        return False
    if y_true.shape == y_pred.shape[:-1]:
        if jnp.issubdtype(y_true.dtype, jnp.integer):
            return True
        raise _checks.fail(
            f"{loss}: y_true",
            f"integer class labels for the shape {y_true.shape}",
            y_true.dtype,
            "Cast the labels with y.astype(int).",
        )
    raise _checks.fail(
        f"{loss}: y_true",
        f"integer labels of shape {y_pred.shape[:-1]} or one-hot targets of "
        f"y_pred's shape {y_pred.shape}",
        y_true.shape,
    )


def _per_example(values: Array) -> Array:
    """Returns the mean of ``values`` over every axis but the first (batch)."""
    return jnp.mean(values, axis=tuple(range(1, values.ndim)))


def _reduce(per_example: Array, reduction: str) -> Array:
    """Returns the per-example losses reduced over the batch."""
    _checks.one_of("reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return jnp.mean(per_example)
    if reduction == "sum":
        return jnp.sum(per_example)
    return per_example


def _clip(p: Array) -> Array:
    """Returns probabilities clipped into [ε, 1 − ε], so log p and log(1 − p)
    stay finite (their gradient is 0 outside that range)."""
    eps = jnp.finfo(p.dtype).eps
    return jnp.clip(p, eps, 1 - eps)
