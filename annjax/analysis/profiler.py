"""Measurements of gradient flow and activation health, inside the compiled step.

These are the numbers the lecture's diagnosis of vanishing and exploding
gradients rests on, computed per layer from the gradients, the parameters, the
optimizer's updates and the outputs of the activation layers (collected by
the combinators' ``probe``; see :mod:`annjax.nn.combinators`). All functions are
pure and jittable; ``fit(track_gradients=True)`` calls them in every step and
aggregates them per epoch, and :func:`gradient_flow` measures one batch.

A *layer* is a dict of arrays in the params tree; its name is its path,
``dense_0`` or ``residual_3/dense_0`` (a flax module's ``Dense_0`` likewise).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from annjax import losses as _losses
from annjax._types import COMBINATOR_KINDS, Array, Layer, Tap, weights_kwarg

__all__ = [
    "SATURATION_THRESHOLD",
    "activation_stats",
    "gradient_flow",
    "layer_norms",
    "layer_stats",
    "probe_apply",
]

#: A sigmoid or tanh unit counts as saturated where its derivative is below
#: this fraction of the derivative's maximum (σ' < 0.05 · 1/4 ⇔ ``|z| > 4.36``;
#: tanh' < 0.05 ⇔ ``|z| > 2.18``).
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


def gradient_flow(
    model: Layer,
    params,
    state,
    batch: tuple[Array, Array],
    loss: str | Callable = "softmax_cross_entropy",
    key: jax.Array | None = None,
    train: bool = True,
) -> dict[str, float]:
    """Returns the gradient-flow measurements of one batch, outside ``fit``.

    The gradient of the mean loss on ``batch = (x, y)`` with respect to the
    params gives ``grad_norm/<layer>`` and ``param_norm/<layer>``; the
    activation layers give ``dead_fraction/<layer>`` and ``saturation/<layer>``.
    (No update ratio: there is no optimizer step.) Works for any Layer,
    ``from_flax`` models included (parameter paths such as ``Dense_0``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import annjax as ann
      >>> model = ann.mlp([4, 1], activation="tanh")
      >>> _, params, state = model.init(jax.random.key(0), (3,))
      >>> x, y = jnp.ones((8, 3)), jnp.zeros((8, 1))
      >>> flow = ann.gradient_flow(model, params, state, (x, y), "mse")
      >>> sorted(flow)  # doctest: +NORMALIZE_WHITESPACE
      ['grad_norm/dense_0', 'grad_norm/dense_2', 'param_norm/dense_0',
       'param_norm/dense_2', 'saturation/tanh_1']
      >>> flow["grad_norm/dense_0"] > 0
      True
    """
    x, y = batch
    flow = _measure(model, _losses.get(loss), bool(train), params, state, x, y, key)
    return {k: float(v) for k, v in flow.items()}


# Model, loss and mode are static: a second call on the same model compiles nothing.
@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _measure(model, loss_fn, train, params, state, x, y, key):
    def objective(p):
        pred, _, probe = probe_apply(model, p, state, x, key=key, train=train)
        return loss_fn(y, pred), probe

    grads, probe = jax.grad(objective, has_aux=True)(params)
    out = {f"grad_norm/{k}": v for k, v in layer_norms(grads).items()}
    out.update({f"param_norm/{k}": v for k, v in layer_norms(params).items()})
    out.update(activation_stats(probe))
    return out
