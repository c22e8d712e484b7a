"""What a model computes, read from its trace: the primitives of its forward pass.

The training engine asks it once per model and input shape (cached), e.g.
whether a model convolves, which decides how the epoch is compiled on a CPU
(see :func:`annjax.training.record.calls_of`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from annjax._types import Layer, Shape

__all__ = ["primitives"]


@functools.lru_cache(maxsize=64)
def primitives(model: Layer, input_shape: Shape) -> frozenset[str]:
    """Returns the names of the primitives in the model's training forward pass.

    Init and apply are traced (not compiled) on an abstract batch of two
    examples of ``input_shape``; nested jaxprs (jit, scan, cond, custom
    derivatives) are searched too. A model that cannot be traced so gives
    the empty set: the compiled epoch reports its error properly.
    """

    def forward(key, x):
        _, params, state = model.init(key, input_shape)
        return model.apply(params, state, x, key=key, train=True)[0]

    x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
    try:
        jaxpr = jax.make_jaxpr(forward)(jax.random.key(0), x).jaxpr
    except Exception:  # the compiled epoch reports the error properly
        return frozenset()
    return frozenset(_names(jaxpr))


def _names(jaxpr):
    """Yields the primitive names of ``jaxpr`` and of every jaxpr nested in it."""
    for eqn in jaxpr.eqns:
        yield eqn.primitive.name
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                if hasattr(sub, "eqns"):
                    yield from _names(sub)
