"""``evaluate`` and ``predict``: a trained model on new data, batched and jitted.

Both run the evaluation code of the compiled epoch's validation pass
(:func:`annjax.training.step.evaluate_arrays`), so a model's ``val_loss``
in the history and ``evaluate`` on the same data agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from annjax import _checks
from annjax import losses as _losses
from annjax._types import Array, Layer
from annjax.data.host import Chunk, HostArrays
from annjax.data.stream import source_of
from annjax.training import mesh as _mesh
from annjax.training import streamed as _streamed
from annjax.training.arguments import (
    as_arrays,
    check_model,
    fit_targets,
    metric_names,
)
from annjax.training.inputs import host_array
from annjax.training.step import (
    abstract_init,
    evaluate_arrays,
    losses_and_metrics,
    output_shape,
    predict_batched,
)

__all__ = ["evaluate", "predict"]

_predict = jax.jit(predict_batched, static_argnums=(0, 4, 5))
_evaluate = jax.jit(evaluate_arrays, static_argnums=(0, 1, 2, 3, 8))


def predict(
    model: Layer, params, state, x, batch_size: int = 1024, mesh: Mesh | None = None
) -> Array:
    """Returns the model's outputs on ``x`` in evaluation mode, batched and jitted.

    ``x`` follows ``fit``'s dtype rule (:mod:`annjax.training.inputs`):
    integers stay int32, float64 stays float64 under x64. With ``mesh`` (a
    ``"data"`` axis, as in :func:`annjax.fit`) each batch is split over its
    devices; an ``x`` laid over them stays where it lies.

    Raises:
      TypeError: for a model that is not a Layer, or complex ``x``.
      ValueError: for params or state of another model (the message names
        the missing, extra or reshaped arrays), before anything compiles.
    """
    check_model(model)
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    mesh = _mesh.check(mesh, many=False)
    source = source_of(x)
    if source is not None:  # a memmap, an iterable of batches: streamed
        return _streamed_predict(model, params, state, source, batch_size, mesh)
    x = _checks.numeric_array("x", x)
    on_device = isinstance(x, jax.Array) and (
        jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating)
    )  # already in a dtype of the rule: no copy to the host
    x = jnp.asarray(x if on_device else host_array("x", np.asarray(x)))
    if x.ndim < 1:
        raise _checks.fail("x", "a batch (n, *input_shape)", x.shape)
    check_params(model, x.shape[1:], params, state)
    x = _mesh.place_data("x", x, mesh)
    params, state = _mesh.place_state((params, state), mesh, False)
    return _predict(model, params, state, x, batch_size, mesh)


def _named_shapes(tree) -> dict[str, tuple]:
    """Returns ``{"dense_0/w": shape, "relu_1": "{}", …}`` for a params tree."""
    # an empty dict is a leaf here: a layer without params still has a name
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda t: isinstance(t, dict) and not t
    )[0]
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): (
            "{}" if isinstance(leaf, dict) else tuple(np.shape(leaf))
        )
        for path, leaf in leaves
    }


def check_params(model: Layer, input_shape, params, state) -> None:
    """Raises ValueError unless params and state are shaped as ``model.init``'s.

    Compares the trees' paths and shapes with ``jax.eval_shape`` of the
    model's init (no compute), so another model's params are refused with the
    layers they lack or add, not a bare KeyError from inside the trace.
    """
    want = abstract_init(model, tuple(input_shape))[1:]
    pairs = zip(("params", "state"), want, (params, state), strict=True)
    for what, expected, got in pairs:
        expected, got = _named_shapes(expected), _named_shapes(got)
        if expected == got:
            continue
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        reshaped = [
            f"{k}: expected {expected[k]}, got {got[k]}"
            for k in sorted(set(expected) & set(got))
            if expected[k] != got[k]
        ]
        raise ValueError(
            f"{what}: expected the {what} of this model for inputs of shape "
            f"{tuple(input_shape)}, got {what} of another model: missing "
            f"{missing or 'none'}, extra {extra or 'none'}, reshaped "
            f"{reshaped or 'none'}. Pass the {what} that fit (or this model's "
            "init) returned."
        )


def evaluate(
    model: Layer,
    params,
    state,
    data: tuple[Any, Any],
    loss: str | Callable = "softmax_cross_entropy",
    metrics: Sequence[str | Callable] = (),
    batch_size: int = 1024,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Returns ``{"loss": …, metric: …}`` on ``data = (X, y)``, batched and jitted.

    Metrics are computed on all predictions at once (exact F1, R²…); a
    metric function ``(y_true, y_pred) -> scalar`` is keyed by its name.
    ``mesh`` splits each batch over its ``"data"`` axis, as in :func:`predict`.
    """
    check_model(model)
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    mesh = _mesh.check(mesh, many=False)
    _losses.get(loss)
    metrics = metric_names(metrics)
    source = source_of(data)
    if source is not None:  # a memmap, an iterable of batches: streamed
        args = (model, params, state, source, loss, metrics, batch_size, mesh)
        return _streamed_evaluate(*args)
    x, y = as_arrays("data", data)
    y = fit_targets("data", y, loss, output_shape(model, x.shape[1:]), metrics)
    check_params(model, x.shape[1:], params, state)
    x, y = _mesh.place_pair("data", (x, y), mesh)
    params, state = _mesh.place_state((params, state), mesh, False)
    logs = _evaluate(model, loss, metrics, batch_size, params, state, x, y, mesh)
    return {k: float(v) for k, v in logs.items()}


def _streamed_predict(model, params, state, source, batch_size, mesh) -> Array:
    """Returns :func:`predict` on streamed ``x`` (a memmap, an iterable of
    batches ``(x, y)``, whose targets are not read)."""
    _streamed.refuse_mesh(mesh)
    x = source.example()[0]
    x = x if isinstance(source, HostArrays) else x[:1]
    check_params(model, x.shape[1:], params, state)

    def convert(chunk: Chunk) -> Chunk:
        return Chunk(host_array("x", chunk.x), None, chunk.w)

    return _streamed.outputs(model, params, state, source, batch_size, convert)[0]


def _streamed_evaluate(model, params, state, source, loss, metrics, batch_size, mesh):
    """Returns :func:`evaluate` on streamed ``data``: the predictions of every
    example kept on the device, the inputs streamed through once."""
    x, _ = _streamed.check(source, None, None, mesh, None)
    check_params(model, x.shape[1:], params, state)
    out = output_shape(model, x.shape[1:])
    convert = functools.partial(
        _streamed.convert, loss=loss, out_shape=out, metrics=metrics, name="data"
    )
    pred, y = _streamed.outputs(model, params, state, source, batch_size, convert)
    logs = _losses_and_metrics(loss, metrics, y, pred)
    return {k: float(v) for k, v in logs.items()}


_losses_and_metrics = jax.jit(losses_and_metrics, static_argnums=(0, 1))
