"""``evaluate`` and ``predict``: a trained model on new data, batched and jitted.

Both run the evaluation code of the compiled epoch's validation pass
(:func:`annjax.training.step.evaluate_arrays`), so a model's ``val_loss``
in the history and ``evaluate`` on the same data agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from annjax import _checks
from annjax import losses as _losses
from annjax._types import Array, Layer
from annjax.data.host import Chunk
from annjax.data.stream import source_of
from annjax.training import mesh as _mesh
from annjax.training import streamed as _streamed
from annjax.training.arguments import (
    as_arrays,
    check_model,
    fit_targets,
    metric_names,
    named_shapes,
    shape_diff,
    shape_mismatch,
    smoothed_loss,
)
from annjax.training.inputs import check_functions, check_link, host_array
from annjax.training.step import (
    abstract_init,
    evaluate_arrays,
    losses_and_metrics,
    output_shape,
    predict_batched,
)
from annjax.training.weights import example_weights, split_data

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
    devices; an ``x`` laid over them stays where it lies. Without ``mesh``,
    an ``x`` laid over a mesh's devices runs on that mesh (computation
    follows data).

    ``x`` may also be streamed (``docs/streaming.md``): a ``numpy.memmap`` or
    ``ann.data.stream(X)`` (host arrays, read front to back a chunk at a
    time), or an iterable of batches ``(x, y)`` (its ``y`` not read); only
    the outputs are kept on the device. With ``mesh`` each chunk's batches
    are split along their rows over ``"data"``, as ``fit`` streams them: on
    several processes each process reads only its rows of every batch of
    host arrays, or passes its own loader (its part of every global batch).
    Every process gets the same result: the global array of all the outputs,
    replicated on the mesh's devices (as for arrays in memory), in the
    examples' order: for loaders, batch after batch, each one's rows in
    process order, the padding of short batches cut.

    Raises:
      TypeError: for a model that is not a Layer, or complex ``x``.
      ValueError: for params or state of another model (the message names
        the missing, extra or reshaped arrays), before anything compiles;
        for streamed batches that do not split over this process's devices
        on ``"data"``, or processes that stream different numbers of
        batches or examples (as ``fit``).

    Examples:
      >>> import jax, numpy as np, annjax as ann
      >>> from jax.sharding import Mesh
      >>> model = ann.mlp([4, 2])
      >>> _, params, state = model.init(jax.random.key(0), (3,))
      >>> X = np.ones((10, 3), np.float32)
      >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
      >>> ann.predict(model, params, state, ann.data.stream(X), 4, mesh).shape
      (10, 2)
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
    mesh = _mesh.follow_data(mesh, x)
    x = _mesh.place_data("x", x, mesh)
    params, state = _mesh.place_state((params, state), mesh, False)
    return _predict(model, params, state, x, batch_size, mesh)


def _input_shape_of(model: Layer, input_shape, params, state) -> tuple | None:
    """Returns the example shape (``input_shape`` with another last axis) for
    which ``model.init`` makes exactly these params and state; None if none.

    The candidates are the sizes found in the params' shapes, so the data's
    wrong feature count is told apart from another model's params.
    """
    got = named_shapes(params), named_shapes(state)
    sizes = {d for shape in got[0].values() if shape != "{}" for d in shape}
    for d in sorted(sizes - set(tuple(input_shape)[-1:]))[:32]:
        shape = (*tuple(input_shape)[:-1], d)
        try:
            want = abstract_init(model, shape)[1:]
        except (ValueError, TypeError):
            continue
        if tuple(named_shapes(w) for w in want) == got:
            return shape
    return None


def check_params(model: Layer, input_shape, params, state, name: str = "x") -> None:
    """Raises ValueError unless params and state are shaped as ``model.init``'s.

    Compares the trees' paths and shapes with ``jax.eval_shape`` of the
    model's init (no compute), so another model's params are refused with the
    layers they lack or add, not a bare KeyError from inside the trace. When
    the params are this model's for examples of another shape, the data
    (``name``) is what is wrong, and the message says so.
    """
    input_shape = tuple(input_shape)
    want = abstract_init(model, input_shape)[1:]
    pairs = zip(("params", "state"), want, (params, state), strict=True)
    for what, expected, got in pairs:
        error = shape_mismatch(what, expected, got, input_shape)
        if error is None:
            continue
        missing, extra, reshaped = shape_diff(named_shapes(expected), named_shapes(got))
        fits = not (missing or extra) and (
            _input_shape_of(model, input_shape, params, state)
        )
        if fits:
            raise ValueError(
                f"{name}: expected examples of shape {fits}, the model's input "
                f"shape for these params, got examples of shape {input_shape}: "
                f"the data does not fit the model (reshaped {reshaped}). Pass "
                "data with the features the model was trained on."
            )
        raise ValueError(error)


def evaluate(
    model: Layer,
    params,
    state,
    data: tuple[Any, Any],
    loss: str | Callable = "softmax_cross_entropy",
    metrics: Sequence[str | Callable] = (),
    batch_size: int = 1024,
    mesh: Mesh | None = None,
    class_weight: Mapping[Any, float] | None = None,
    *,
    label_smoothing: float = 0.0,
) -> dict[str, float]:
    """Returns ``{"loss": …, metric: …}`` on ``data = (X, y)``, batched and jitted.

    Metrics are computed on all predictions at once (exact F1, R²…); a
    metric function ``(y_true, y_pred) -> scalar`` is keyed by its name.
    ``mesh`` splits each batch over its ``"data"`` axis, as in :func:`predict`.
    ``label_smoothing`` α > 0 (softmax cross-entropy only) smooths the
    targets of the loss as ``fit(label_smoothing=α)`` does, so the two agree.
    ``data = (X, y, w)`` and ``class_weight={label: weight}`` weigh the
    examples: the loss is Σ wᵢ ℓᵢ / Σ wᵢ and the metrics get
    ``sample_weight`` (scikit-learn's weighted results).

    ``data`` may be streamed as in :func:`predict` (a memmap pair,
    ``ann.data.stream(X, y)``, an iterable of batches): the predictions and
    targets of every example are kept on the device, so the metrics stay
    exact; on a mesh each process reads its own rows or passes its own
    loader, and every process gets the same values. The padding of short
    batches is never counted; an iterable's batches ``(x, y, w)`` and
    ``class_weight`` weigh the examples as ``(X, y, w)`` does.

    Examples:
      >>> import jax, numpy as np, annjax as ann
      >>> model = ann.mlp([4, 2])
      >>> _, params, state = model.init(jax.random.key(0), (3,))
      >>> X, y = np.ones((10, 3), np.float32), np.zeros(10, np.int32)
      >>> batches = [(X[:4], y[:4]), (X[4:8], y[4:8]), (X[8:], y[8:])]
      >>> a = ann.evaluate(model, params, state, (X, y), metrics=("accuracy",))
      >>> a == ann.evaluate(model, params, state, batches, metrics=("accuracy",))
      True
    """
    check_model(model)
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    mesh = _mesh.check(mesh, many=False)
    _losses.get(loss)
    loss = smoothed_loss(loss, label_smoothing)
    metrics = metric_names(metrics)
    source = source_of(data)
    if source is not None:  # a memmap, an iterable of batches: streamed
        args = (model, params, state, source, loss, metrics, batch_size, mesh)
        return _streamed_evaluate(*args, class_weight)
    data, w = split_data("data", data)
    x, y = as_arrays("data", data)
    w = example_weights("data w", w, y, class_weight=class_weight)
    out_shape = output_shape(model, x.shape[1:])
    y = fit_targets("data", y, loss, out_shape, metrics)
    check_link(model, loss)
    check_functions(y, loss, out_shape, metrics)
    check_params(model, x.shape[1:], params, state, "data X")
    mesh = _mesh.follow_data(mesh, x, y)
    x, y = _mesh.place_pair("data", (x, y), mesh)
    params, state = _mesh.place_state((params, state), mesh, False)
    logs = _evaluate(model, loss, metrics, batch_size, params, state, x, y, mesh, w)
    return {k: float(v) for k, v in logs.items()}


def _streamed_predict(model, params, state, source, batch_size, mesh) -> Array:
    """Returns :func:`predict` on streamed ``x`` (a memmap, an iterable of
    batches ``(x, y)``, whose targets are not read); on a mesh each process
    reads its own rows (:func:`annjax.training.streamed.outputs`)."""
    x = _streamed.example(source, "x", targets=False)
    check_params(model, x.shape[1:], params, state)
    if mesh is not None:
        _streamed.check_shards(source, mesh, "x")
    params, state = _mesh.place_state((params, state), mesh, False)

    def convert(chunk: Chunk) -> Chunk:
        return Chunk(host_array("x", chunk.x), None, chunk.w)

    args = (model, params, state, source, batch_size, convert, mesh)
    return _streamed.outputs(*args)[0]


def _streamed_evaluate(
    model, params, state, source, loss, metrics, batch_size, mesh, class_weight
):
    """Returns :func:`evaluate` on streamed ``data``: the predictions, targets
    and weights of every example kept on the device(s), the inputs streamed
    through once. The weights are an iterable's own ``w`` times
    ``class_weight``'s; weights that are all 1 leave the loss a plain mean,
    as for arrays without weights."""
    x = _streamed.example(source, "data", targets=True)
    if mesh is not None:
        _streamed.check_shards(source, mesh, "data")
    check_params(model, x.shape[1:], params, state)
    out = output_shape(model, x.shape[1:])
    to_rule = functools.partial(
        _streamed.convert, loss=loss, out_shape=out, metrics=metrics, name="data"
    )

    def convert(chunk: Chunk) -> Chunk:
        if class_weight is not None:  # by the labels as given, before the rule
            lead = chunk.w.ndim
            rows = np.asarray(chunk.y).reshape(-1, *np.shape(chunk.y)[lead:])
            factor = example_weights("data w", None, rows, class_weight=class_weight)
            chunk = chunk._replace(w=chunk.w * factor.reshape(chunk.w.shape))
        return to_rule(chunk)

    params, state = _mesh.place_state((params, state), mesh, False)
    args = (model, params, state, source, batch_size, convert, mesh)
    pred, y, w = _streamed.outputs(*args)
    weighted = class_weight is not None or not bool(jnp.all(w == 1))
    if weighted and not bool(jnp.any(w > 0)):
        raise _checks.fail(
            "data w", "a positive weight for at least one example", "all weights 0"
        )
    logs = _losses_and_metrics(loss, metrics, y, pred, w if weighted else None)
    return {k: float(v) for k, v in logs.items()}


_losses_and_metrics = jax.jit(losses_and_metrics, static_argnums=(0, 1))
