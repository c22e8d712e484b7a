"""The lecture's layers as ``Layer(init, apply)`` pairs of pure functions.

Each factory returns a :class:`annjax.Layer`. ``init(key, input_shape)`` takes
the shape of ONE example and returns ``(output_shape, params, state)``;
``apply(params, state, x, *, key=None, train=False)`` takes a batch and returns
``(y, state)``. The math sits in small module-level functions (``_dense``,
``_dropout``); the factories only wire
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
from annjax import hyperparams as _hyperparams
from annjax._types import Array, Key, Layer, Params, Shape, State, layer_factory

__all__ = ["activation", "dense", "dropout", "flatten", "input_shape_of"]


def input_shape_of(name: str, input_shape) -> Shape:
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


def float_dtype(name: str, value) -> jnp.dtype | None:
    """Returns ``value`` as a floating NumPy dtype (None passes), or raises."""
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError as exc:
        raise TypeError(f"{name}: expected a float dtype, got {value!r}.") from exc
    if not jnp.issubdtype(dtype, jnp.floating):
        raise _checks.fail(name, "a float dtype (float32, bfloat16, float64)", value)
    return dtype


def compute_dtype(dtype, x: Array, param) -> jnp.dtype:
    """Returns the dtype a layer computes in, flax's rule.

    ``dtype`` if given; else float inputs promoted with the params' dtype
    (bfloat16 x with float32 params computes in float32, as
    ``jnp.promote_types`` and flax do), and integer inputs take the params'
    dtype. ``param`` is a param array or a dtype.
    """
    if dtype is not None:
        return dtype
    param_dtype = jnp.dtype(getattr(param, "dtype", param))
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.promote_types(x.dtype, param_dtype)
    return param_dtype


def at_least_float32(dtype) -> jnp.dtype:
    """Returns ``dtype`` if it has 32 bits or more, else float32 (statistics)."""
    dtype = jnp.dtype(dtype)
    return dtype if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)


def float_input(x) -> Array:
    """Returns ``x`` as an array, integer and boolean inputs cast to float32.

    The rule of the layers without params (pooling): float inputs keep their
    dtype (bfloat16 stays bfloat16), integer images (uint8 pixels) are
    computed in float32, as a layer with float32 params would.
    """
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.float32)


def params_mismatch(name: str, expected: str, got) -> ValueError:
    """Returns the ValueError for params that another model's init made."""
    return ValueError(
        f"{name}: expected {expected}, got {got}. These params were not "
        "made by this layer's init (another model's?); pass the params that "
        "this model's init or fit returned."
    )


# ----------------------------------------------------------------------------- dense


def _dense(w: Array, b: Array | None, x: Array) -> Array:
    r"""Returns z = x Wᵀ + b for a batch x (rows are examples), i.e. Wx + b per row."""
    z = x @ w.T
    return z if b is None else z + b


