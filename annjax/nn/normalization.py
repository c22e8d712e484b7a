"""Normalisation layers: batch normalisation with running statistics, layer norm.

The math sits in module-level functions (``_batch_stats``, ``_normalize``);
:func:`batch_norm` wires parameters and state around them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from annjax import _checks
from annjax import hyperparams as _hyperparams
from annjax._types import Array, Key, Layer, Params, Shape, State, layer_factory
from annjax.nn.layers import (
    at_least_float32,
    compute_dtype,
    float_dtype,
    input_shape_of,
    params_mismatch,
)

__all__ = ["batch_norm", "layer_norm"]


def _batch_stats(
    x: Array, axes: tuple[int, ...], weights: Array | None = None
) -> tuple[Array, Array]:
    r"""Returns the batch mean μ and the biased variance σ² over ``axes``.

    With per-example ``weights`` w (shape (batch,), axis 0 of x) they are the
    weighted statistics, so an example of weight 0 (fit's padding) never
    counts:

    .. math:: \mu = \frac{\sum_i w_i x_i}{\sum_i w_i}, \qquad
              \sigma^2 = \frac{\sum_i w_i (x_i - \mu)^2}{\sum_i w_i}
    """
    if weights is None:
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - jnp.expand_dims(mean, axes)), axis=axes)
        return mean, var
    w = jnp.asarray(weights, x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
    w = jnp.broadcast_to(w, x.shape)
    total = jnp.sum(w, axis=axes)
    total = jnp.where(total > 0, total, 1.0)  # all weights 0: statistics 0
    mean = jnp.sum(w * x, axis=axes) / total
    var = jnp.sum(w * jnp.square(x - jnp.expand_dims(mean, axes)), axis=axes) / total
    return mean, var


def _normalize(x, mean, var, scale, bias, eps: float) -> Array:
    r"""Returns γ (x − μ) / √(σ² + ε) + β, broadcasting over the last axis."""
    return (x - mean) * (scale * jax.lax.rsqrt(var + eps)) + bias


@layer_factory
def batch_norm(
    momentum: float = 0.99,
    eps: float = 1e-5,
    axis: int = -1,
    *,
    dtype=None,
    param_dtype=jnp.float32,
) -> Layer:
    r"""Returns a batch-normalisation layer with learnable scale γ and shift β.

    .. math::
       \hat{x} = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \varepsilon}}, \qquad
       y = \gamma \hat{x} + \beta

    In training, μ_B and σ²_B are the statistics of the batch (over every axis
    but the feature axis) and the running statistics are updated as
    ``running = momentum · running + (1 − momentum) · batch``; in evaluation the
    running ones are used. Works on (batch, features) and (batch, H, W, C).
    The conventions (momentum, biased variance) match ``flax.linen.BatchNorm``.

    ``apply`` takes per-example ``weights=`` (shape (batch,)): the batch
    statistics are then weighted, so the weight-0 rows ``fit`` pads the last
    batch with never move the running statistics (combinators forward
    ``weights``; ``fit`` passes its example weights in training). In training,
    a batch with one value per feature (a batch of 1 on (batch, features)) is
    a ValueError, as in PyTorch: its statistics would normalise every output
    to β. A weighted batch whose positive-weight examples give only one value
    per feature (``fit``'s last batch holding one real example) leaves the
    running statistics unchanged: its variance would be 0 and make every
    later prediction explode.

    Args:
      momentum: the decay of the running statistics, in [0, 1), or
        ``ann.hyper(name)``: a value per model from ``fit``'s /
        ``fit_many``'s ``hyper=`` (read in training only).
      eps: ε > 0, added to the variance.
      axis: the feature axis of the batch (−1: the last).
      dtype: the dtype of the output and of γ, β in the computation (the
        statistics are computed in float32 at least, as flax); None: float
        inputs promoted with ``param_dtype``, integer inputs cast to it.
      param_dtype: the dtype of γ and β (float32 by default, also under
        ``jax_enable_x64``). The running statistics are stored in float32 at
        least (``param_dtype`` promoted with float32), as flax's.

    Returns:
      A Layer with params ``{"scale", "bias"}`` and state ``{"mean", "var"}``,
      each of shape (features,).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import annjax as ann
      >>> bn = ann.batch_norm(momentum=0.9)
      >>> _, params, state = bn.init(jax.random.key(0), (2,))
      >>> x = jnp.array([[0.0, 10.0], [2.0, 30.0]])
      >>> y, state = bn.apply(params, state, x, train=True)    # updates state
      >>> y.round(2).tolist(), state["mean"].tolist()
      ([[-1.0, -1.0], [1.0, 1.0]], [0.10000000149011612, 2.0])
      >>> y, _ = bn.apply(params, state, x)                # running statistics

      A momentum per model of a sweep (``hyper=`` gives the values):

      >>> swept = ann.serial(ann.dense(4), ann.batch_norm(ann.hyper("m")))
    """
    momentum, eps, axis = _batch_norm_args(momentum, eps, axis)
    dtype = float_dtype("batch_norm dtype", dtype)
    param_dtype = float_dtype("batch_norm param_dtype", param_dtype)

    def feature_axis(ndim: int) -> int:
        return _feature_axis(axis, ndim)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        shape = input_shape_of("batch_norm", input_shape)
        n = shape[feature_axis(len(shape) + 1) - 1]
        params = {
            "scale": jnp.ones((n,), param_dtype),
            "bias": jnp.zeros((n,), param_dtype),
        }
        stats_dtype = at_least_float32(param_dtype)  # as flax
        state = {
            "mean": jnp.zeros((n,), stats_dtype),
            "var": jnp.ones((n,), stats_dtype),
        }
        return shape, params, state

    def apply(params, state, x, *, key=None, train=False, weights=None):
        del key
        x = jnp.asarray(x)
        fa = feature_axis(x.ndim)
        _check_params(params, state)
        # Move features last so the (features,) vectors broadcast.
        x_last = jnp.moveaxis(x, fa, -1)
        if x_last.shape[-1] != params["scale"].shape[0]:
            raise ValueError(
                f"batch_norm: expected {params['scale'].shape[0]} features on axis "
                f"{axis}, got x of shape {tuple(x.shape)}."
            )
        ct = compute_dtype(dtype, x_last, params["scale"])
        # statistics in float32 at least (flax's rule): bfloat16 sums drift
        x_stats = x_last.astype(at_least_float32(ct))
        if train:
            _check_batch(x_last)
            mean, var = _batch_stats(x_stats, tuple(range(x.ndim - 1)), weights)
            m = _hyperparams.value(momentum, _momentum)
            state = _running(state, mean, var, m, _enough(x_last, weights))
        else:
            mean, var = state["mean"], state["var"]
        sd = x_stats.dtype  # normalise in the statistics' dtype, output in ct
        scale, bias = params["scale"].astype(sd), params["bias"].astype(sd)
        y = _normalize(x_stats, mean.astype(sd), var.astype(sd), scale, bias, eps)
        return jnp.moveaxis(y.astype(ct), -1, fa), state

    return Layer(init, apply, "batch_norm")


def _momentum(momentum) -> float:
    """Returns batch_norm's momentum, checked: a number in [0, 1)."""
    momentum = _checks.number("batch_norm momentum", momentum)
    if not 0.0 <= momentum < 1.0:
        raise _checks.fail("batch_norm momentum", "a number in [0, 1)", momentum)
    return momentum


def _batch_norm_args(momentum, eps, axis) -> tuple[float, float, int]:
    """Returns batch_norm's momentum (a number or an ``ann.hyper``), ε and
    axis, checked."""
    if not isinstance(momentum, _hyperparams.Hyper):
        momentum = _momentum(momentum)
    eps = _checks.positive("batch_norm eps", eps)
    axis = _checks.integer("batch_norm axis", axis)
    if axis == 0:
        raise _checks.fail("batch_norm axis", "a feature axis (not 0, the batch)", 0)
    return momentum, eps, axis


def _feature_axis(axis: int, ndim: int) -> int:
    """Returns ``axis`` of a rank-``ndim`` batch as a positive index (never 0)."""
    # `axis` counts the axes of the batch, so axis 0 (the batch) is invalid.
    if not -ndim <= axis < ndim or axis % ndim == 0:
        raise _checks.fail(
            "batch_norm axis", f"a feature axis of a rank-{ndim} batch (not 0)", axis
        )
    return axis % ndim


def _running(
    state: State, mean: Array, var: Array, momentum: float, update=True
) -> State:
    """Returns ``momentum · running + (1 − momentum) · batch``, in the state's
    dtype, where ``update`` holds; the running statistics unchanged elsewhere."""
    return {
        k: jnp.where(
            update, momentum * state[k] + (1.0 - momentum) * v, state[k]
        ).astype(state[k].dtype)
        for k, v in (("mean", mean), ("var", var))
    }


def _enough(x_last: Array, weights: Array | None):
    """Returns whether the batch holds more than one real value per feature.

    The static batch-of-1 case is refused by :func:`_check_batch`; with
    ``weights`` the real examples are those of positive weight (``fit`` pads
    its last batch with weight-0 rows), known only at run time: a batch whose
    real examples give one value per feature (one example of a (batch,
    features) input) would make the running variance (1 − momentum)·0.
    """
    if weights is None:
        return True
    per_example = math.prod(x_last.shape[1:-1])
    return jnp.sum(jnp.asarray(weights) > 0) * per_example >= 2


def _check_params(params, state) -> None:
    """Raises ValueError unless params and state have the keys init makes."""
    for what, tree, keys in (
        ("params", params, "bias scale"),
        ("state", state, "mean var"),
    ):
        got = sorted(tree) if isinstance(tree, dict) else tree
        if got != keys.split():
            raise params_mismatch("batch_norm", f"{what} {keys.split()}", got)


def _check_batch(x_last: Array) -> None:
    """Raises ValueError for one value per feature in training (a batch of 1)."""
    if math.prod(x_last.shape[:-1]) == 1:
        raise ValueError(
            f"batch_norm: expected more than 1 value per feature in training, got "
            f"x of shape {tuple(x_last.shape)} (features last): the statistics "
            "of one example normalise every output to β. Use batch_size >= 2 "
            "(PyTorch raises the same), or apply with train=False."
        )


# ------------------------------------------------------------------- layer norm


@layer_factory
def layer_norm(
    eps: float = 1e-6,
    use_scale: bool = True,
    use_bias: bool = True,
    *,
    dtype=None,
    param_dtype=jnp.float32,
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
      dtype: the dtype of the output; None: float inputs promoted with
        ``param_dtype``, integer inputs cast to it. μ and σ² are computed in
        float32 at least, as ``flax.linen.LayerNorm``.
      param_dtype: the dtype of γ and β (float32 by default).

    Returns:
      A Layer with params ``{"scale", "bias"}`` of shape (features,) (those
      asked for) and no state.

    Raises:
      ValueError: for ``eps <= 0``; at init for an input without axes; when
        applied, for an input whose last axis is not the features.
      TypeError: for a ``dtype`` or ``param_dtype`` that is not a dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import annjax as ann
      >>> ln = ann.layer_norm()
      >>> _, params, state = ln.init(jax.random.key(0), (3,))
      >>> y, _ = ln.apply(params, state, jnp.array([[1.0, 2.0, 3.0]]))
      >>> y.round(3)
      Array([[-1.225,  0.   ,  1.225]], dtype=float32)
    """
    eps = _checks.positive("layer_norm eps", eps)
    dtype = float_dtype("layer_norm dtype", dtype)
    param_dtype = float_dtype("layer_norm param_dtype", param_dtype)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        shape = input_shape_of("layer_norm", input_shape)
        if not shape:
            raise _checks.fail("layer_norm input_shape", "at least one axis", shape)
        params = {}
        if use_scale:
            params["scale"] = jnp.ones((shape[-1],), param_dtype)
        if use_bias:
            params["bias"] = jnp.zeros((shape[-1],), param_dtype)
        return shape, params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x = jnp.asarray(x)
        n = next((p.shape[0] for p in params.values()), None)
        if x.ndim < 2 or (n is not None and x.shape[-1] != n):
            raise ValueError(
                f"layer_norm: expected a batch whose last axis has {n} features, "
                f"got x of shape {tuple(x.shape)}."
            )
        ct = compute_dtype(dtype, x, next(iter(params.values()), param_dtype))
        x_stats = x.astype(at_least_float32(ct))
        mean, var = _batch_stats(x_stats, (x.ndim - 1,))
        mean, var = mean[..., None], var[..., None]
        scale = params["scale"].astype(x_stats.dtype) if use_scale else 1.0
        bias = params["bias"].astype(x_stats.dtype) if use_bias else 0.0
        y = _normalize(x_stats, mean, var, scale, bias, eps)
        return y.astype(ct), state

    return Layer(init, apply, "layer_norm")
