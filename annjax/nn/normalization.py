"""Normalisation layers: batch normalisation with running statistics, layer norm.

The math sits in module-level functions (``_batch_stats``, ``_normalize``);
:func:`batch_norm` wires parameters and state around them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from annjax import _checks
from annjax._types import Array, Key, Layer, Params, Shape, State
from annjax.nn.layers import input_shape_of

__all__ = ["batch_norm", "layer_norm"]


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
        shape = input_shape_of("batch_norm", input_shape)
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

    return Layer(init, apply, "batch_norm", None, ("batch_norm", momentum, eps, axis))


# ------------------------------------------------------------------- layer norm


def layer_norm(
    eps: float = 1e-6, use_scale: bool = True, use_bias: bool = True
) -> Layer:
    r"""Returns a layer-normalisation layer: each example normalised on its own.

    .. math::
       \hat{x} = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad
       y = \gamma \hat{x} + \beta

    μ and σ² (biased) are taken over the LAST axis of each example (each
    position's channels, for an image), so training and evaluation compute the
    same thing and there is no state: no running statistics to lag behind.
    The conventions (ε = 1e-6, the last axis) are ``flax.linen.LayerNorm``'s.

    Args:
      eps: ε > 0, added to the variance.
      use_scale: whether to learn γ (else 1).
      use_bias: whether to learn β (else 0).

    Returns:
      A Layer with params ``{"scale", "bias"}`` of shape (features,) (those
      asked for) and no state.

    Raises:
      ValueError: for ``eps <= 0``; at init for an input without axes; when
        applied, for an input whose last axis is not the features.
    """
    eps = _checks.positive("layer_norm eps", eps)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        shape = input_shape_of("layer_norm", input_shape)
        if not shape:
            raise _checks.fail("layer_norm input_shape", "at least one axis", shape)
        params = {}
        if use_scale:
            params["scale"] = jnp.ones((shape[-1],))
        if use_bias:
            params["bias"] = jnp.zeros((shape[-1],))
        return shape, params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        n = next((p.shape[0] for p in params.values()), None)
        if x.ndim < 2 or (n is not None and x.shape[-1] != n):
            raise ValueError(
                f"layer_norm: expected a batch whose last axis has {n} features, "
                f"got x of shape {tuple(x.shape)}."
            )
        mean, var = _batch_stats(x, (x.ndim - 1,))
        mean, var = mean[..., None], var[..., None]
        scale = params.get("scale", 1.0)
        bias = params.get("bias", 0.0)
        return _normalize(x, mean, var, scale, bias, eps), state

    return Layer(
        init, apply, "layer_norm", None, ("layer_norm", eps, use_scale, use_bias)
    )
