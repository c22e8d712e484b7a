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
from jax.sharding import Mesh

from annjax import _checks
from annjax import losses as _losses
from annjax._types import Array, Layer
from annjax.training import mesh as _mesh
from annjax.training.arguments import as_arrays, fit_targets, metric_names
from annjax.training.epoch import evaluate_arrays, predict_batched
from annjax.training.step import output_shape

__all__ = ["evaluate", "predict"]

_predict = jax.jit(predict_batched, static_argnums=(0, 4, 5))
_evaluate = jax.jit(evaluate_arrays, static_argnums=(0, 1, 2, 3, 8))


def predict(
    model: Layer, params, state, x, batch_size: int = 1024, mesh: Mesh | None = None
) -> Array:
    """Returns the model's outputs on ``x`` in evaluation mode, batched and jitted.

    With ``mesh`` (a ``"data"`` axis, as in :func:`annjax.fit`) each batch is
    split over its devices; ``x`` laid over them stays where it lies.
    """
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    mesh = _mesh.check(mesh, many=False)
    x = _checks.numeric_array("x", x)
    if not _mesh.is_spread(x):
        x = jnp.asarray(x, jnp.float32)
    x = _mesh.place_data("x", x.astype(jnp.float32), mesh)
    params, state = _mesh.place_state((params, state), mesh, False)
    return _predict(model, params, state, x, batch_size, mesh)


def evaluate(
    model: Layer,
    params,
    state,
    data: tuple[Any, Any],
    loss: str | Callable = "softmax_cross_entropy",
    metrics: Sequence[str | Callable] = (),
    batch_size: int = 1024,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Returns ``{"loss": …, metric: …}`` on ``data = (X, y)``, batched and jitted.

    Metrics are computed on all predictions at once (exact F1, R²…); a
    metric function ``(y_true, y_pred) -> scalar`` is keyed by its name.
    ``mesh`` splits each batch over its ``"data"`` axis, as in :func:`predict`.
    """
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    mesh = _mesh.check(mesh, many=False)
    _losses.get(loss)
    metrics = metric_names(metrics)
    x, y = as_arrays("data", data)
    y = fit_targets("data", y, loss, output_shape(model, x.shape[1:]))
    x, y = (
        _mesh.place_data(f"data {p}", a, mesh)
        for p, a in zip("Xy", (x, y), strict=True)
    )
    params, state = _mesh.place_state((params, state), mesh, False)
    logs = _evaluate(model, loss, metrics, batch_size, params, state, x, y, mesh)
    return {k: float(v) for k, v in logs.items()}
