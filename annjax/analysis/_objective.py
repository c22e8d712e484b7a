"""The training loss as a function of the params: the data that the
landscape and the Hessian study.

:func:`prepare` checks ``(model, params, state, data, loss)`` once with
``ann.evaluate``'s own checks and returns the data on the device in
``fit``'s target form. The model runs in evaluation mode with the given
``state`` (batch norm uses its running statistics, dropout is off); the
loss's batch-by-batch average is :func:`annjax.curvature.over_batches`.
"""

from __future__ import annotations

import jax.numpy as jnp

from annjax import _checks
from annjax import losses as _losses
from annjax._types import Layer
from annjax.training.arguments import as_arrays, check_model, fit_targets
from annjax.training.evaluate import check_params
from annjax.training.step import output_shape


def prepare(model: Layer, params, state, data, loss, batch_size) -> tuple:
    """Returns ``(x, y, batch_size)`` checked for ``model`` and ``loss``.

    The checks of ``ann.evaluate``: TypeError for a model that is not a
    Layer, ValueError for data that is not a pair ``(X, y)`` of equal length
    with finite values, for targets that do not suit the model's output or
    the loss, for params or state of another model, for an unknown loss or a
    bad ``batch_size``. ``y`` of shape (n,) for a model of one output becomes
    (n, 1), as in ``fit``.
    """
    check_model(model)
    _losses.get(loss)
    x, y = as_arrays("data", data)
    y = fit_targets("data", y, loss, output_shape(model, x.shape[1:]))
    check_params(model, x.shape[1:], params, state)
    if batch_size is None:
        batch_size = x.shape[0]
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    return jnp.asarray(x), jnp.asarray(y), min(batch_size, x.shape[0])
