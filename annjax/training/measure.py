r"""The in-step measurements of gradient flow and activation health.

The numbers the lecture's diagnosis of vanishing and exploding gradients
rests on, computed per layer inside the compiled train step (from the
gradients, the parameters, the optimizer's updates and the outputs of the
activation layers that the combinators' ``probe`` collects; see
:mod:`annjax.nn.combinators`). ``fit(track_gradients=True)`` calls them in
every measured step and the epoch aggregates them; the profiler
(:mod:`annjax.analysis.profiler`) and ``diagnose`` read them, one floor up.
All functions are pure and jittable.

A *layer* is a dict of arrays in the params tree; its name is its path,
``dense_0`` or ``residual_3/dense_0`` (a flax module's ``Dense_0`` likewise).

Per layer l with gradient g, parameters θ and update u:

.. math::

   \text{grad\_norm}_l = \lVert g_l \rVert_2, \quad
   \text{param\_norm}_l = \lVert θ_l \rVert_2, \quad
   \text{update\_ratio}_l = \lVert u_l \rVert_2 / \lVert θ_l \rVert_2

Examples:
  >>> import jax.numpy as jnp
  >>> from annjax.training.measure import layer_norms
  >>> norms = layer_norms({"dense_0": {"w": jnp.full((2, 2), 2.0), "b": jnp.zeros(2)}})
  >>> float(norms["dense_0"])
  4.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from annjax._types import COMBINATOR_KINDS, Array, Layer, Tap, weights_kwarg

__all__ = [
    "SATURATION_THRESHOLD",
    "activation_stats",
    "layer_norms",
    "layer_stats",
    "probe_apply",
]

#: A sigmoid or tanh unit counts as saturated where its derivative is below
#: this fraction of the derivative's maximum (σ' < 0.05 · 1/4 ⇔ |z| > 4.36;
#: tanh' < 0.05 ⇔ |z| > 2.18).
SATURATION_THRESHOLD = 0.05

_MAX_DERIVATIVE = {"sigmoid": 0.25, "tanh": 1.0}

#: Activations whose derivative is exactly 0 wherever their output is <= 0, so a
#: unit that is negative for a whole batch gets no gradient: a dead unit. Leaky
#: ReLU, ELU, GELU and swish keep a gradient there (the lecture's remedy for
#: dead ReLUs), so their units never count as dead.
_DEAD_BELOW_ZERO = frozenset({"relu"})


def _groups(tree, root: str) -> dict[str, list[Array]]:
    """Returns the leaves of ``tree`` grouped by the path of their parent dict."""
    groups: dict[str, list[Array]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = jax.tree_util.keystr(path[:-1], simple=True, separator="/") or root
        groups.setdefault(name, []).append(leaf)
    return groups


def layer_norms(tree, root: str = "model") -> dict[str, Array]:
    r"""Returns the L2 norm of each layer's leaves, ‖θ_layer‖ = √(Σ θ²), by path."""
    return {
        name: optax.tree_utils.tree_norm(leaves)
        for name, leaves in _groups(tree, root).items()
    }


def layer_stats(grads, params, updates) -> dict[str, Array]:
    r"""Returns per-layer gradient norm, parameter norm and update ratio.

    .. math::
       \text{grad\_norm} = \lVert \partial L / \partial \theta \rVert_2, \quad
       \text{update\_ratio} = \lVert \Delta\theta \rVert_2 / \lVert \theta \rVert_2

    The update ratio is the fraction of the weights one step changes; around
    1e-3 is healthy, far below means the layer barely learns, far above that it
    jumps. Keys are ``grad_norm/<layer>``, ``param_norm/<layer>`` and
    ``update_ratio/<layer>``. ``fit`` passes the params after the step (reading
    the ones before would keep a copy of every weight alive in the step).
    """
    g, p, u = layer_norms(grads), layer_norms(params), layer_norms(updates)
    stats = {}
    for name in g:
        stats[f"grad_norm/{name}"] = g[name]
        stats[f"param_norm/{name}"] = p[name]
        stats[f"update_ratio/{name}"] = u[name] / (p[name] + 1e-12)
    return stats


def _flat_taps(probe: dict, prefix: str = "") -> dict[str, Tap]:
    taps = {}
    for name, value in probe.items():
        path = f"{prefix}{name}"
        if isinstance(value, Tap):
            taps[path] = value
        else:
            taps.update(_flat_taps(value, path + "/"))
    return taps


def activation_stats(
    probe: dict, saturation_threshold: float = SATURATION_THRESHOLD
) -> dict[str, Array]:
    r"""Returns dead and saturated fractions for every tapped activation layer.

    - ``dead_fraction/<layer>`` (ReLU): the fraction of units whose output is
      ≤ 0 for every example of the batch, so no gradient reaches their
      weights through this batch. (Leaky ReLU, ELU, GELU and swish pass a
      gradient below zero: their units cannot die and are not measured.)
      A unit is a feature of the LAST axis: a dense layer's neuron, and for
      a (batch, H, W, C) image activation a channel, dead when it is ≤ 0 for
      every example AND every position (one filter's weights are shared over
      positions, so a channel gets no gradient only if all its positions are
      ≤ 0; a single dead position is no dead unit).
    - ``saturation/<layer>`` (sigmoid, tanh): the fraction of unit activations
      whose derivative, read off the output (σ' = y(1−y), tanh' = 1 − y²), is
      below ``saturation_threshold`` × its maximum.
    """
    stats = {}
    for path, (name, y) in _flat_taps(probe).items():
        if name in _DEAD_BELOW_ZERO:
            batch_and_positions = tuple(range(y.ndim - 1))
            dead = jnp.all(y <= 0, axis=batch_and_positions)
            stats[f"dead_fraction/{path}"] = jnp.mean(dead)
        elif name in _MAX_DERIVATIVE:
            derivative = y * (1 - y) if name == "sigmoid" else 1 - jnp.square(y)
            limit = saturation_threshold * _MAX_DERIVATIVE[name]
            stats[f"saturation/{path}"] = jnp.mean(derivative < limit)
    return stats


def probe_apply(model: Layer, params, state, x, *, key=None, train=False, weights=None):
    """Returns ``(y, state, probe)``: the model's output and its activation taps.

    Combinator models record every activation layer; any other model records
    its own output when it declares an activation. ``weights`` (per example)
    reach the model if it takes them (see :func:`annjax._types.takes_weights`).
    """
    extra = weights_kwarg(model, weights)
    if model.kind in COMBINATOR_KINDS:
        probe: dict = {}
        y, state = model.apply(
            params, state, x, key=key, train=train, probe=probe, **extra
        )
        return y, state, probe
    y, state = model.apply(params, state, x, key=key, train=train, **extra)
    # a bare layer's params are named "model" (see layer_norms); so is its tap
    probe = {"model": Tap(model.activation, y)} if model.activation else {}
    return y, state, probe
