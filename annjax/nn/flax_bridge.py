"""``from_flax``: any ``flax.linen`` or ``flax.nnx`` module as an annjax Layer.

Users bring their own flax models to :func:`annjax.fit` and to the profiler:
the module's params become the layer's params, every other collection or
variable (``batch_stats``, …) its state, ``key`` feeds the module's random
streams (``dropout`` and any others named), and ``train`` reaches the module
through one documented convention (below). With ``probe=`` (the profiler's
protocol, see :mod:`annjax.nn.combinators`) the layer records a Tap for every
activation the module applies (:mod:`annjax.nn._activation_taps`).
"""

from __future__ import annotations

import inspect
import re
import warnings

import jax
import jax.numpy as jnp

from annjax import _checks
from annjax._types import Key, Layer, Params, Shape, State, layer_factory
from annjax.nn import _activation_taps, _flax_nnx
from annjax.nn import model_summary as _summary

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


def _on_a_batch_of_one(run, input_shape: Shape):
    """Returns ``run(dummy)`` on a zero batch of one, float32 or else int32.

    int32 serves a module that takes integer inputs only (``nn.Embed``: token
    ids), which refuses floats; if both fail, the float32 error is raised.
    """
    first = None
    for dtype in (jnp.float32, jnp.int32):
        try:
            return run(jnp.zeros((1, *input_shape), dtype))
        except Exception as exc:  # flax raises many types; keep the first
            first = first if first is not None else exc
    raise first


def _streams(rngs, module, nnx: bool) -> tuple[str, ...]:
    """Returns the names of the random streams the step's key feeds."""
    own = _flax_nnx.stream_names(module) if nnx else None
    if rngs is None:
        return own if nnx else ("dropout",)
    names = (rngs,) if isinstance(rngs, str) else rngs
    if not isinstance(names, tuple | list) or not all(
        isinstance(n, str) and n for n in names
    ):
        raise _checks.fail(
            "from_flax rngs",
            "a tuple of stream names such as ('dropout', 'noise')",
            rngs,
        )
    names = tuple(names)
    if len(set(names)) != len(names) or "params" in names:
        raise _checks.fail(
            "from_flax rngs",
            "distinct stream names other than 'params' (init's)",
            names,
        )
    unknown = [n for n in names if nnx and n not in own]
    if unknown:
        raise _checks.fail(
            "from_flax rngs",
            f"streams of the nnx module, which draws from {list(own)}",
            f"{unknown}. Name the tags of its nnx.Rngs (or pass rngs=None)",
        )
    return names


def stream_keys(streams: tuple[str, ...], key: Key | None) -> dict:
    """Returns {stream: key}: one stream gets ``key``, several its splits in order."""
    if key is None or not streams:
        return {}
    if len(streams) == 1:
        return {streams[0]: key}
    return dict(zip(streams, jax.random.split(key, len(streams)), strict=True))


def _linen_parts(module, call_kwargs):
    """Returns ``(forward, init_variables)`` of a linen ``module``."""

    def forward(params, state, x, keys: dict, train: bool, kwargs: dict):
        variables = {"params": params, **state}
        if train and state:
            y, updates = module.apply(
                variables, x, rngs=keys, mutable=list(state), **kwargs
            )
            return y, {**state, **dict(updates)}
        return module.apply(variables, x, rngs=keys, **kwargs), state

    def init_variables(key: Key, streams, input_shape: Shape):
        params_key, stream_key = jax.random.split(key)
        rngs = {"params": params_key, **stream_keys(streams, stream_key)}
        kwargs = call_kwargs(False)
        variables = dict(
            _on_a_batch_of_one(lambda d: module.init(rngs, d, **kwargs), input_shape)
        )
        return variables.pop("params", {}), variables

    return forward, init_variables


def _abstract(tree):
    """Returns ``tree`` with every array replaced by its shape struct."""
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype) if hasattr(a, "shape") else a,
        tree,
    )


def _linen_submodules(module, call_kwargs, streams):
    """Returns ``describe(params, state, x)``: a linen module's direct submodules.

    It yields ``(name, kind, output_shape, params, state, flops)`` for every
    direct submodule the module calls (the first call of a shared one), found
    with ``nn.intercept_methods`` while the module is traced; each is then
    compiled alone for its FLOPs. ``summary`` reads it (``init.submodules``).
    """
    import flax.linen as nn

    def describe(params, state, x):
        calls = {}

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            child = context.module
            path = child.path if child.scope is not None else ()
            if context.method_name == "__call__" and len(path) == 1:
                calls.setdefault(path[0], (child, _abstract(args), kwargs, out.shape))
            return out

        keys = stream_keys(streams, jax.random.key(0))
        kwargs = call_kwargs(False)
        with nn.intercept_methods(record):
            jax.eval_shape(
                lambda p, s, xs: module.apply(
                    {"params": p, **s}, xs, rngs=keys, **kwargs
                ),
                params,
                state,
                x,
            )
        for name, (child, args, kw, shape) in calls.items():
            unbound = child.clone(parent=None)
            p = params.get(name, {})
            s = {c: v[name] for c, v in state.items() if name in v}
            count = _summary.flops(
                lambda p, s, *a, m=unbound, kw=kw: m.apply(
                    {"params": p, **s}, *a, rngs=keys, **kw
                ),
                p,
                s,
                *args,
            )
            yield name, type(child).__name__, tuple(shape[1:]), p, s, count

    return describe


def _missing_key(module, streams, train: bool) -> ValueError:
    """Returns the error for a module that draws random numbers without a key."""
    return ValueError(
        f"from_flax({type(module).__name__}): the module draws from the random "
        f"streams {list(streams)} in training mode: expected a key, got "
        "key=None. Pass key=jax.random.key(...) (fit does this for you)."
    )


