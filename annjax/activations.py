"""The lecture's activation functions y = f(z), jit-compiled, with a registry.

Every function takes an array ``z`` (any shape) and returns f applied
elementwise (softmax: along ``axis``). Where ``jax.nn`` or ``jax.numpy`` has the
function, annjax wraps it rather than re-deriving it.

Examples:
  >>> import jax.numpy as jnp
  >>> import annjax as ann
  >>> ann.activations.get("relu")(jnp.array([-1.0, 2.0]))
  Array([0., 2.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from annjax import _checks

Array = jax.Array

__all__ = [
    "RELU_FAMILY",
    "SATURATING",
    "bipolar_step",
    "elu",
    "gelu",
    "get",
    "heaviside",
    "identity",
    "leaky_relu",
    "linear",
    "logistic",
    "name_of",
    "names",
    "relu",
    "sigmoid",
    "sign",
    "softmax",
    "softplus",
    "swish",
    "tanh",
]


@jax.jit
def heaviside(z: ArrayLike) -> Array:
    r"""Returns the Heaviside step, the threshold unit of the first perceptron.

    .. math:: f(z) = 1 \text{ if } z \ge 0 \text{ else } 0

    Its derivative is zero almost everywhere (and undefined at 0), so
    ``jax.grad`` returns 0 and gradient descent cannot train it. The perceptron
    rule trains it anyway because it never differentiates f: it moves the
    weights by the error itself, ΔW = α (y − ŷ) xᵀ (see
    :func:`annjax.perceptron.delta_rule`).
    """
    z = jnp.asarray(z)
    z = z.astype(jnp.result_type(z, jnp.float32))
    return jnp.heaviside(z, jnp.ones((), z.dtype))


@jax.jit
def sign(z: ArrayLike) -> Array:
    r"""Returns the sign function: −1 where z < 0, 0 where z = 0, +1 where z > 0.

    .. math:: \operatorname{sgn}(z) = \begin{cases} -1 & z < 0 \\ 0 & z = 0
              \\ 1 & z > 0 \end{cases}

    The lecture's definition (as ``jnp.sign``). For the bipolar threshold unit
    that never returns 0, use :func:`bipolar_step`.
    """
    z = jnp.asarray(z)
    return jnp.sign(z).astype(jnp.result_type(z, jnp.float32))


@jax.jit
def bipolar_step(z: ArrayLike) -> Array:
    r"""Returns the bipolar step: +1 where z ≥ 0, −1 elsewhere.

    .. math:: f(z) = 1 \text{ if } z \ge 0 \text{ else } -1

    The threshold unit of the bipolar (±1) perceptron: unlike :func:`sign` it
    never returns 0, so every output is a label. Like :func:`heaviside`, its
    derivative is zero almost everywhere; the perceptron rule trains it from
    the error, not from f'.
    """
    z = jnp.asarray(z)
    return jnp.where(z >= 0, 1, -1).astype(jnp.result_type(z, jnp.float32))


@jax.jit
def identity(z: ArrayLike) -> Array:
    r"""Returns z unchanged: f(z) = z, the output unit of a regression network."""
    return jnp.asarray(z)


@jax.jit
def linear(z: ArrayLike, a: ArrayLike = 1.0, b: ArrayLike = 0.0) -> Array:
    r"""Returns the affine activation f(z) = a·z + b (identity for a=1, b=0)."""
    return a * jnp.asarray(z) + b


@jax.jit
def sigmoid(z: ArrayLike) -> Array:
    r"""Returns the logistic function, which squashes z into (0, 1).

    .. math:: f(z) = \frac{1}{1 + e^{-z}}, \qquad f'(z) = f(z)\,(1 - f(z)) \le 1/4

    The bound f' ≤ 1/4 is why deep sigmoid stacks suffer vanishing gradients.
    """
    return jax.nn.sigmoid(z)


logistic = sigmoid


@jax.jit
def tanh(z: ArrayLike) -> Array:
    r"""Returns the hyperbolic tangent, in (−1, 1): f'(z) = 1 − f(z)²."""
    return jnp.tanh(z)


@jax.jit
def relu(z: ArrayLike) -> Array:
    r"""Returns the rectified linear unit f(z) = max(0, z); f' is 1 for z > 0."""
    return jax.nn.relu(z)


@jax.jit
def leaky_relu(z: ArrayLike, alpha: ArrayLike = 0.01) -> Array:
    r"""Returns the leaky ReLU, which keeps a small slope for negative inputs.

    .. math:: f(z) = z \text{ if } z \ge 0 \text{ else } \alpha z

    With ``alpha = 0`` it is :func:`relu`; the slope α keeps units from dying.
    """
    return jax.nn.leaky_relu(z, negative_slope=alpha)


@jax.jit(static_argnames="axis")
def softmax(z: ArrayLike, axis: int = -1) -> Array:
    r"""Returns the softmax along ``axis``: positive values that sum to 1.

    .. math:: f(z)_i = \frac{e^{z_i}}{\sum_j e^{z_j}}

    Computed after subtracting max(z), so large logits do not overflow.
    """
    return jax.nn.softmax(z, axis=axis)


@jax.jit
def elu(z: ArrayLike, alpha: ArrayLike = 1.0) -> Array:
    r"""Returns the ELU: z for z > 0, α (eᶻ − 1) otherwise."""
    return jax.nn.elu(z, alpha=alpha)


@jax.jit
def gelu(z: ArrayLike) -> Array:
    r"""Returns the GELU, z·Φ(z) (tanh approximation, as in ``jax.nn.gelu``)."""
    return jax.nn.gelu(z)


@jax.jit
def softplus(z: ArrayLike) -> Array:
    r"""Returns the softplus log(1 + eᶻ), a smooth ReLU whose derivative is σ(z)."""
    return jax.nn.softplus(z)


@jax.jit
def swish(z: ArrayLike) -> Array:
    r"""Returns the swish (SiLU) z·σ(z)."""
    return jax.nn.silu(z)


_REGISTRY: dict[str, Callable[..., Array]] = {
    "heaviside": heaviside,
    "step": heaviside,
    "sign": sign,
    "bipolar_step": bipolar_step,
    "identity": identity,
    "linear": linear,
    "sigmoid": sigmoid,
    "logistic": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "softmax": softmax,
    "elu": elu,
    "gelu": gelu,
    "softplus": softplus,
    "swish": swish,
    "silu": swish,
}

#: Activations whose units can die (zero output for every input).
RELU_FAMILY = frozenset({"relu", "leaky_relu", "elu", "gelu", "swish", "silu"})
#: Activations whose derivative vanishes at both ends of their range.
SATURATING = frozenset({"sigmoid", "logistic", "tanh"})


def names() -> tuple[str, ...]:
    """Returns the names :func:`get` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def get(name: str | Callable[..., Array]) -> Callable[..., Array]:
    """Returns the activation called ``name`` (a callable passes through).

    Raises:
      ValueError: for an unknown name; the message lists the valid ones.
      TypeError: for anything that is neither a string nor a callable.
    """
    return _checks.lookup("activation", _REGISTRY, name)


def name_of(activation: str | Callable[..., Array] | None) -> str | None:
    """Returns the canonical registry name of an activation, or its __name__.

    ``"logistic"`` and :func:`sigmoid` both give ``"sigmoid"``; a user's own
    function gives its ``__name__``; None gives None.
    """
    if activation is None:
        return None
    fn = get(activation)
    for key, value in _REGISTRY.items():
        if value is fn and key not in ("step", "logistic", "silu"):
            return key
    return getattr(fn, "__name__", "activation")
