"""``evaluate`` and ``predict``: a trained model on new data, batched and jitted.

Both run the evaluation code of the compiled epoch's validation pass
(:func:`annjax.training.epoch.evaluate_arrays`), so a model's ``val_loss``
in the history and ``evaluate`` on the same data agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from annjax import _checks
from annjax import losses as _losses
from annjax._types import Array, Layer
from annjax.training.arguments import as_arrays, fit_targets, metric_names
from annjax.training.epoch import evaluate_arrays, predict_batched
from annjax.training.step import output_shape

__all__ = ["evaluate", "predict"]

_predict = jax.jit(predict_batched, static_argnums=(0, 4))
_evaluate = jax.jit(evaluate_arrays, static_argnums=(0, 1, 2, 3))


def predict(model: Layer, params, state, x, batch_size: int = 1024) -> Array:
    """Returns the model's outputs on ``x`` in evaluation mode, batched and jitted."""
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    x = jnp.asarray(_checks.numeric_array("x", x), jnp.float32)
    return _predict(model, params, state, x, batch_size)


def evaluate(
    model: Layer,
    params,
    state,
    data: tuple[Any, Any],
    loss: str | Callable = "softmax_cross_entropy",
    metrics: Sequence[str | Callable] = (),
    batch_size: int = 1024,
) -> dict[str, float]:
    """Returns ``{"loss": …, metric: …}`` on ``data = (X, y)``, batched and jitted.

    Metrics are computed on all predictions at once (exact F1, R²…); a
    metric function ``(y_true, y_pred) -> scalar`` is keyed by its name.
    """
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    _losses.get(loss)
    metrics = metric_names(metrics)
    x, y = as_arrays("data", data)
    y = fit_targets("data", y, loss, output_shape(model, x.shape[1:]))
    logs = _evaluate(model, loss, metrics, batch_size, params, state, x, y)
    return {k: float(v) for k, v in logs.items()}
