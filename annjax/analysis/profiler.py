"""The gradient-flow profiler: the in-step measurements, and one batch's.

``fit(track_gradients=True)`` records per layer the measurements of
:mod:`annjax.training.measure` (gradient and parameter norms, the update
ratio, dead and saturated units) in the compiled step; they are re-exported
here, the profiler's public face. :func:`gradient_flow` measures one batch
outside ``fit``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from annjax import losses as _losses
from annjax._types import Array, Layer
from annjax.training.measure import (
    SATURATION_THRESHOLD,
    activation_stats,
    layer_norms,
    layer_stats,
    probe_apply,
)

__all__ = [
    "SATURATION_THRESHOLD",
    "activation_stats",
    "gradient_flow",
    "layer_norms",
    "layer_stats",
    "probe_apply",
]


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
      >>> flow = ann.gradient_flow(model, params, state, (x, y), "mse")
      >>> flow["grad_norm/dense_0"]
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
