"""Checks and conversions of the arguments and data given to ``fit``.

Every problem is reported before anything is compiled, with a ValueError that
names the argument, what was expected, what came, and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from annjax import _checks
from annjax import losses as _losses
from annjax import metrics as _metrics
from annjax._types import Array, Layer
from annjax.training import mesh as _mesh
from annjax.training.epoch import EpochSpec
from annjax.training.inputs import check_targets, host_array
from annjax.training.step import default_optimizer, output_shape
from annjax.training.types import EarlyStopping


def as_arrays(name: str, data) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(X, y)`` as host arrays after checking them, or raises ValueError.

    An array already spread over several devices (sharded by the user, or
    over several hosts) is checked where it lies and returned as is.
    """
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise _checks.fail(name, "a pair (X, y)", type(data).__name__)
    x, y = (
        _mesh.host_or_spread(_checks.numeric_array(f"{name} {p}", a))
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
        xp = jnp if _mesh.is_spread(arr) else np
        inexact = jnp.issubdtype(arr.dtype, jnp.inexact)
        if inexact and not xp.isfinite(arr).all():
            bad = int(np.size(arr) - xp.isfinite(arr).sum())
            raise ValueError(
                f"{name} {part}: expected finite values, got {bad} NaN or inf. "
                "Impute or drop them first (see annjax.datasets.Imputer)."
            )
    # the dtype rule of annjax.training.inputs: ints stay ints, float64 under x64
    x = host_array(f"{name} X", x)
    return x, host_array(f"{name} y", y, labels=True)


def check_model(model) -> Layer:
    """Returns ``model`` if it is an annjax Layer, or raises TypeError."""
    if not isinstance(model, Layer):
        raise TypeError(
            f"model: expected an annjax Layer (e.g. ann.mlp([64, 10])), got "
            f"{model!r}. Wrap a parameter-free function with ann.activation(fn), "
            "a flax module with ann.from_flax(module), or build "
            "ann.Layer(init, apply)."
        )
    return model


def _batch_of(shape) -> str:
    """Returns "(n, a, b)" for an example shape (a, b)."""
    return "(n" + "".join(f", {d}" for d in shape) + ")"


def fit_targets(
    name: str, y: np.ndarray, loss: str | Callable, out_shape, metrics=()
) -> np.ndarray:
    """Returns y checked against the model's output, (n,) → (n, 1) for one output.

    Integer labels of shape (n, *output[:-1]) go to the classification
    losses and, for a model of more than one output, to a user's own loss
    function as they are (int32); any other target must have the output's
    shape. Also checks that y suits the loss and the ``metrics`` (see
    :func:`annjax.training.inputs.check_targets`).
    """
    out_shape = tuple(out_shape)
    check_targets(name, y, loss, out_shape, metrics)
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
    custom = _losses.name_of(loss) not in _losses.names()
    labels = np.issubdtype(y.dtype, np.integer) and y.shape[1:] == out_shape[:-1]
    if custom and labels and out_shape[-1] > 1:
        return y  # class labels for the user's own loss, passed as they are
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
    log_steps: bool = False,
    mesh=None,
    models: int | None = None,
):
    """Returns ``(spec, x, y, val)``: every argument checked, data on the device.

    Shared by :func:`fit` and :func:`fit_many`, so both refuse the same bad
    input with the same message before anything compiles. ``mesh`` places
    the data (:mod:`annjax.training.mesh`); ``models``: fit_many's number.
    """
    mesh = _mesh.check(mesh, many=models is not None, models=models or 1)
    check_model(model)
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
    y = fit_targets("train_data", y, loss, out_shape, metrics)
    if val is not None:
        yv = fit_targets("val_data", val[1], loss, out_shape, metrics)
        val = _mesh.place_pair("val_data", (val[0], yv), mesh)
    _mesh.check_batch("batch_size", min(batch_size, x.shape[0]), mesh)
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
        bool(log_steps),
        mesh,
    )
    return spec, *_mesh.place_pair("train_data", (x, y), mesh), val


def metric_names(metrics: Sequence[str | Callable]) -> tuple[str | Callable, ...]:
    """Returns the metrics after checking each: a registered name or a function.

    Each metric is keyed by the object passed: a name or a registered
    function is the built-in, any other function is called as given (a
    function named ``accuracy`` stays the user's). The history names it by
    :func:`annjax.metrics.name_of` (a function's ``__name__``); two metrics
    with one name are refused, naming both.
    """
    if isinstance(metrics, str) or callable(metrics):
        metrics = (metrics,)
    if not isinstance(metrics, Sequence):
        raise TypeError(
            f"metrics: expected a sequence of names or functions, got {metrics!r}."
        )
    seen: dict[str, str | Callable] = {}
    for metric in metrics:
        if not (isinstance(metric, str) or callable(metric)):
            raise TypeError(
                f"metrics: expected names from ann.metrics.names() or functions "
                f"(y_true, y_pred) -> scalar, got {metric!r}."
            )
        name = _metrics.name_of(metric)
        if name == "loss":
            raise _checks.fail(
                "metrics", "names other than 'loss'", metric, "Rename the function."
            )
        if name in seen:
            raise _checks.fail(
                "metrics",
                "distinct history names",
                f"{seen[name]!r} and {metric!r}, both named {name!r}",
                "Rename one function (its __name__ keys the history).",
            )
        seen[name] = metric
    return tuple(metrics)


