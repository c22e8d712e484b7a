"""The lecture's layers as ``Layer(init, apply)`` pairs of pure functions.

Each factory returns a :class:`annjax.Layer`. ``init(key, input_shape)`` takes
the shape of ONE example and returns ``(output_shape, params, state)``;
``apply(params, state, x, *, key=None, train=False)`` takes a batch and returns
``(y, state)``. The math sits in small module-level functions (``_dense``,
``_batch_stats``, ``_normalize``, ``_dropout``); the factories only wire
shapes, parameters and state around them.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> import annjax as ann
  >>> layer = ann.dense(3, activation="relu")
  >>> shape, params, state = layer.init(jax.random.key(0), (4,))
  >>> params["w"].shape, shape      # W stored (out, in), as the lecture's W
  ((3, 4), (3,))
  >>> y, state = layer.apply(params, state, jnp.ones((2, 4)))
  >>> y.shape
  (2, 3)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from annjax import _checks, activations, initializers
from annjax._types import Array, Key, Layer, Params, Shape, State

__all__ = ["activation", "batch_norm", "dense", "dropout", "flatten"]


def _input_shape(name: str, input_shape) -> Shape:
    """Returns ``input_shape`` as a tuple of positive ints, or raises ValueError."""
    try:
        shape = tuple(int(d) for d in input_shape)
    except TypeError as exc:
        raise TypeError(
            f"{name}: expected input_shape as a tuple of ints (one example, no "
            f"batch axis), got {input_shape!r}."
        ) from exc
    if any(d <= 0 for d in shape):
        raise _checks.fail(f"{name} input_shape", "positive dimensions", shape)
    return shape


# ----------------------------------------------------------------------------- dense


def _dense(w: Array, b: Array | None, x: Array) -> Array:
    r"""Returns z = x Wᵀ + b for a batch x (rows are examples), i.e. Wx + b per row."""
    z = x @ w.T
    return z if b is None else z + b


def dense(
    units: int,
    activation: str | Callable[..., Array] | None = None,
    w_init: str | Callable[..., Array] | None = None,
    use_bias: bool = True,
    b_init: str | Callable[..., Array] = "zeros",
) -> Layer:
    r"""Returns a fully connected layer y = f(Wx + b), W of shape (units, n_in).

    .. math:: y = f(W x + b), \qquad W \in \mathbb{R}^{m \times n},\; b \in \mathbb{R}^m

    On a batch (rows are examples) this is ``f(x @ W.T + b)``; an input of more
    than one axis is transformed along its last axis.

    Args:
      units: m, the number of outputs.
      activation: a name from :func:`annjax.activations.get`, a callable, or
        None for the identity.
      w_init: the weight initializer (name or function). Default: He normal for
        the ReLU family and Xavier/Glorot uniform otherwise, the lecture's
        remedy for vanishing and exploding gradients.
      use_bias: whether to add b.
      b_init: the bias initializer.

    Returns:
      A Layer with params ``{"w": (units, n_in), "b": (units,)}`` and no state.

    Raises:
      ValueError: for ``units < 1`` or an unknown activation / initializer name,
        and, when applied, for an input whose last axis is not n_in.
    """
    units = _checks.integer("dense units", units, minimum=1)
    f = activations.get(activation) if activation is not None else None
    act_name = activations.name_of(activation)
    w_init_fn = (
        initializers.get(w_init)
        if w_init is not None
        else initializers.default_for(act_name)
    )
    b_init_fn = initializers.get(b_init)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        shape = _input_shape("dense", input_shape)
        if not shape:
            raise _checks.fail("dense input_shape", "at least one axis", shape)
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init_fn(w_key, (units, shape[-1]), jnp.float32)}
        if use_bias:
            params["b"] = b_init_fn(b_key, (units,), jnp.float32)
        return (*shape[:-1], units), params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x = jnp.asarray(x)
        n_in = params["w"].shape[1]
        if x.ndim < 2 or x.shape[-1] != n_in:
            raise ValueError(
                f"dense: expected inputs whose last axis has {n_in} features "
                f"(W has shape {tuple(params['w'].shape)}), got x of shape "
                f"{tuple(x.shape)}."
            )
        z = _dense(params["w"], params.get("b"), x)
        return (z if f is None else f(z)), state

    return Layer(init, apply, "dense", act_name)


# ----------------------------------------------------------------------- activation


def activation(fn: str | Callable[..., Array], **kwargs) -> Layer:
    """Returns a parameter-free layer applying an activation elementwise.

    Args:
      fn: a name from :func:`annjax.activations.get` or a callable.
      **kwargs: fixed keyword arguments, e.g. ``activation("leaky_relu", alpha=0.1)``.

    The layer's kind is the activation's name, so ``serial`` names it
    ``relu_1``, ``sigmoid_3``, and the profiler knows which units can die or
    saturate.
    """
    f = activations.get(fn)
    if kwargs:
        f = functools.partial(f, **kwargs)
    name = activations.name_of(fn)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        return _input_shape(name, input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        return f(x), state

    return Layer(init, apply, name, name)


def flatten() -> Layer:
    """Returns a layer reshaping each example to one axis: (batch, …) → (batch, n)."""

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        return (math.prod(_input_shape("flatten", input_shape)),), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        return jnp.reshape(x, (x.shape[0], -1)), state

    return Layer(init, apply, "flatten")


# -------------------------------------------------------------------------- dropout


def _dropout(key: Key, x: Array, rate: float) -> Array:
    r"""Returns inverted dropout of x: each unit dropped with probability ``rate``.

    .. math:: y = \frac{m \odot x}{1 - p}, \quad m_i \sim \text{Bernoulli}(1 - p)

    Survivors are scaled by 1/(1 − p) so that E[y] = x and evaluation needs no
    rescaling.
    """
    if rate == 1.0:
        return jnp.zeros_like(x)  # all dropped; 1/(1 - p) would be inf and 0·inf NaN
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def dropout(rate: float) -> Layer:
    r"""Returns an inverted-dropout layer; ``rate`` is the probability of DROPPING.

    In training (``train=True``) each unit is zeroed with probability ``rate``
    and the survivors are scaled by 1/(1 − rate), so the expected activation is
    unchanged; in evaluation the layer is the identity. ``rate=0`` is the
    identity; ``rate=1`` drops everything and returns zeros (never NaN).

    Args:
      rate: the probability of dropping a unit, in [0, 1] (not the keep
        probability, unlike stax).

    Raises:
      ValueError: if ``rate`` is outside [0, 1]; when applied with
        ``train=True`` and ``rate > 0`` but no ``key``.

    Examples:
      >>> layer = ann.dropout(0.5)
      >>> _, p, s = layer.init(jax.random.key(0), (8,))
      >>> y, _ = layer.apply(p, s, x, key=jax.random.key(1), train=True)
    """
    rate = _checks.probability("dropout rate", rate)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        return _input_shape("dropout", input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params
        if not train or rate == 0.0:
            return x, state
        if key is None:
            raise ValueError(
                "dropout: expected a random key in training mode, got key=None. "
                "Pass key=jax.random.key(...) to apply (fit does this for you)."
            )
        return _dropout(key, x, rate), state

    return Layer(init, apply, "dropout")


# ----------------------------------------------------------------------- batch norm


def _batch_stats(x: Array, axes: tuple[int, ...]) -> tuple[Array, Array]:
    r"""Returns the batch mean μ and the biased variance σ² over ``axes``."""
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - jnp.expand_dims(mean, axes)), axis=axes)
    return mean, var


def _normalize(x, mean, var, scale, bias, eps: float) -> Array:
    r"""Returns γ (x − μ) / √(σ² + ε) + β, broadcasting over the last axis."""
    return (x - mean) * (scale * jax.lax.rsqrt(var + eps)) + bias


def batch_norm(momentum: float = 0.99, eps: float = 1e-5, axis: int = -1) -> Layer:
    r"""Returns a batch-normalisation layer with learnable scale γ and shift β.

    .. math::
       \hat{x} = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \varepsilon}}, \qquad
       y = \gamma \hat{x} + \beta

    In training, μ_B and σ²_B are the statistics of the batch (over every axis
    but the feature axis) and the running statistics are updated as
    ``running = momentum · running + (1 − momentum) · batch``; in evaluation the
    running ones are used. Works on (batch, features) and (batch, H, W, C).
    The conventions (momentum, biased variance) match ``flax.linen.BatchNorm``.

    Args:
      momentum: the decay of the running statistics, in [0, 1).
      eps: ε > 0, added to the variance.
      axis: the feature axis of the batch (−1: the last).

    Returns:
      A Layer with params ``{"scale", "bias"}`` and state ``{"mean", "var"}``,
      each of shape (features,).

    Examples:
      >>> bn = ann.batch_norm()
      >>> _, params, state = bn.init(jax.random.key(0), (16,))
      >>> y, state = bn.apply(params, state, x, train=True)    # updates state
      >>> y, _ = bn.apply(params, state, x_test)                # running stats
    """
    momentum = _checks.number("batch_norm momentum", momentum)
    if not 0.0 <= momentum < 1.0:
        raise _checks.fail("batch_norm momentum", "a number in [0, 1)", momentum)
    eps = _checks.positive("batch_norm eps", eps)
    axis = _checks.integer("batch_norm axis", axis)
    if axis == 0:
        raise _checks.fail("batch_norm axis", "a feature axis (not 0, the batch)", 0)

    def feature_axis(ndim: int) -> int:
        # `axis` counts the axes of the batch, so axis 0 (the batch) is invalid.
        if not -ndim <= axis < ndim or axis % ndim == 0:
            raise _checks.fail(
                "batch_norm axis",
                f"a feature axis of a rank-{ndim} batch (not 0)",
                axis,
            )
        return axis % ndim

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        shape = _input_shape("batch_norm", input_shape)
        n = shape[feature_axis(len(shape) + 1) - 1]
        params = {"scale": jnp.ones((n,)), "bias": jnp.zeros((n,))}
        state = {"mean": jnp.zeros((n,)), "var": jnp.ones((n,))}
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False):
        del key
        fa = feature_axis(x.ndim)
        # Move features last so the (features,) vectors broadcast.
        x_last = jnp.moveaxis(x, fa, -1)
        if x_last.shape[-1] != params["scale"].shape[0]:
            raise ValueError(
                f"batch_norm: expected {params['scale'].shape[0]} features on axis "
                f"{axis}, got x of shape {tuple(x.shape)}."
            )
        if train:
            mean, var = _batch_stats(x_last, tuple(range(x.ndim - 1)))
            state = {
                "mean": momentum * state["mean"] + (1.0 - momentum) * mean,
                "var": momentum * state["var"] + (1.0 - momentum) * var,
            }
        else:
            mean, var = state["mean"], state["var"]
        y = _normalize(x_last, mean, var, params["scale"], params["bias"], eps)
        return jnp.moveaxis(y, -1, fa), state

    return Layer(init, apply, "batch_norm")
