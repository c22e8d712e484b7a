"""A ``flax.nnx`` module as the pure functions ``from_flax`` needs.

An nnx module is an object that holds its variables. ``nnx.split`` turns it
into a static graph and states: the ``Param`` variables become the layer's
params, the random streams (``RngState``) stay with the layer, every other
variable (``BatchStat``, …) becomes its state, all as plain nested dicts.
Each call merges a fresh module from them inside the trace, sets it to
training or evaluation (``Module.train``/``eval``: ``deterministic`` and
``use_running_average``), reseeds its streams from the step's key and splits
the updated state off again, so the layer stays a pure function.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def is_nnx(module) -> bool:
    """Returns whether ``module`` is a ``flax.nnx.Module`` instance."""
    from flax import nnx

    return isinstance(module, nnx.Module)


def _fill(template, pure: dict):
    """Returns a fresh copy of the State ``template`` holding the values ``pure``."""
    from flax import nnx

    state = jax.tree.map(lambda v: v, template)  # new Variables, in this trace
    nnx.replace_by_pure_dict(state, pure)
    return state


def stream_names(module) -> tuple[str, ...]:
    """Returns the tags of the random streams ``module`` draws from when called."""
    from flax import nnx

    _, rng_state, _ = nnx.split(module, nnx.RngState, ...)
    tags = {v.tag for v in jax.tree.leaves(rng_state, is_leaf=_is_variable)}
    return tuple(sorted(tags))


def _is_variable(x) -> bool:
    from flax import nnx

    return isinstance(x, nnx.Variable)


def parts(module):
    """Returns ``(forward, params, state)`` of an nnx ``module``.

    ``forward(params, state, x, keys, train, kwargs) -> (y, new_state)``, with
    ``keys`` a dict {stream: key} (empty: the streams keep their own keys).
    """
    from flax import nnx

    graphdef, params_t, rng_t, rest_t = nnx.split(module, nnx.Param, nnx.RngState, ...)

    def forward(params, state, x, keys: dict, train: bool, kwargs: dict):
        model = nnx.merge(
            graphdef,
            _fill(params_t, params),
            jax.tree.map(lambda v: v, rng_t),
            _fill(rest_t, state),
        )
        if train:
            model.train()
        else:
            model.eval()
        if keys:
            nnx.reseed(model, **keys)
        y = model(x, **kwargs)
        if not train:
            return y, state
        _, _, _, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
        return y, nnx.to_pure_dict(rest)

    return forward, nnx.to_pure_dict(params_t), nnx.to_pure_dict(rest_t)


class _Recorder:
    """Stands in for a child module: records its first call, then runs it."""

    def __init__(self, name: str, child, calls: dict):
        self.name, self.child, self.calls = name, child, calls

    def __call__(self, *args, **kwargs):
        out = self.child(*args, **kwargs)
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
        self.calls.setdefault(self.name, (self.child, abstract, kwargs, out.shape))
        return out


def submodules(module, kwargs: dict, flops):
    """Returns ``describe(params, state, x)``: the direct submodules an nnx
    module calls, as ``(name, kind, output_shape, params, state, flops)``.

    A copy of the module (``nnx.clone``), in evaluation, runs once on a zero
    batch with each direct child replaced by a recorder; each child is then
    compiled alone for its FLOPs (``flops(fn, *args)``). ``summary`` reads it.
    """
    from flax import nnx

    def describe(params, state, x):
        copy = nnx.clone(module)
        copy.eval()
        calls: dict = {}
        for name, child in list(nnx.iter_children(copy)):
            if isinstance(child, nnx.Module):
                object.__setattr__(copy, name, _Recorder(name, child, calls))
        copy(jnp.zeros(x.shape, x.dtype), **kwargs)
        for name, (child, args, kw, shape) in calls.items():
            graphdef, p, s = nnx.split(child, nnx.Param, ...)

            def run(p, s, *a, graphdef=graphdef, kw=kw):
                return nnx.merge(graphdef, p, s)(*a, **kw)

            count = flops(run, p, s, *args)
            yield (
                name,
                type(child).__name__,
                tuple(shape[1:]),
                nnx.to_pure_dict(p),
                _pure(s),
                count,
            )

    return describe


def _pure(state) -> dict:
    """Returns the non-params, non-rng values of ``state`` as a plain dict."""
    from flax import nnx

    return nnx.to_pure_dict(nnx.filter_state(state, nnx.Not(nnx.RngState)))