def _check_early_stopping(es: EarlyStopping, metrics, has_val: bool) -> None:
    if not isinstance(es, EarlyStopping):
        raise TypeError(f"early_stopping: expected ann.EarlyStopping(...), got {es!r}.")
    es.validate()
    monitor = es.monitor.removeprefix("val_")
    by_name = {_metrics.name_of(m): m for m in metrics}
    if monitor != "loss" and monitor not in by_name:
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
    known = "min" if monitor == "loss" else None
    if monitor in by_name and _metrics.registered_name(by_name[monitor]):
        known = _metrics.mode(_metrics.registered_name(by_name[monitor]))
    if known is None and es.mode == "auto":
        raise _checks.fail(
            "EarlyStopping mode",
            f"'min' or 'max' for the custom metric {monitor!r} ('auto' knows "
            "only the registered metrics)",
            es.mode,
        )
    if known is not None and es.mode not in ("auto", known):
        raise _checks.fail(
            "EarlyStopping mode",
            f"{known!r} or 'auto' for {es.monitor} (it is better when "
            f"{'smaller' if known == 'min' else 'larger'})",
            es.mode,
        )


def checkpoint_path(name: str, path) -> Path | None:
    """Returns ``path`` as a Path after checking a file can be written there.

    Raises:
      TypeError: for a path that is not a string or os.PathLike.
      ValueError: for a folder, or a parent that is a file; before training,
        so no epoch is lost to a path that cannot be written.
    """
    if path is None:
        return None
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{name}: expected a file path, got {path!r}.")
    path = Path(path)
    if path.is_dir():
        raise _checks.fail(name, "a file path, not a folder", str(path))
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise _checks.fail(
                    name,
                    "a path whose parent is a folder",
                    str(path),
                    f"{str(parent)!r} is a file.",
                )
            if not os.access(parent, os.W_OK):
                raise _checks.fail(
                    name,
                    "a path in a writable folder",
                    str(path),
                )
            break
    return path


def _per_model(name: str, value, n: int | None) -> tuple[np.ndarray, int | None]:
    """Returns ``value`` as a (n,) float32 array (scalars broadcast) and n."""
    try:
        arr = np.asarray(value, np.float32)
    except (TypeError, ValueError) as exc:
        raise _checks.fail(
            name, "a number or a 1-D sequence of numbers", value
        ) from exc
    if arr.ndim > 1:
        raise _checks.fail(name, "a number or a 1-D sequence (one per model)", value)
    if arr.ndim == 1:
        if n is not None and arr.shape[0] != n:
            raise ValueError(
                f"{name}: expected one value per model ({n} models), got "
                f"{arr.shape[0]} values."
            )
        n = arr.shape[0]
    return arr, n


def _typed(key) -> jax.Array:
    """Returns a typed key; raw uint32 keys (the last axis of 2) are wrapped."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(jnp.asarray(key))


def _model_keys(keys) -> jax.Array:
    """Returns ``keys`` (a key array or a list of keys) as one (models,) key array."""
    if isinstance(keys, list | tuple):
        if not keys:
            raise _checks.fail("keys", "at least one key (one per model)", keys)
        return jnp.stack(
            [_typed(_checks.random_key(f"keys[{i}]", k)) for i, k in enumerate(keys)]
        )
    dtype, shape = getattr(keys, "dtype", None), _checks.shape_of(keys)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == np.uint32 and len(shape) == 2 and shape[1] == 2
    if not ((typed and len(shape) == 1) or raw) or shape[0] == 0:
        raise _checks.fail(
            "keys",
            "a 1-D array of keys or a list of keys (one per model)",
            f"{type(keys).__name__} of shape {shape}",
            "Pass keys=jax.random.split(jax.random.key(0), n).",
        )
    return _typed(keys)


def per_model(keys, l1, l2, lr_scale):
    """Returns ``(keys, l1s, l2s, scales)``, one entry per model, checked.

    The number of models is the length of ``keys`` or of any sequence among
    the hyper-parameters; numbers broadcast.
    """
    n = None
    if keys is not None:
        keys = _model_keys(keys)
        n = keys.shape[0]
    l1s, n = _per_model("l1", l1, n)
    l2s, n = _per_model("l2", l2, n)
    scales, n = _per_model("lr_scale", lr_scale, n)
    n = 1 if n is None else n
    if not all(((v >= 0) & np.isfinite(v)).all() for v in (l1s, l2s)):
        raise _checks.fail("l1/l2", "finite values >= 0", (l1, l2))
    if not ((scales > 0) & np.isfinite(scales)).all():
        raise _checks.fail("lr_scale", "finite values > 0", lr_scale)
    keys = jax.random.split(jax.random.key(0), n) if keys is None else keys
    return keys, *(np.broadcast_to(v, (n,)).copy() for v in (l1s, l2s, scales))


def steps_per_call_of(value) -> int | str | None:
    """Returns ``steps_per_call``: ``"auto"``, None (the whole epoch) or an int ≥ 1."""
    if isinstance(value, str):
        return _checks.one_of("steps_per_call", value, ("auto",))
    return (
        None if value is None else _checks.integer("steps_per_call", value, minimum=1)
    )


def callbacks_of(callbacks) -> tuple[Callable, ...]:
    """Returns the callbacks as a tuple after checking each is callable."""
    if callable(callbacks):
        callbacks = (callbacks,)
    if not isinstance(callbacks, Sequence):
        raise TypeError(
            f"callbacks: expected a sequence of functions (epoch, logs), got "
            f"{callbacks!r}."
        )
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(
                f"callbacks: expected functions callback(epoch, logs), got {cb!r}."
            )
    return tuple(callbacks)
