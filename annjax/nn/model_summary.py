"""``summary``: a model's layers, their output shapes, sizes and FLOPs, as a table.

Like Keras' ``model.summary()`` and flax's ``tabulate``, for any annjax Layer.
Nothing runs: the params' shapes come from ``jax.eval_shape`` of ``init``, and
each layer's FLOPs from XLA's cost analysis of that layer alone, compiled for
one example (``jax.jit(f).lower(...).compile().cost_analysis()``), in
evaluation mode.

``serial`` is expanded into its children, ``residual`` into its block plus a
row for what the residual adds (the shortcut and the sum), and a ``from_flax``
module (linen or nnx) into its direct submodules plus a row for what the
module computes between them (its activation functions, reshapes). Every
other layer is one row.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from annjax import _checks
from annjax._types import Layer, Shape

__all__ = ["LayerSummary", "Summary", "flops", "summary"]


class LayerSummary(NamedTuple):
    """One row of a :class:`Summary`.

    Attributes:
      path: the layer's path in the params (``dense_0``, ``residual_3/dense_0``).
      kind: the layer's kind (``dense``, ``relu``, a flax module's class).
      output_shape: the shape of one example's output.
      params: the number of parameters.
      state: the number of state values (batch-norm statistics and the like).
      flops: XLA's count of floating-point operations for one example.
    """

    path: str
    kind: str
    output_shape: Shape
    params: int
    state: int
    flops: float


class Summary(NamedTuple):
    """A model's layers and totals; ``str(summary)`` is the table.

    Attributes:
      layers: the rows, in the order the model applies them.
      input_shape: the shape of one example.
      output_shape: the model's output shape for one example.
      total_params: the number of parameters of ``init``.
      total_state: the number of state values of ``init``.
      total_flops: XLA's FLOPs of the whole model for one example.
    """

    layers: tuple[LayerSummary, ...]
    input_shape: Shape
    output_shape: Shape
    total_params: int
    total_state: int
    total_flops: float

    def __str__(self) -> str:
        head = ("path", "kind", "output shape", "params", "state", "FLOPs")
        body = [
            (
                r.path,
                r.kind,
                str(r.output_shape),
                f"{r.params:,}",
                f"{r.state:,}",
                f"{r.flops:,.0f}",
            )
            for r in self.layers
        ]
        foot = (
            "total",
            "",
            str(self.output_shape),
            f"{self.total_params:,}",
            f"{self.total_state:,}",
            f"{self.total_flops:,.0f}",
        )
        widths = [max(len(row[i]) for row in (head, *body, foot)) for i in range(6)]

        def line(row) -> str:
            cells = [
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(head))
        title = f"input shape {self.input_shape}"
        return "\n".join([title, line(head), rule, *map(line, body), rule, line(foot)])


def _size(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _abstract(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype), tree)


def flops(fn, *args) -> float:
    """Returns XLA's FLOPs of ``jax.jit(fn)(*args)`` (arrays or shape structs)."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list | tuple):  # older JAX: one dict per program
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", 0.0))


def _layer_flops(layer: Layer, params, state, x):
    """Returns the output (a shape struct) and FLOPs of ``layer`` in evaluation."""

    def run(p, s, xs):
        return layer.apply(p, s, xs, train=False)[0]

    return jax.eval_shape(run, params, state, x), flops(run, params, state, x)


