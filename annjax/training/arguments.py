"""Checks and conversions of the arguments and data given to ``fit``.

Every problem is reported before anything is compiled, with a ValueError that
names the argument, what was expected, what came, and the fix.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from annjax import _checks
from annjax import hyperparams as _hyperparams
from annjax import losses as _losses
from annjax import metrics as _metrics
from annjax._types import Array, Layer
from annjax.training import inputs as _inputs
from annjax.training import mesh as _mesh
from annjax.training.epoch import EpochSpec
from annjax.training.inputs import check_targets, host_array
from annjax.training.step import default_optimizer, leaf_path, output_shape
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
    l1 = float(_checks.penalty("l1", _checks.number("l1", l1)))
    l2 = float(_checks.penalty("l2", _checks.number("l2", l2)))
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
    track_sharpness: int | None = 0,
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
    _inputs.check_link(model, loss)
    _inputs.check_functions(y, loss, out_shape, metrics)
    if val is not None:
        yv = fit_targets("val_data", val[1], loss, out_shape, metrics)
        val = _mesh.place_pair("val_data", (val[0], yv), mesh)
    _mesh.check_batch("batch_size", batch_size, mesh, x.shape[0])
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
        _checks.integer("track_sharpness", track_sharpness or 0, minimum=0),
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


def per_model(keys, l1, l2, lr_scale, hyper=None):
    """Returns ``(keys, l1s, l2s, scales, named)``, one entry per model, checked.

    The number of models is the length of ``keys`` or of any sequence among
    the hyper-parameters (``hyper``'s values included); numbers broadcast.
    ``named`` maps each name of ``hyper`` to its (models,) values.
    """
    n = None
    if keys is not None:
        keys = _model_keys(keys)
        n = keys.shape[0]
    l1s, n = _per_model("l1", l1, n)
    l2s, n = _per_model("l2", l2, n)
    scales, n = _per_model("lr_scale", lr_scale, n)
    named = {}
    for name, value in hyper_mapping(hyper).items():
        _numbers(f"hyper[{name!r}]", value, many=True)
        named[name], n = _per_model(f"hyper[{name!r}]", value, n)
    n = 1 if n is None else n
    _checks.penalty("l1", l1s), _checks.penalty("l2", l2s)
    if not ((scales > 0) & np.isfinite(scales)).all():
        raise _checks.fail("lr_scale", "finite values > 0", lr_scale)
    keys = jax.random.split(jax.random.key(0), n) if keys is None else keys
    l1s, l2s, scales = (np.broadcast_to(v, (n,)).copy() for v in (l1s, l2s, scales))
    named = {k: np.broadcast_to(v, (n,)).copy() for k, v in named.items()}
    return keys, l1s, l2s, scales, named


def hyper_mapping(hyper) -> dict:
    """Returns ``hyper`` (None, or a mapping of names to values) as a dict."""
    if hyper is None:
        return {}
    if not isinstance(hyper, Mapping):
        raise TypeError(
            f"hyper: expected a dict of names to values, such as "
            f"{{'p': [0.1, 0.3]}}, got {hyper!r}."
        )
    for name in hyper:
        if not isinstance(name, str) or not name:
            raise TypeError(f"hyper: expected names as strings, got {name!r}.")
    return dict(hyper)


def _numbers(name: str, value, many: bool) -> None:
    """Raises TypeError unless ``value`` is a real number (or, with ``many``,
    a 1-D sequence of real numbers)."""
    items = value if many and isinstance(value, list | tuple | np.ndarray) else [value]
    for v in np.asarray(items, dtype=object).ravel() if many else items:
        _checks.number(name, v)


def one_model_hyper(hyper) -> dict[str, np.ndarray]:
    """Returns ``fit``'s ``hyper``: each name to its one value, checked."""
    out = {}
    for name, value in hyper_mapping(hyper).items():
        out[name] = np.float32(_checks.number(f"hyper[{name!r}]", value))
    return out


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


# ---------------------------------------------- the controls of issue 23


@dataclasses.dataclass(frozen=True)
class SmoothedLoss:
    """``softmax_cross_entropy`` with label smoothing α, as ``fit``'s loss.

    Hashable by value, so equal fits share their compiled epoch; named as
    the loss it smooths, so the classification checks and the metrics treat
    it as that loss. α may be an ``ann.hyper``, read (and its values
    checked) while the step traces.
    """

    label_smoothing: float | _hyperparams.Hyper

    @property
    def __name__(self) -> str:
        return "softmax_cross_entropy"

    def __call__(self, y_true, y_pred, reduction: str = "mean"):
        alpha = _hyperparams.value(self.label_smoothing, _label_smoothing)
        return _losses.softmax_cross_entropy(
            y_true, y_pred, reduction, label_smoothing=alpha
        )


def _label_smoothing(alpha) -> float:
    return _losses.check_label_smoothing(alpha, "label_smoothing")


def smoothed_loss(loss, label_smoothing):
    """Returns ``loss`` with ``label_smoothing`` α applied (0: ``loss`` itself);
    α is a number or an ``ann.hyper`` (a value per model from ``hyper=``).

    Raises:
      ValueError: for α outside [0, 1], or α > 0 with another loss than
        ``softmax_cross_entropy`` (smoothing mixes class targets).
    """
    alpha = label_smoothing
    if not isinstance(alpha, _hyperparams.Hyper):
        alpha = _label_smoothing(alpha)
        if alpha == 0.0:
            return loss
    if _losses.name_of(loss) != "softmax_cross_entropy":
        raise _checks.fail(
            "label_smoothing",
            "loss='softmax_cross_entropy' (smoothing mixes class targets)",
            f"loss={loss!r}",
            "Drop label_smoothing, or train with softmax cross-entropy.",
        )
    return SmoothedLoss(alpha)


def _decay(ema) -> float:
    """Returns an EMA decay, checked: a number in [0, 1)."""
    ema = _checks.number("ema", ema)
    if not 0.0 <= ema < 1.0:
        raise _checks.fail(
            "ema", "a decay d in [0, 1) (0.999 is common)", ema, "Or None."
        )
    return ema


def ema_decay(ema, validate_on: str, named=None) -> np.ndarray | None:
    """Returns the EMA decay (None: no average) after checking ``validate_on``.

    ``ema`` is a number, or an ``ann.hyper`` whose value(s) ``named`` (the
    run's ``hyper=``, one value or one per model) or its default give; the
    result is that value, or those values, as float32.
    """
    validate_on = _checks.one_of("validate_on", validate_on, ("params", "ema"))
    if isinstance(ema, _hyperparams.Hyper):
        named = named or {}
        if ema.name not in named and ema.default is None:
            raise ValueError(
                f"hyper: expected a value for ema=ann.hyper({ema.name!r}), got "
                f"none (given: {sorted(named)}). Pass hyper={{{ema.name!r}: "
                "...}, or give the hyper a default."
            )
        values = np.asarray(named.get(ema.name, ema.default), np.float32)
        for v in values.ravel():
            _decay(float(v))
        ema = values
    elif ema is not None:
        ema = np.float32(_decay(ema))
    if validate_on == "ema" and ema is None:
        raise _checks.fail(
            "validate_on",
            "'params' without ema=",
            "'ema'",
            "Pass ema=0.999 (the decay) to validate the moving average.",
        )
    return ema


def frozen_paths(trainable, params) -> tuple[str, ...]:
    """Returns the paths (``"dense_0/w"``) of the leaves ``trainable`` freezes.

    ``trainable`` is None (all train), a function of the path string that
    returns True (train) or False (freeze), or a pytree of bools with the
    structure of the params or a prefix of it (one bool for a whole layer).

    Raises:
      TypeError: for another kind of ``trainable``, or a value not a bool.
      ValueError: for a pytree of another structure, or one that freezes
        every parameter.
    """
    if trainable is None:
        return ()
    paths = [leaf_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    if callable(trainable):
        flags = {path: _flag(trainable(path), path) for path in paths}
    elif isinstance(trainable, Mapping | list | tuple | bool):
        flags = {}

        def visit(path, flag, subtree):
            for sub, _ in jax.tree_util.tree_flatten_with_path(subtree)[0]:
                flags[leaf_path((*path, *sub))] = _flag(flag, leaf_path(path))

        try:
            jax.tree_util.tree_map_with_path(visit, trainable, params)
        except ValueError as exc:
            raise _checks.fail(
                "trainable",
                "a pytree of bools with the structure of the params (or a "
                "prefix of it: one bool per layer)",
                jax.tree_util.tree_structure(trainable),
                f"The params' structure is {jax.tree_util.tree_structure(params)}.",
            ) from exc
    else:
        raise TypeError(
            "trainable: expected a function of the parameter path "
            "(lambda path: not path.startswith('dense_0')) or a pytree of bools, "
            f"got {trainable!r}."
        )
    frozen = tuple(path for path in paths if not flags[path])
    if paths and len(frozen) == len(paths):
        raise _checks.fail(
            "trainable",
            "at least one trainable parameter",
            "every parameter frozen",
            "Use ann.predict or ann.evaluate to run a frozen model.",
        )
    return frozen


def _flag(value, path: str) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"trainable: expected True or False for {path!r}, got {value!r}.")


def start_tree(what: str, expected, given, input_shape, models: int | None):
    """Returns the ``params=`` or ``state=`` tree to start from, checked.

    ``expected`` is the model's (abstract) tree. For ``fit_many``
    (``models`` given) the tree is stacked (a leading axis of ``models``)
    or one set, broadcast to every model.

    Raises:
      ValueError: naming the arrays missing, extra or reshaped.
    """
    if given is None:
        return None
    given = jax.tree_util.tree_map(
        lambda a: _mesh.host_or_spread(_checks.numeric_array(what, a)), given
    )
    if models is not None:
        leaves = jax.tree_util.tree_leaves(given)
        if leaves and all(np.ndim(a) >= 1 and a.shape[0] == models for a in leaves):
            one = jax.tree_util.tree_map(lambda a: a[0], given)
            if not shape_mismatch(what, expected, one, input_shape):
                return given
        if (error := shape_mismatch(what, expected, given, input_shape)) is not None:
            raise ValueError(
                f"{error} For fit_many: one set for all {models} models, or "
                f"every array stacked with a leading axis of {models} models."
            )
        return jax.tree_util.tree_map(
            lambda a: np.broadcast_to(np.asarray(a), (models, *np.shape(a))), given
        )
    if (error := shape_mismatch(what, expected, given, input_shape)) is not None:
        raise ValueError(error)
    return given


def named_shapes(tree) -> dict[str, tuple]:
    """Returns ``{"dense_0/w": shape, "relu_1": "{}", …}`` for a params tree."""
    # an empty dict is a leaf here: a layer without params still has a name
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda t: isinstance(t, dict) and not t
    )[0]
    return {
        leaf_path(path): ("{}" if isinstance(leaf, dict) else tuple(np.shape(leaf)))
        for path, leaf in leaves
    }


def shape_diff(expected, got) -> tuple[list, list, list]:
    """Returns the paths missing from ``got``, extra in it, and reshaped
    (both :func:`named_shapes`)."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    reshaped = [
        f"{k}: expected {expected[k]}, got {got[k]}"
        for k in sorted(set(expected) & set(got))
        if expected[k] != got[k]
    ]
    return missing, extra, reshaped


def shape_mismatch(what: str, expected, got, input_shape) -> str | None:
    """Returns the error for a tree ``got`` not shaped as ``expected``, or None.

    The message names the arrays missing, extra and reshaped (paths such as
    ``dense_0/w``).
    """
    expected, got = named_shapes(expected), named_shapes(got)
    if expected == got:
        return None
    missing, extra, reshaped = shape_diff(expected, got)
    return (
        f"{what}: expected the {what} of this model for inputs of shape "
        f"{tuple(input_shape)}, got {what} of another model: missing "
        f"{missing or 'none'}, extra {extra or 'none'}, reshaped "
        f"{reshaped or 'none'}. Pass the {what} that fit (or this model's "
        "init) returned, or data of the shape the model was trained on."
    )
