"""Checks and conversions of the arguments and data given to ``fit``.

Every problem is reported before anything is compiled, with a ValueError that
names the argument, what was expected, what came, and the fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import optax

from annjax import _checks
from annjax import losses as _losses
from annjax import metrics as _metrics
from annjax._types import Array, Layer
from annjax.steps import EpochSpec, default_optimizer, output_shape

if TYPE_CHECKING:
    from annjax.train import EarlyStopping


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


def _optimizer(optimizer) -> optax.GradientTransformation:
    if optimizer is None:
        return default_optimizer()
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"optimizer: expected an optax GradientTransformation (e.g. ann.sgd(0.1) "
            f"or optax.adam(1e-3)), got {optimizer!r}."
        )
    return optimizer


def penalties(l1: float, l2: float) -> dict[str, Array]:
    """Returns the dynamic hyper-parameters of the step: the penalties present."""
    l1 = _checks.non_negative("l1", l1)
    l2 = _checks.non_negative("l2", l2)
    return {name: jnp.float32(v) for name, v in (("l1", l1), ("l2", l2)) if v > 0}


def setup(
    model: Layer,
    train_data,
    val_data,
    *,
    loss,
    optimizer,
    batch_size: int,
    metrics: Sequence[str],
    early_stopping: EarlyStopping | None,
    augment: Callable | None,
    track_gradients: bool,
    eval_batch_size: int,
    track_every: int = 10,
):
    """Returns ``(spec, x, y, val)``: every argument checked, data on the device.

    Shared by :func:`fit` and :func:`annjax.sweep.fit_many`, so both refuse
    the same bad input with the same message before anything compiles.
    """
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    eval_batch_size = _checks.integer("eval_batch_size", eval_batch_size, minimum=1)
    _losses.get(loss)
    metrics = metric_names(metrics)
    optimizer = _optimizer(optimizer)
    if early_stopping is not None:
        _check_early_stopping(early_stopping, metrics, val_data is not None)
    x, y = as_arrays("train_data", train_data)
    val = None
    if val_data is not None:
        xv, yv = as_arrays("val_data", val_data)
        if xv.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"val_data X: expected examples of shape {x.shape[1:]} like the "
                f"training data, got {xv.shape[1:]}."
            )
        val = (xv, yv)
    out_shape = output_shape(model, x.shape[1:])
    y = fit_targets("train_data", y, loss, out_shape)
    if val is not None:
        val = jax.device_put((val[0], fit_targets("val_data", val[1], loss, out_shape)))
    spec = EpochSpec(
        model,
        loss,
        optimizer,
        metrics,
        min(batch_size, x.shape[0]),
        bool(track_gradients),
        augment,
        eval_batch_size,
        _checks.integer("track_every", track_every, minimum=1),
    )
    return spec, jax.device_put(x), jax.device_put(y), val


def metric_names(metrics: Sequence[str]) -> tuple[str, ...]:
    """Returns the metric names after checking each is a registered name."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    for name in metrics:
        if not isinstance(name, str):
            raise TypeError(
                f"metrics: expected names from ann.metrics.names() (they key the "
                f"history), got {name!r}."
            )
        _metrics.get(name)
    return tuple(metrics)


def _check_early_stopping(es: EarlyStopping, metrics, has_val: bool) -> None:
    es.validate()
    monitor = es.monitor.removeprefix("val_")
    if monitor != "loss" and monitor not in metrics:
        raise _checks.fail(
            "EarlyStopping monitor",
            "loss, val_loss or a (val_) metric listed in metrics=",
            es.monitor,
        )
    if es.monitor.startswith("val_") and not has_val:
        raise ValueError(
            f"EarlyStopping monitors {es.monitor!r} but no val_data was given. "
            "Pass val_data=(X_val, y_val) (see ann.data.split)."
        )
    if monitor != "loss" and es.mode == "min" and _metrics.mode(monitor) == "max":
        warnings.warn(
            f"EarlyStopping mode='min' on {es.monitor}, which is better when "
            "larger; pass mode='max' or 'auto'.",
            stacklevel=3,
        )
