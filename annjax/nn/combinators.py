"""Composition of layers: ``serial``, ``residual`` and the common ``mlp``.

``serial`` names each child ``f"{kind}_{i}"`` and nests its params and state
under that name, so a parameter's path reads ``residual_3/dense_0/w``; that
path is the layer's name everywhere (history, diagnostics, plots).

The combinators also take ``probe=``, a dict that the gradient-flow profiler
passes while it traces a step: every child with an activation records a
:class:`annjax._types.Tap` of its output there (nested like the params), so
dead and saturated units are measured inside the compiled step, without hooks.
Outside the profiler ``probe`` is None and costs nothing.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> import annjax as ann
  >>> model = ann.serial(ann.dense(32), ann.activation("relu"), ann.dense(10))
  >>> out_shape, params, state = model.init(jax.random.key(0), (64,))
  >>> sorted(params)
  ['dense_0', 'dense_2', 'relu_1']
  >>> logits, state = model.apply(params, state, jnp.ones((5, 64)))
  >>> logits.shape
  (5, 10)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from annjax import _checks, activations, initializers
from annjax import hyperparams as _hyperparams
from annjax._types import (
    Array,
    Key,
    Layer,
    Params,
    Shape,
    State,
    Tap,
    init_result,
    layer_factory,
    takes_probe,
    weights_kwarg,
)
from annjax.nn import layers as _layers
from annjax.nn.normalization import batch_norm as _batch_norm

__all__ = ["mlp", "residual", "serial"]


def _check_layer(name: str, layer) -> Layer:
    if not isinstance(layer, Layer):
        raise TypeError(
            f"{name}: expected an annjax Layer (e.g. ann.dense(10)), got {layer!r}. "
            "Wrap flax modules with ann.from_flax(module)."
        )
    return layer


def _split(key: Key | None, n: int) -> list[Key | None]:
    """Returns n keys split from ``key`` (one per child), or n Nones."""
    return [None] * n if key is None else list(jax.random.split(key, n))


def _call(layer: Layer, params, state, x, key, train, probe, name, weights=None):
    """Applies one child and records its activation output into ``probe``.

    A combinator child records into ``probe[name]``, or straight into ``probe``
    when ``name`` is None (its paths are then its parent's). ``weights`` (the
    examples' weights) reach only the children that accept them.
    """
    extra = weights_kwarg(layer, weights)
    if probe is None:
        return layer.apply(params, state, x, key=key, train=train, **extra)
    if takes_probe(layer):  # a combinator, or a flax module's activations
        sub = probe if name is None else probe.setdefault(name, {})
        return layer.apply(params, state, x, key=key, train=train, probe=sub, **extra)
    y, state = layer.apply(params, state, x, key=key, train=train, **extra)
    if layer.activation is not None:
        probe[name if name is not None else layer.kind] = Tap(layer.activation, y)
    return y, state


def _check_children(kind: str, names, params, state) -> None:
    """Raises ValueError naming the missing and extra children of params/state."""
    for what, tree in (("params", params), ("state", state)):
        if not isinstance(tree, dict):
            raise TypeError(
                f"{kind}: expected {what} as a dict keyed by the children "
                f"({', '.join(names)}), got {type(tree).__name__}."
            )
        missing = [n for n in names if n not in tree]
        extra = sorted(str(k) for k in tree if k not in names)
        if missing or extra:
            raise ValueError(
                f"{kind}: expected {what} for the layers {names}, got {what} "
                f"missing {missing or 'none'} with {extra or 'none'} extra. These "
                f"{what} belong to another model; pass the ones this model's init "
                "or fit returned."
            )


@layer_factory
def serial(*layers: Layer) -> Layer:
    """Returns the composition layers[-1] ∘ … ∘ layers[0] as one Layer.

    Children are named ``f"{kind}_{i}"`` (``dense_0``, ``relu_1``,
    ``batch_norm_2``, ``residual_3``); params and state are dicts keyed by those
    names (layers without params keep an empty dict, so the tree mirrors the
    model). ``key`` is split once per child; state is threaded through.

    Raises:
      ValueError: if no layer is given. TypeError: for a non-Layer child.
    """
    if not layers:
        raise _checks.fail("serial", "at least one layer", "no layers")
    layers = tuple(_check_layer(f"serial child {i}", c) for i, c in enumerate(layers))
    names = [f"{layer.kind}_{i}" for i, layer in enumerate(layers)]

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        params, state = {}, {}
        shape = tuple(input_shape)
        for name, layer, k in zip(names, layers, _split(key, len(layers)), strict=True):
            out = init_result(f"serial child {name}", layer.init(k, shape))
            shape, params[name], state[name] = out
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False, probe=None, weights=None):
        _check_children("serial", names, params, state)
        new_state = {}
        for name, layer, k in zip(names, layers, _split(key, len(layers)), strict=True):
            x, new_state[name] = _call(
                layer, params[name], state[name], x, k, train, probe, name, weights
            )
        return x, new_state

    return Layer(init, apply, "serial")


@layer_factory
def residual(block: Layer, projection: str | Layer | None = None) -> Layer:
    r"""Returns the residual layer y = x + block(x) (He et al., 2016).

    .. math:: y = x + F(x) \quad\text{or}\quad y = P x + F(x)

    The identity path gives the gradient a route around ``block``, the
    lecture's remedy for vanishing gradients in deep networks. The block's
    params and state are the residual's own (paths read ``residual_3/dense_0/w``);
    a projection's are stored under ``shortcut``.

    Args:
      block: the branch F.
      projection: None (identity shortcut; shapes must agree), ``"dense"`` (a
        learned linear map P to the block's output width), or any Layer.

    Raises:
      ValueError: at init, when block(x) and x differ in shape and there is no
        projection; the message names both shapes.
    """
    block = _check_layer("residual block", block)
    if projection is not None and projection != "dense":
        projection = _check_layer("residual projection", projection)

    def shortcut_layer(in_shape: Shape, out_shape: Shape) -> Layer | None:
        if projection is None:
            if tuple(out_shape) != tuple(in_shape):
                raise ValueError(
                    f"residual: the block maps shape {tuple(in_shape)} to "
                    f"{tuple(out_shape)}, so x + block(x) is undefined. Make the "
                    "block keep the shape, or pass projection='dense'."
                )
            return None
        if projection == "dense":
            return _layers.dense(out_shape[-1], w_init="xavier_uniform", use_bias=False)
        return projection

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        k_block, k_proj = jax.random.split(key)
        out_shape, params, state = block.init(k_block, input_shape)
        proj = shortcut_layer(tuple(input_shape), out_shape)
        if proj is not None:
            p_shape, p_params, p_state = proj.init(k_proj, input_shape)
            if tuple(p_shape) != tuple(out_shape):
                raise ValueError(
                    f"residual: the projection maps {tuple(input_shape)} to "
                    f"{tuple(p_shape)}, but the block gives {tuple(out_shape)}."
                )
            params = {**params, "shortcut": p_params}
            state = {**state, "shortcut": p_state}
        return out_shape, params, state

    def apply(params, state, x, *, key=None, train=False, probe=None, weights=None):
        k_block, k_proj = _split(key, 2)
        has_proj = _has_shortcut(projection, params)
        b_params, b_state = params, state
        if has_proj:
            b_params = {k: v for k, v in params.items() if k != "shortcut"}
            b_state = {k: v for k, v in state.items() if k != "shortcut"}
        # The block's paths are the residual's own, so its taps are not nested.
        fx, new_state = _call(
            block, b_params, b_state, x, k_block, train, probe, None, weights
        )
        if not has_proj:
            return x + fx, new_state
        proj = shortcut_layer(tuple(x.shape[1:]), tuple(fx.shape[1:]))
        px, p_state = proj.apply(
            params["shortcut"],
            state["shortcut"],
            x,
            key=k_proj,
            train=train,
            **weights_kwarg(proj, weights),
        )
        return px + fx, {**new_state, "shortcut": p_state}

    return Layer(init, apply, "residual")


def _has_shortcut(projection, params) -> bool:
    """Returns whether the residual has a projection; its params must hold it."""
    if projection is None:
        return False
    if not (isinstance(params, dict) and "shortcut" in params):
        raise ValueError(
            "residual: expected params with a 'shortcut' entry (the "
            "projection's), got none. These params belong to another model."
        )
    return True


_residual = residual  # mlp's `residual` flag shadows the function inside mlp


@layer_factory
def mlp(
    sizes: Sequence[int],
    activation: str | Callable[..., Array] = "relu",
    output_activation: str | Callable[..., Array] | None = None,
    dropout: float = 0.0,
    batch_norm: bool = False,
    residual: bool = False,
    w_init: str | Callable[..., Array] | None = None,
    *,
    momentum: float = 0.99,
    dtype=None,
    param_dtype=jnp.float32,
) -> Layer:
    """Returns a multilayer perceptron: hidden blocks, then an output dense layer.

    ``mlp([h1, …, hk, out])`` builds, for each hidden width h,
    ``dense(h) → [batch_norm] → activation → [dropout]`` and ends with
    ``dense(out, output_activation)``. With ``residual=True`` every hidden block
    after the first whose width equals the previous block's is wrapped in
    :func:`residual` (the first block's input width is only known at init).
    Weights are He initialised for the ReLU family and Xavier otherwise, unless
    ``w_init`` says.

    Args:
      sizes: the widths of the hidden layers, then the number of outputs.
      activation: the hidden layers' activation (a name or a callable).
      output_activation: the last layer's activation; None gives logits.
      dropout: the dropout rate after each hidden activation (0: none), or
        ``ann.hyper(name)``: a rate per model from ``hyper=``.
      batch_norm: whether to normalise each hidden layer's pre-activation.
      residual: whether to wrap equal-width hidden blocks in ``residual``.
      w_init: the weight initializer of every dense layer.
      momentum: the running-statistics decay of the batch norms, in [0, 1)
        (batch_norm's default), or ``ann.hyper(name)``: one per model from
        ``hyper=``.
      dtype: the compute dtype of every dense and batch-norm layer (see
        :func:`annjax.dense`); None: the inputs promoted with the params'
        dtype, so bfloat16 X with float32 params computes in float32. Pass
        ``jnp.bfloat16`` for bfloat16 compute, or wrap the model in
        :func:`annjax.mixed_precision`.
      param_dtype: the dtype of every param (float32 by default).

    Examples:
      >>> import annjax as ann
      >>> model = ann.mlp([256, 256, 10])  # dense_0 relu_1 dense_2 relu_3 dense_4
      >>> bn = ann.mlp([32, 10], batch_norm=True, momentum=0.9)
      >>> swept = ann.mlp([32, 10], batch_norm=True, momentum=ann.hyper("m"))

    Raises:
      ValueError: for an empty ``sizes``, a width < 1, a dropout rate outside
        [0, 1] or a momentum outside [0, 1).
    """
    sizes = list(sizes)
    if not sizes:
        raise _checks.fail("mlp sizes", "at least one layer width", sizes)
    for s in sizes:
        _checks.integer("mlp sizes", s, minimum=1)
    if not isinstance(dropout, _hyperparams.Hyper):
        _checks.probability("mlp dropout", dropout)
    if not isinstance(momentum, _hyperparams.Hyper):
        momentum = _checks.number("mlp momentum", momentum)
        if not 0.0 <= momentum < 1.0:
            raise _checks.fail("mlp momentum", "a number in [0, 1)", momentum)
    precision = {"dtype": dtype, "param_dtype": param_dtype}
    act_name = activations.name_of(activation)
    hidden_init = w_init if w_init is not None else initializers.default_for(act_name)

    def block(width: int) -> list[Layer]:
        parts = [_layers.dense(width, w_init=hidden_init, **precision)]
        if batch_norm:
            parts.append(_batch_norm(momentum, **precision))
        parts.append(_layers.activation(activation))
        if isinstance(dropout, _hyperparams.Hyper) or dropout > 0:
            parts.append(_layers.dropout(dropout))
        return parts

    children: list[Layer] = []
    previous = None
    for width in sizes[:-1]:
        if residual and previous == width:
            children.append(_residual(serial(*block(width))))
        else:
            children.extend(block(width))
        previous = width
    children.append(
        _layers.dense(sizes[-1], output_activation, w_init=w_init, **precision)
    )
    return serial(*children)