def _children(layer: Layer) -> list[Layer]:
    """Returns the Layers in ``layer.config`` (a combinator's children), in order."""
    found: list[Layer] = []

    def walk(item) -> None:
        if isinstance(item, Layer):
            found.append(item)
        elif isinstance(item, tuple | list):
            for part in item:
                walk(part)

    for part in layer.config or ():
        walk(part)
    return found


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _rows(layer: Layer, params, state, x, path: str) -> tuple[list, object]:
    """Returns the rows of ``layer`` on the example batch ``x``, and its output."""
    children = _children(layer)
    names = [f"{c.kind}_{i}" for i, c in enumerate(children)]
    if layer.kind == "serial" and names and all(n in params for n in names):
        rows = []
        for name, child in zip(names, children, strict=True):
            sub, x = _rows(child, params[name], state[name], x, _join(path, name))
            rows += sub
        return rows, x
    out, total = _layer_flops(layer, params, state, x)
    shape = tuple(out.shape[1:])
    parts = _parts(layer, children, params, state, x, path)
    if not parts:
        row = LayerSummary(
            path or "model", layer.kind, shape, _size(params), _size(state), total
        )
        return [row], out
    rest = LayerSummary(
        path or "model",
        f"{layer.kind} (rest)",
        shape,
        _size(params) - sum(r.params for r in parts),
        _size(state) - sum(r.state for r in parts),
        total - sum(r.flops for r in parts),
    )
    return [*parts, rest], out


def _parts(layer: Layer, children, params, state, x, path: str) -> list:
    """Returns the rows of a residual's block or a flax module's submodules."""
    if layer.kind == "residual" and children:
        block = children[0]
        b_params = {k: v for k, v in params.items() if k != "shortcut"}
        b_state = {k: v for k, v in state.items() if k != "shortcut"}
        return _rows(block, b_params, b_state, x, path)[0]
    describe = getattr(layer.init, "submodules", None)
    if describe is None:
        return []
    return [
        LayerSummary(_join(path, name), kind, shape, _size(p), _size(s), count)
        for name, kind, shape, p, s, count in describe(params, state, x)
    ]


def summary(
    model: Layer,
    input_shape: Shape,
    *,
    dtype: jnp.dtype | str = "float32",
    key: jax.Array | None = None,
) -> Summary:
    """Returns the summary of ``model`` for examples of shape ``input_shape``.

    Each row gives a layer's path, kind, output shape, parameter count, state
    size and FLOPs per example (XLA's cost analysis of that layer alone);
    ``total_params`` and ``total_state`` count ``init``'s arrays and
    ``total_flops`` is the cost analysis of the whole model. The rows' FLOPs
    add up to it up to what XLA simplifies across layers (see
    ``docs/fine_tuning.md``).

    Args:
      model: an annjax Layer.
      input_shape: the shape of one example (no batch axis).
      dtype: the dtype of the input (``"int32"`` for token ids, e.g. a
        ``from_flax(nn.Embed(...))``).
      key: the key ``init`` gets (default ``jax.random.key(0)``); only shapes
        are computed, nothing is initialised.

    Raises:
      TypeError: if ``model`` is not a Layer.
      ValueError: for an invalid ``input_shape``.

    Examples:
      >>> import annjax as ann
      >>> s = ann.summary(ann.mlp([16, 3]), (4,))
      >>> s.total_params
      131
      >>> [row.path for row in s.layers]
      ['dense_0', 'relu_1', 'dense_2']
    """
    if not isinstance(model, Layer):
        raise TypeError(
            f"summary model: expected an annjax Layer (ann.mlp(...), "
            f"ann.from_flax(module)), got {type(model).__name__}."
        )
    if not isinstance(input_shape, tuple | list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in input_shape
    ):
        raise _checks.fail(
            "summary input_shape",
            "the shape of one example, a tuple of positive ints such as (28, 28, 1)",
            input_shape,
        )
    shape = tuple(input_shape)
    key = jax.random.key(0) if key is None else key
    box = {}

    def init(k):
        box["shape"], params, state = model.init(k, shape)
        return params, state

    params, state = jax.eval_shape(init, key)
    x = jax.ShapeDtypeStruct((1, *shape), jnp.dtype(dtype))
    rows, _ = _rows(model, params, state, x, "")
    _, total = _layer_flops(model, params, state, x)
    return Summary(
        tuple(rows), shape, tuple(box["shape"]), _size(params), _size(state), total
    )
