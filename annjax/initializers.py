"""Weight initializers for weights stored ``(out, in)``, as the lecture's W.

``jax.nn.initializers`` assumes ``(in, out)`` kernels (``in_axis=-2``,
``out_axis=-1``). annjax stores W as (m outputs × n inputs), so every
initializer here is the ``jax.nn.initializers`` one with ``in_axis=-1`` and
``out_axis=-2``; with the defaults, Xavier and He would silently use the
wrong fan and change the variance.

Each initializer is a function ``init(key, shape, dtype=float32) -> Array``.

Examples:
  >>> import jax
  >>> import annjax as ann
  >>> W = ann.initializers.get("he_normal")(jax.random.key(0), (256, 784))
  >>> W.shape
  (256, 784)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from annjax import _checks
from annjax.activations import RELU_FAMILY

Initializer = Callable[..., jax.Array]

__all__ = [
    "default_for",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecture_uniform",
    "lecun_normal",
    "lecun_uniform",
    "names",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

_AXES = {"in_axis": -1, "out_axis": -2}

#: Xavier/Glorot uniform: U(−a, a), a = √(6 / (fan_in + fan_out)).
xavier_uniform: Initializer = jax.nn.initializers.glorot_uniform(**_AXES)
#: Xavier/Glorot normal: truncated N(0, 2 / (fan_in + fan_out)).
xavier_normal: Initializer = jax.nn.initializers.glorot_normal(**_AXES)
#: He/Kaiming uniform: U(−a, a), a = √(6 / fan_in); Var = 2 / fan_in (for ReLU).
he_uniform: Initializer = jax.nn.initializers.he_uniform(**_AXES)
#: He/Kaiming normal: truncated N(0, 2 / fan_in) (for ReLU).
he_normal: Initializer = jax.nn.initializers.he_normal(**_AXES)
#: LeCun normal: truncated N(0, 1 / fan_in) (for SELU and tanh).
lecun_normal: Initializer = jax.nn.initializers.lecun_normal(**_AXES)
#: LeCun uniform: U(−a, a), a = √(3 / fan_in); Var = 1 / fan_in.
lecun_uniform: Initializer = jax.nn.initializers.lecun_uniform(**_AXES)
#: All zeros (biases; never for the weights of a hidden layer, which stay symmetric).
zeros: Initializer = jax.nn.initializers.zeros

glorot_uniform = xavier_uniform
glorot_normal = xavier_normal


def uniform(low: float = -0.5, high: float = 0.5) -> Initializer:
    r"""Returns an initializer drawing each weight from U(low, high).

    .. math:: w_{ij} \sim \mathcal{U}(\text{low}, \text{high})

    ``jax.nn.initializers.uniform(scale)`` only draws from [0, scale), so the
    lecture's symmetric range is written here.

    Raises:
      ValueError: if ``low >= high``.
    """
    low, high = _checks.number("low", low), _checks.number("high", high)
    if not low < high:
        raise _checks.fail("uniform", "low < high", (low, high))

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, minval=low, maxval=high)

    return init


#: The lecture's classic initialisation, U(−0.5, 0.5), whatever the layer size.
lecture_uniform: Initializer = uniform(-0.5, 0.5)

_REGISTRY: dict[str, Initializer] = {
    "xavier_uniform": xavier_uniform,
    "glorot_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "glorot_normal": xavier_normal,
    "he_uniform": he_uniform,
    "kaiming_uniform": he_uniform,
    "he_normal": he_normal,
    "kaiming_normal": he_normal,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "zeros": zeros,
    "lecture_uniform": lecture_uniform,
    "uniform": lecture_uniform,
}


def names() -> tuple[str, ...]:
    """Returns the names :func:`get` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def get(name: str | Initializer) -> Initializer:
    """Returns the initializer called ``name`` (a callable passes through).

    Raises:
      ValueError: for an unknown name; the message lists the valid ones.
    """
    return _checks.lookup("initializer", _REGISTRY, name)


def default_for(activation: str | None) -> Initializer:
    """Returns the lecture's remedy: He for the ReLU family, Xavier otherwise."""
    return he_normal if activation in RELU_FAMILY else xavier_uniform
