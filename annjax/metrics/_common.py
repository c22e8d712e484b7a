"""Conversions shared by the metrics: labels from scores, paired floats, weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from annjax import _checks

Array = jax.Array


def _float_dtype(*arrays: Array) -> jnp.dtype:
    """Returns the widest floating dtype among ``arrays``, or the default float.

    Chosen by hand because strict dtype promotion refuses int + float.
    """
    floats = [a.dtype for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    if not floats:
        return jnp.dtype(jnp.result_type(float))
    return max(floats, key=lambda d: jnp.dtype(d).itemsize)


def _num_examples(y_true: Array, y_pred: Array) -> int:
    """Returns the batch size shared by ``y_true`` and ``y_pred``."""
    if y_true.ndim == 0:
        raise _checks.fail("y_true", "an array with a batch axis", "a scalar")
    if y_pred.ndim == 0 or y_pred.shape[0] != y_true.shape[0]:
        raise _checks.fail(
            "y_pred",
            f"shape ({y_true.shape[0]}, ...) to match y_true",
            y_pred.shape,
        )
    return y_true.shape[0]


def _weights(sample_weight: ArrayLike | None, n: int, dtype: jnp.dtype) -> Array:
    """Returns the per-example weights of shape (n,), ones when None."""
    if sample_weight is None:
        return jnp.ones((n,), dtype)
    w = jnp.asarray(sample_weight)
    if w.shape != (n,):
        raise _checks.fail("sample_weight", f"shape ({n},)", w.shape)
    return w.astype(dtype)


def _safe_divide(num: Array, den: Array) -> Array:
    """Returns num / den, and 0 where den == 0 (scikit-learn's zero_division=0)."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def _labels(name: str, y: Array, threshold: float | None) -> Array:
    """Returns integer class labels of shape (batch,) from labels or scores.

    ``threshold`` is used for a single float column (``y_pred``); None rounds it
    instead (``y_true``, whose float labels are exact integers).
    """
    if y.ndim == 2 and y.shape[1] > 1:
        return jnp.argmax(y, axis=-1).astype(jnp.int32)
    if y.ndim == 2:
        y = y[:, 0]
    if y.ndim != 1:
        raise _checks.fail(
            name,
            "labels of shape (batch,) or (batch, 1), or scores (batch, k)",
            y.shape,
        )
    if jnp.issubdtype(y.dtype, jnp.floating):
        y = jnp.round(y) if threshold is None else y >= threshold
    return y.astype(jnp.int32)


def _label_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array, int]:
    """Returns (true labels, predicted labels, number of score columns or 0)."""
    t, p = jnp.asarray(y_true), jnp.asarray(y_pred)
    _num_examples(t, p)
    k_true = t.shape[1] if t.ndim == 2 and t.shape[1] > 1 else 0
    k_pred = p.shape[1] if p.ndim == 2 and p.shape[1] > 1 else 0
    if k_true and k_pred and k_true != k_pred:
        raise _checks.fail(
            "y_pred",
            f"shape ({p.shape[0]}, {k_true}) to match the one-hot y_true",
            p.shape,
        )
    return _labels("y_true", t, None), _labels("y_pred", p, 0.5), k_pred or k_true


def _paired_floats(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array]:
    """Returns same-shaped y_true and y_pred as floats of shape (batch, outputs)."""
    t, p = jnp.asarray(y_true), jnp.asarray(y_pred)
    n = _num_examples(t, p)
    if t.shape != p.shape and {t.shape, p.shape} != {(n,), (n, 1)}:
        raise _checks.fail("y_pred", f"shape {t.shape} to match y_true", p.shape)
    dtype = _float_dtype(t, p)
    return t.reshape(n, -1).astype(dtype), p.reshape(n, -1).astype(dtype)
