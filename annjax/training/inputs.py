"""What ``fit``, ``evaluate`` and ``predict`` accept as data, and in which dtype.

The dtype rule (documented in the README's "Bad input and faults"):

- X: integer inputs stay integers (int32: token ids for an embedding; annjax
  layers cast them to their params' dtype), booleans become float32,
  float16, bfloat16 and float32 stay as they are, float64 stays float64 under
  ``jax_enable_x64`` and becomes float32 otherwise; complex is refused.
- y: integer or boolean labels become int32, float targets float32 (float64
  under ``jax_enable_x64`` when they are float64).
- params: float32 by default (every layer's ``param_dtype``); ``fit`` makes
  float32 params and state float64 when X is float64 (x64 on), so float64
  runs end to end: params, loss and metrics.

Values are checked before anything compiles: a value that would become inf on
the cast to float32 is a ValueError naming the largest |value|, and the
targets must suit the loss (two or more outputs for a softmax loss, targets
in [0, 1] for a binary one) and the metrics (no regression metric on class
labels).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from annjax import losses as _losses
from annjax import metrics as _metrics

__all__ = ["check_targets", "host_array", "params_dtype"]

_F32_MAX = float(np.finfo(np.float32).max)


def _x64() -> bool:
    return bool(jax.config.jax_enable_x64)


def _float_dtype(name: str, arr: np.ndarray) -> np.dtype:
    """Returns the float dtype ``arr`` is kept in, or refuses it for float32."""
    if arr.dtype == np.float64 and _x64():
        return arr.dtype
    if arr.dtype.itemsize <= 4:  # float16, bfloat16, float32
        return arr.dtype
    biggest = float(np.max(np.abs(arr))) if arr.size else 0.0
    if biggest > _F32_MAX:
        raise ValueError(
            f"{name}: expected values that fit float32 (|value| <= {_F32_MAX:.3g}), "
            f"got max |value| = {biggest:.6g}, which would become inf. Rescale the "
            "data (see annjax.data.Standardizer), or enable float64 with "
            "jax.config.update('jax_enable_x64', True)."
        )
    return np.dtype(np.float32)


def host_array(name: str, arr: np.ndarray, *, labels: bool = False) -> np.ndarray:
    """Returns ``arr`` in the dtype annjax computes with (see the module's rule).

    Args:
      name: the argument's name for messages (``"train_data X"``).
      arr: a host array, checked numeric and finite by the caller.
      labels: True for y: integers and booleans become int32 labels.

    Raises:
      TypeError: for complex values.
      ValueError: for float values beyond float32's range without x64, or
        integers beyond int32's.
    """
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(
            f"{name}: expected real numbers, got complex dtype {arr.dtype}. annjax "
            "does not drop the imaginary part for you: pass X.real, np.abs(X), "
            "or both stacked as features."
        )
    if arr.dtype == np.bool_:
        return arr.astype(np.int32 if labels else np.float32)
    if jnp.issubdtype(arr.dtype, jnp.integer):
        info = np.iinfo(np.int32)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ValueError(
                f"{name}: expected integers that fit int32, got values from "
                f"{arr.min()} to {arr.max()}. Pass them as floats."
            )
        return arr.astype(np.int32)
    dtype = _float_dtype(name, arr)
    if labels and dtype.itemsize < 4:
        dtype = np.dtype(np.float32)  # targets and losses in float32 at least
    return arr if arr.dtype == dtype else arr.astype(dtype)


def params_dtype(x) -> np.dtype | None:
    """Returns the dtype ``fit`` casts float32 params to for data ``x``, or None.

    float64 when X is float64 (possible only under ``jax_enable_x64``).
    """
    return np.dtype(np.float64) if x.dtype == np.float64 else None


def check_targets(name: str, y: np.ndarray, loss, out_shape, metrics=()) -> None:
    """Raises ValueError when the targets do not suit the loss or the metrics.

    Before anything compiles: a softmax (multi-class) loss needs two or more
    outputs; a binary loss needs targets in [0, 1]; a regression metric
    (mse, rmse, mae, r2) cannot read integer class labels.
    """
    loss_name = _losses.name_of(loss)
    if loss_name in _losses.CLASSIFICATION and tuple(out_shape)[-1:] == (1,):
        raise ValueError(
            f"loss: {loss_name!r} expected a model with one output per class (2 "
            f"or more), got output shape {tuple(out_shape)}: with one output the "
            "softmax is always 1 and the loss always 0. Use loss='mse' for "
            "regression, or loss='sigmoid_binary_cross_entropy' for two classes "
            "with one output."
        )
    if loss_name in _losses.BINARY and y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"{name} y: expected targets in [0, 1] (0/1 labels or probabilities) "
            f"for loss {loss_name!r}, got values from {y.min()} to {y.max()}. For "
            "more than two classes use loss='softmax_cross_entropy' with one "
            "output per class."
        )
    sparse = (
        loss_name in _losses.CLASSIFICATION
        and jnp.issubdtype(y.dtype, jnp.integer)
        and y.shape[1:] == tuple(out_shape)[:-1]
    )
    for metric in metrics:
        metric_name = _metrics.registered_name(metric)
        if sparse and metric_name in _metrics.REGRESSION:
            raise ValueError(
                f"metrics: {metric_name!r} expected targets of the model's "
                f"output shape {tuple(out_shape)} (a regression metric), got "
                f"integer class labels of shape {y.shape}. Use a classification "
                "metric (accuracy, f1, …), or a regression loss such as 'mse'."
            )