@layer_factory
def dense(
    units: int,
    activation: str | Callable[..., Array] | None = None,
    w_init: str | Callable[..., Array] | None = None,
    use_bias: bool = True,
    b_init: str | Callable[..., Array] = "zeros",
    *,
    dtype=None,
    param_dtype=jnp.float32,
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
      dtype: the dtype of the computation (x and W are cast to it), e.g.
        ``jnp.bfloat16`` for bfloat16 compute with float32 params; None (the
        default): float inputs promoted with the params' dtype, integer
        inputs cast to the params' dtype.
      param_dtype: the dtype of W and b, float32 by default (also under
        ``jax_enable_x64``; ``fit`` makes float32 params float64 when X is
        float64).

    Returns:
      A Layer with params ``{"w": (units, n_in), "b": (units,)}`` and no state.

    Raises:
      ValueError: for ``units < 1`` or an unknown activation / initializer name,
        and, when applied, for an input whose last axis is not n_in or params
        of another shape than init makes (another model's).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import annjax as ann
      >>> fast = ann.dense(256, "relu", dtype=jnp.bfloat16)  # float32 params
      >>> _, params, state = fast.init(jax.random.key(0), (4,))
      >>> params["w"].dtype, fast.apply(params, state, jnp.ones((2, 4)))[0].dtype
      (dtype('float32'), dtype(bfloat16))
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
    dtype = float_dtype("dense dtype", dtype)
    param_dtype = float_dtype("dense param_dtype", param_dtype)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        shape = input_shape_of("dense", input_shape)
        if not shape:
            raise _checks.fail("dense input_shape", "at least one axis", shape)
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init_fn(w_key, (units, shape[-1]), param_dtype)}
        if use_bias:
            params["b"] = b_init_fn(b_key, (units,), param_dtype)
        return (*shape[:-1], units), params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x = jnp.asarray(x)
        _check_dense_params(params, units, use_bias)
        n_in = params["w"].shape[1]
        if x.ndim < 2 or x.shape[-1] != n_in:
            raise ValueError(
                f"dense: expected inputs whose last axis has {n_in} features "
                f"(W has shape {tuple(params['w'].shape)}), got x of shape "
                f"{tuple(x.shape)}."
            )
        ct = compute_dtype(dtype, x, params["w"])
        b = params.get("b")
        b = None if b is None else b.astype(ct)
        z = _dense(params["w"].astype(ct), b, x.astype(ct))
        return (z if f is None else f(z)), state

    return Layer(init, apply, "dense", act_name)


def _check_dense_params(params, units: int, use_bias: bool) -> None:
    """Raises ValueError unless ``params`` have the keys and widths init makes."""
    keys = sorted(params) if isinstance(params, dict) else params
    if keys != (["b", "w"] if use_bias else ["w"]):
        expected = "params {'w', 'b'}" if use_bias else "params {'w'} (no bias)"
        raise params_mismatch("dense", expected, keys)
    w_shape = tuple(params["w"].shape)
    if w_shape[0] != units:
        raise params_mismatch("dense", f"w of shape ({units}, n_in)", w_shape)
    if use_bias and tuple(params["b"].shape) != (units,):
        raise params_mismatch("dense", f"b of shape ({units},)", params["b"].shape)


# ----------------------------------------------------------------------- activation


@layer_factory
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
        return input_shape_of(name, input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        return f(x), state

    return Layer(init, apply, name, name)


@layer_factory
def flatten() -> Layer:
    """Returns a layer reshaping each example to one axis: (batch, …) → (batch, n)."""

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        return (math.prod(input_shape_of("flatten", input_shape)),), {}, {}

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
    if isinstance(rate, float) and rate == 1.0:
        return jnp.zeros_like(x)  # all dropped; 1/(1 - p) would be inf and 0·inf NaN
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    if not isinstance(rate, float):  # a hyper-parameter's traced value: 1 is safe
        rate = jnp.where(rate < 1.0, rate, 0.0)  # (keep is all False then)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


@layer_factory
def dropout(rate: float) -> Layer:
    r"""Returns an inverted-dropout layer; ``rate`` is the probability of DROPPING.

    In training (``train=True``) each unit is zeroed with probability ``rate``
    and the survivors are scaled by 1/(1 − rate), so the expected activation is
    unchanged; in evaluation the layer is the identity. ``rate=0`` is the
    identity; ``rate=1`` drops everything and returns zeros (never NaN).

    Args:
      rate: the probability of dropping a unit, in [0, 1] (not the keep
        probability, unlike stax), or ``ann.hyper(name)``: a value per model
        from ``fit``'s / ``fit_many``'s ``hyper=``.

    Raises:
      ValueError: if ``rate`` is outside [0, 1]; when applied with
        ``train=True`` and ``rate > 0`` but no ``key``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import annjax as ann
      >>> layer = ann.dropout(0.5)
      >>> _, p, s = layer.init(jax.random.key(0), (8,))
      >>> x = jnp.ones((1000, 8))
      >>> y, _ = layer.apply(p, s, x, key=jax.random.key(1), train=True)
      >>> sorted(set(y.ravel().tolist()))        # dropped, or scaled by 1/(1 − p)
      [0.0, 2.0]
      >>> bool((layer.apply(p, s, x)[0] == x).all())   # evaluation: identity
      True
    """

    def check(value):
        return _checks.probability("dropout rate", value)

    if not isinstance(rate, _hyperparams.Hyper):
        rate = check(rate)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        return input_shape_of("dropout", input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params
        if not train:
            return x, state
        p = _hyperparams.value(rate, check)
        if isinstance(p, float) and p == 0.0:
            return x, state
        if key is None:
            raise ValueError(
                "dropout: expected a random key in training mode, got key=None. "
                "Pass key=jax.random.key(...) to apply (fit does this for you)."
            )
        return _dropout(key, x, p), state

    return Layer(init, apply, "dropout")
