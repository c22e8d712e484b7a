"""Mixed precision for a whole model: low-precision compute, float32 variables.

:func:`mixed_precision` wraps any Layer, as Keras's ``mixed_bfloat16`` policy
does a model: the params stay float32 (so do their gradients, the optimizer's
state and every update), each ``apply`` casts the float params and the float
input to bfloat16, the layers compute in bfloat16, and the output comes back
as float32, so the loss and the metrics are float32. Batch-norm running
statistics stay float32 (annjax's batch norm computes its statistics in
float32 at least).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from annjax._types import Key, Layer, Params, Shape, State, layer_factory
from annjax._types import weights_kwarg as _weights_kwarg
from annjax.nn.layers import float_dtype

__all__ = ["mixed_precision"]


def _cast_floats(tree, dtype):
    """Returns ``tree`` with every floating array cast to ``dtype``."""

    def cast(a):
        a = jnp.asarray(a)
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree_util.tree_map(cast, tree)


@layer_factory
def mixed_precision(
    model: Layer, compute_dtype=jnp.bfloat16, output_dtype=jnp.float32
) -> Layer:
    r"""Returns ``model`` computing in ``compute_dtype`` with its params kept as stored.

    .. math:: y = \mathrm{cast}_{\text{out}}\big(f(\mathrm{cast}_c(x);\,
              \mathrm{cast}_c(\theta))\big)

    ``init`` is the model's (float32 params by default). ``apply`` casts the
    float params and a float input to ``compute_dtype`` (integer inputs are
    left to the layers, which cast them), runs the model, and casts a float
    output to ``output_dtype``. The cast is part of the differentiated
    function, so ``fit`` gets float32 gradients of float32 params, and the
    optimizer's state and the loss are float32: Keras's ``mixed_bfloat16``
    policy. The state (batch-norm running statistics) keeps its dtype.

    The wrapped layer keeps the model's ``kind``, ``activation``, params and
    state paths, so the profiler and ``serial`` read it as the model itself.

    Args:
      model: any Layer (``mlp``, ``resnet``, ``serial``…, ``from_flax``).
      compute_dtype: the dtype of the computation, bfloat16 by default
        (float16 works too, but without loss scaling its gradients may
        underflow).
      output_dtype: the dtype of the output (float32: the loss's).

    Returns:
      A Layer with the model's params and state.

    Raises:
      TypeError: for a ``model`` that is not a Layer.
      ValueError: for a dtype that is not a float dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import annjax as ann
      >>> model = ann.mixed_precision(ann.mlp([16, 2]))
      >>> _, params, state = model.init(jax.random.key(0), (4,))
      >>> params["dense_0"]["w"].dtype                 # stored in float32
      dtype('float32')
      >>> y, _ = model.apply(params, state, jnp.ones((3, 4)))
      >>> y.dtype                      # computed in bfloat16, returned float32
      dtype('float32')
    """
    if not isinstance(model, Layer):
        raise TypeError(
            f"mixed_precision: expected an annjax Layer (e.g. ann.mlp([64, 10])), "
            f"got {model!r}."
        )
    compute = float_dtype("mixed_precision compute_dtype", compute_dtype)
    output = float_dtype("mixed_precision output_dtype", output_dtype)
    if compute is None or output is None:
        raise ValueError(
            "mixed_precision: expected float dtypes, got None; pass e.g. "
            "compute_dtype=jnp.bfloat16."
        )

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        return model.init(key, input_shape)

    def apply(params, state, x, *, key=None, train=False, weights=None, **kwargs):
        y, new_state = model.apply(
            _cast_floats(params, compute),
            state,
            _cast_floats(x, compute),
            key=key,
            train=train,
            **_weights_kwarg(model, weights),
            **kwargs,  # probe= for a combinator, from the profiler
        )
        new_state = jax.tree_util.tree_map(
            lambda new, old: jnp.asarray(new).astype(jnp.asarray(old).dtype),
            new_state,
            state,
        )
        return _cast_floats(y, output), new_state

    return Layer(init, apply, model.kind, model.activation)
