"""The activations a traced function applies, found in its jaxpr and tapped.

annjax's own layers declare their activation (``Layer.activation``) and the
combinators record its output (:class:`annjax._types.Tap`). A flax model
applies its activations as plain functions (``nn.relu(x)``), which no flax hook
sees (``capture_intermediates`` and ``intercept_methods`` see module calls
only). Every traced program names them, though: ``jax.nn.relu`` is a
``custom_jvp_call`` of a function named ``relu``, ``sigmoid`` is the
``logistic`` primitive and ``tanh`` the ``tanh`` primitive. :func:`call_with_taps`
traces the function once, adds the outputs of those equations to the
program's outputs and runs it, so the taps are values of the same compiled
step, differentiable as the function itself.

A ``logistic`` or ``tanh`` that is part of a gated unit (swish ``z·σ(z)``,
the tanh form of GELU ``z·½(1 + tanh(…z…))``) is no activation whose
saturation stops the gradient: its output meets its own input again in an
elementwise product or sum. Such equations are skipped. A ReLU written by hand
as ``jnp.maximum(x, 0)`` is not recognised (batch norm's variance has the same
``max``); use ``nn.relu``/``jax.nn.relu``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.extend.core as jex

from annjax._types import Tap

__all__ = ["call_with_taps"]

#: Primitives that act elementwise: a gated unit's parts are joined by them.
_ELEMENTWISE = frozenset(
    [
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "integer_pow",
        "pow",
        "square",
        "sqrt",
        "rsqrt",
        "exp",
        "log",
        "log1p",
        "expm1",
        "logistic",
        "tanh",
        "max",
        "min",
        "abs",
        "sign",
        "convert_element_type",
        "erf",
    ]
)


def _is_relu(eqn) -> bool:
    """Returns whether ``eqn`` is ``jax.nn.relu`` (a custom_jvp_call of relu)."""
    if eqn.primitive.name != "custom_jvp_call":
        return False
    inner = eqn.params["call_jaxpr"].jaxpr
    src = getattr(inner.debug_info, "func_src_info", "") or ""
    return src.startswith("relu ") or any(
        e.params.get("name") == "relu" for e in inner.eqns
    )


def _activation(eqn) -> str | None:
    """Returns the registry name of the activation ``eqn`` applies, or None."""
    if _is_relu(eqn):
        return "relu"
    return {"logistic": "sigmoid", "tanh": "tanh"}.get(eqn.primitive.name)


def _is_gated(eqns, index: int, producer: dict) -> bool:
    """Returns whether ``eqns[index]``'s output meets its input's sources again.

    ``producer`` maps each variable to the equation that computes it. The
    sources are the variables the input is computed from through
    elementwise equations; the meeting is an elementwise equation, reached
    from the output through elementwise equations, that also reads a source.
    """
    sources, stack = set(), list(eqns[index].invars)
    while stack:
        var = stack.pop()
        if isinstance(var, jex.Literal) or var in sources:
            continue
        sources.add(var)
        eqn = producer.get(var)
        if eqn is not None and eqn.primitive.name in _ELEMENTWISE:
            stack.extend(eqn.invars)
    reached = set(eqns[index].outvars)
    for eqn in eqns[index + 1 :]:
        if eqn.primitive.name not in _ELEMENTWISE:
            continue
        if not any(v in reached for v in eqn.invars if not isinstance(v, jex.Literal)):
            continue
        if any(v in sources for v in eqn.invars if not isinstance(v, jex.Literal)):
            return True
        reached.update(eqn.outvars)
    return False


def _scope(eqn, root: str | None) -> str:
    """Returns the module path of ``eqn`` below ``root`` in the name stack."""
    parts = str(eqn.source_info.name_stack).split("/")
    if root is None or root not in parts:
        return ""
    return "/".join(parts[parts.index(root) + 1 :])


def _find(jaxpr, root: str | None) -> list[tuple[str, str, object]]:
    """Returns ``(path, activation, var)`` for every activation of ``jaxpr``."""
    found, counts = [], {}
    producer = {v: e for e in jaxpr.eqns for v in e.outvars}
    for index, eqn in enumerate(jaxpr.eqns):
        name = _activation(eqn)
        gated = name not in (None, "relu") and _is_gated(jaxpr.eqns, index, producer)
        if name is None or gated:
            continue
        scope = _scope(eqn, root)
        number = counts.get((scope, name), 0)
        counts[(scope, name)] = number + 1
        path = f"{scope}/{name}_{number}" if scope else f"{name}_{number}"
        found.append((path, name, eqn.outvars[0]))
    return found


def call_with_taps(fn: Callable, *args, root: str | None = None):
    """Returns ``(fn(*args), taps)``: the result and a Tap per activation applied.

    ``taps`` maps a path (``relu_0``, or ``Block_0/relu_1`` below the module
    ``root`` in JAX's name stack, where flax pushes module names) to a
    :class:`~annjax._types.Tap`. Only the activations at the top level of
    ``fn``'s program are found (not inside a ``jax.jit``, ``scan`` or ``remat``
    that ``fn`` itself calls).
    """
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    jaxpr = closed.jaxpr
    found = _find(jaxpr, root)
    extended = jaxpr.replace(outvars=[*jaxpr.outvars, *(v for _, _, v in found)])
    outs = jex.jaxpr_as_fun(jex.ClosedJaxpr(extended, closed.consts))(
        *jax.tree.leaves(args)
    )
    n = len(jaxpr.outvars)
    result = jax.tree.unflatten(jax.tree.structure(out_shape), outs[:n])
    taps = {
        path: Tap(name, y) for (path, name, _), y in zip(found, outs[n:], strict=True)
    }
    return result, taps