def _fixed_key_warning(module, streams) -> str:
    """Returns the warning for a module that draws random numbers in evaluation."""
    return (
        f"from_flax({type(module).__name__}): the module draws from the random "
        f"streams {list(streams)} even in evaluation (train=False) and got no "
        "key, so it gets the fixed key jax.random.key(0): the same draw every "
        "call. Give the module a train argument (e.g. deterministic=not train) "
        "to make evaluation deterministic, or pass key= for fresh draws."
    )


def _apply_function(module, forward, streams, call_kwargs, is_nnx: bool):
    """Returns the layer's ``apply``: ``forward`` with keys, train and taps."""
    import flax.errors

    def apply(params, state, x, *, key=None, train=False, probe=None):
        keys = stream_keys(streams, key)
        if is_nnx and train and streams and key is None:
            raise _missing_key(module, streams, train)

        def run(p, s, xs, k):
            return forward(p, s, xs, k, train, call_kwargs(train))

        try:
            if probe is None:
                return run(params, state, x, keys)
            root = None if is_nnx else type(module).__name__
            out, taps = _activation_taps.call_with_taps(
                run, params, state, x, keys, root=root
            )
            probe.update(taps)
            return out
        except flax.errors.InvalidRngError as exc:
            if key is None and not train:  # MC dropout: draws in evaluation too
                warnings.warn(_fixed_key_warning(module, streams), stacklevel=2)
                fixed = jax.random.key(0)
                return apply(params, state, x, key=fixed, train=False, probe=probe)
            if key is None:
                raise _missing_key(module, streams, train) from exc
            raise ValueError(
                f"from_flax({type(module).__name__}): {exc}. Name every stream "
                f"the module draws from: from_flax(module, rngs=(...)); it "
                f"was given {list(streams)}."
            ) from exc

    return apply


@layer_factory
def from_flax(
    module,
    *,
    train_arg: str | bool | None = False,
    rngs: str | tuple[str, ...] | None = None,
    name: str | None = None,
):
    """Returns a Layer that runs a ``flax.linen`` or ``flax.nnx`` module.

    The ``train`` convention: if ``module.__call__`` has an argument named
    ``train``, ``training`` or ``is_training``, annjax passes ``train``;
    if it has ``deterministic`` or ``use_running_average``, annjax passes
    ``not train``. ``train_arg`` names the argument explicitly (one of those
    names), or None to pass nothing. Modules that set ``deterministic`` as an
    attribute instead need no argument. An nnx module is also switched with
    ``Module.train()``/``eval()`` (its ``deterministic`` and
    ``use_running_average`` attributes).

    Random streams: the key of every call (``fit`` hands each step its own)
    feeds the streams named by ``rngs``: one stream gets the key itself,
    several get ``jax.random.split(key, len(rngs))`` in order. The default is
    ``("dropout",)`` for linen and the module's own streams (the tags of its
    ``nnx.Rngs``) for nnx, all reseeded (``nnx.reseed``) every call.

    In training, every non-params collection (linen) or variable (nnx) is
    mutable and its update is returned as the new state.

    An nnx module arrives with its weights: ``init`` returns them as they are
    (its key draws nothing), taken when ``from_flax`` is called. For weights
    drawn from the key, as ``fit_many`` with several keys wants, wrap the
    class: ``from_flax(nnx.bridge.to_linen(MyModel, *args))``.

    The layer does not take ``weights=`` (see :class:`annjax.Layer`): a flax
    ``BatchNorm`` inside the module computes its statistics over the whole
    batch, including the weight-0 rows that pad ``fit``'s last batch. Use
    ``ann.batch_norm`` in an annjax model, or a batch size that divides the
    number of examples, where that matters.

    Args:
      module: a ``flax.linen.Module`` or ``flax.nnx.Module`` instance.
      train_arg: False (detect, the default), an argument name, or None.
      rngs: the random streams the key feeds: a name or a tuple of names
        (default: see above).
      name: the kind ``serial`` uses for the child (default: the class name in
        snake case, e.g. ``my_cnn``).

    Raises:
      TypeError: if ``module`` is not a flax Module.
      ValueError: for invalid ``rngs``; when the module draws random numbers
        and ``key`` is None.

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

    is_nnx = _flax_nnx.is_nnx(module)
    if not (is_nnx or isinstance(module, nn.Module)):
        raise TypeError(
            f"from_flax: expected a flax.linen Module or a flax.nnx Module "
            f"instance, got {module!r}."
        )
    arg = _train_argument(module, train_arg)
    streams = _streams(rngs, module, is_nnx)
    kind = name or _snake(type(module).__name__)

    def call_kwargs(train: bool) -> dict:
        return {} if arg is None else {arg: TRAIN_ARGUMENTS[arg](train)}

    if is_nnx:
        forward, nnx_params, nnx_state = _flax_nnx.parts(module)
    else:
        forward, init_variables = _linen_parts(module, call_kwargs)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        if is_nnx:
            params, state = nnx_params, nnx_state
        else:
            params, state = init_variables(key, streams, input_shape)
        keys = stream_keys(streams, jax.random.fold_in(key, 1))
        out = _on_a_batch_of_one(
            lambda d: jax.eval_shape(
                lambda p, s, k: forward(p, s, d, k, False, call_kwargs(False)),
                params,
                state,
                keys,
            ),
            input_shape,
        )
        return tuple(out[0].shape[1:]), params, state

    apply = _apply_function(module, forward, streams, call_kwargs, is_nnx)
    # summary's protocol: the parts of the layer
    if is_nnx:
        init.submodules = _flax_nnx.submodules(
            module, call_kwargs(False), _summary.flops
        )
    else:
        init.submodules = _linen_submodules(module, call_kwargs, streams)

    return Layer(init, apply, kind)
