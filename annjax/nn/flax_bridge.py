"""``from_flax``: any ``flax.linen`` module as an annjax Layer.

Users bring their own flax models to :func:`annjax.fit` and to the profiler:
the module's ``params`` collection becomes the layer's params, every other
collection (``batch_stats``, …) its state, ``key`` feeds the ``dropout`` rng,
and ``train`` reaches the module through one documented convention (below).
"""

from __future__ import annotations

import inspect
import re

import jax
import jax.numpy as jnp

from annjax import _checks
from annjax._types import Key, Layer, Params, Shape, State, layer_factory

__all__ = ["from_flax"]

#: Keyword arguments of ``__call__`` that annjax drives from ``train``, and how.
TRAIN_ARGUMENTS = {
    "train": lambda train: train,
    "training": lambda train: train,
    "is_training": lambda train: train,
    "deterministic": lambda train: not train,
    "use_running_average": lambda train: not train,
}


def _snake(name: str) -> str:
    """Returns ``MyCNNBlock`` as ``my_cnn_block``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _train_argument(module, train_arg: str | bool | None) -> str | None:
    """Returns the name of the ``__call__`` argument that ``train`` drives."""
    if train_arg is not False and train_arg is not None:
        return _checks.one_of("from_flax train_arg", train_arg, TRAIN_ARGUMENTS)
    if train_arg is None:
        return None
    parameters = inspect.signature(module.__call__).parameters
    found = [name for name in TRAIN_ARGUMENTS if name in parameters]
    return found[0] if found else None


def _init_variables(module, rngs, input_shape: Shape, kwargs: dict):
    """Returns ``(variables, dummy)`` of ``module.init`` on a zero batch of one.

    The batch is float32, or int32 for a module that takes integer inputs
    only (``nn.Embed``: token ids), which refuses floats; if both fail, the
    float32 error is raised.
    """
    first = None
    for dtype in (jnp.float32, jnp.int32):
        dummy = jnp.zeros((1, *input_shape), dtype)
        try:
            return module.init(rngs, dummy, **kwargs), dummy
        except Exception as exc:  # flax raises many types; keep the first
            first = first if first is not None else exc
    raise first


@layer_factory
def from_flax(module, *, train_arg: str | bool | None = False, name: str | None = None):
    """Returns a Layer that runs a ``flax.linen`` module.

    The ``train`` convention: if ``module.__call__`` has an argument named
    ``train``, ``training`` or ``is_training``, annjax passes ``train``;
    if it has ``deterministic`` or ``use_running_average``, annjax passes
    ``not train``. ``train_arg`` names the argument explicitly (one of those
    names), or None to pass nothing. Modules that set ``deterministic`` as an
    attribute instead need no argument.

    In training, every non-``params`` collection is mutable and its update is
    returned as the new state; ``key`` becomes the ``dropout`` rng.

    The layer does not take ``weights=`` (see :class:`annjax.Layer`): a flax
    ``BatchNorm`` inside the module computes its statistics over the whole
    batch, including the weight-0 rows that pad ``fit``'s last batch. Use
    ``ann.batch_norm`` in an annjax model, or a batch size that divides the
    number of examples, where that matters.

    Args:
      module: a ``flax.linen.Module`` instance.
      train_arg: False (detect, the default), an argument name, or None.
      name: the kind ``serial`` uses for the child (default: the class name in
        snake case, e.g. ``my_cnn``).

    Raises:
      TypeError: if ``module`` is not a flax.linen Module.
      ValueError: in training, when the module needs randomness and ``key`` is
        None.

    Examples:
      >>> import flax.linen as nn
      >>> class MLP(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, x, train: bool = False):
      ...         x = nn.relu(nn.Dense(64)(x))
      ...         x = nn.Dropout(0.1, deterministic=not train)(x)
      ...         return nn.Dense(10)(x)
      >>> result = ann.fit(ann.from_flax(MLP()), (X, y), epochs=5)
    """
    import flax.linen as nn

    if not isinstance(module, nn.Module):
        raise TypeError(f"from_flax: expected a flax.linen Module, got {module!r}.")
    arg = _train_argument(module, train_arg)
    kind = name or _snake(type(module).__name__)

    def call_kwargs(train: bool) -> dict:
        return {} if arg is None else {arg: TRAIN_ARGUMENTS[arg](train)}

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        params_key, dropout_key = jax.random.split(key)
        rngs = {"params": params_key, "dropout": dropout_key}
        kwargs = call_kwargs(False)
        variables, dummy = _init_variables(module, rngs, input_shape, kwargs)
        variables = dict(variables)
        params = variables.pop("params", {})
        out = jax.eval_shape(
            lambda v: module.apply(v, dummy, **call_kwargs(False)),
            {"params": params, **variables},
        )
        return tuple(out.shape[1:]), params, variables

    def apply(params, state, x, *, key=None, train=False):
        variables = {"params": params, **state}
        kwargs = call_kwargs(train)
        rngs = {"dropout": key} if key is not None else {}
        try:
            if train and state:
                y, updates = module.apply(
                    variables, x, rngs=rngs, mutable=list(state), **kwargs
                )
                return y, {**state, **dict(updates)}
            return module.apply(variables, x, rngs=rngs, **kwargs), state
        except Exception as exc:  # flax reports a missing rng with its own error
            if key is None and "rng" in str(exc).lower():
                raise ValueError(
                    f"from_flax({type(module).__name__}): the module needs a "
                    "random key in training mode, got key=None. Pass "
                    "key=jax.random.key(...) (fit does this for you)."
                ) from exc
            raise

    return Layer(init, apply, kind)
