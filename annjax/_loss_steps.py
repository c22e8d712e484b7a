"""The steps every loss of :mod:`annjax.losses` shares: dtypes, shape checks,
per-example values, the reduction over the batch, and clipping of probabilities.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

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


_CONTRACT = "loss(y_true, y_pred, *, reduction='mean')"


def _takes_reduction(fn: Callable) -> bool | None:
    """Returns whether ``fn(y_true, y_pred)`` and ``fn(…, reduction=…)`` both
    bind; None when ``fn`` has no signature to read (a builtin)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(0, 0)
        sig.bind(0, 0, reduction="none")
    except TypeError:
        return False
    return True


def check_contract(fn, y_true, y_pred) -> None:
    """Raises unless the loss ``fn`` keeps the contract of annjax's losses.

    The contract is ``loss(y_true, y_pred, *, reduction="mean")``: targets
    first, a scalar for ``"mean"`` and one value per example, shape
    ``(batch,)``, for ``reduction="none"`` (``fit`` weights and averages
    those itself). Checked with ``jax.eval_shape`` on ``y_true`` and
    ``y_pred`` (arrays or ``jax.ShapeDtypeStruct``, batch of 2 or more),
    so nothing is computed.

    Raises:
      TypeError: for a loss without a ``reduction`` keyword (an optax loss
        ``(logits, labels)`` among them).
      ValueError: for a loss that ignores ``reduction`` (a scalar asked for
        per-example values) or returns another shape.
    """
    name = getattr(fn, "__name__", repr(fn))
    if _takes_reduction(fn) is False:
        raise TypeError(
            f"loss {name}: expected a function {_CONTRACT} (targets first, a "
            "keyword reduction of 'mean', 'sum' or 'none'), got the signature "
            f"{inspect.signature(fn)}. Wrap it, e.g. for an optax loss "
            "(logits, labels): def loss(y_true, y_pred, *, reduction='mean'): "
            "v = optax.softmax_cross_entropy_with_integer_labels(y_pred, y_true); "
            "return v if reduction == 'none' else v.mean()."
        )
    batch = y_pred.shape[0]
    for reduction, want in (("none", (batch,)), (None, ())):
        kwargs = {} if reduction is None else {"reduction": reduction}
        out = jax.eval_shape(functools.partial(fn, **kwargs), y_true, y_pred)
        shape = tuple(getattr(out, "shape", ()))
        if shape != want:
            asked = "the default reduction" if reduction is None else "reduction='none'"
            what = "one value per example" if want else "a scalar"
            raise ValueError(
                f"loss {name}: expected {what}, shape {want}, for {asked} on a "
                f"batch of {batch}, got shape {shape}. fit asks for the "
                "per-example values (reduction='none') to weight them: return v "
                "if reduction == 'none' else v.mean() (or v.sum() for 'sum')."
            )
