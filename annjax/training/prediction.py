"""Predictions of a model on a whole data set, batched; traceable.

Shared by the compiled epoch's validation pass (:mod:`.epoch`) and by
``evaluate``/``predict`` (:mod:`.evaluate`), so ``val_loss`` in the history
and ``evaluate`` on the same data agree. On a mesh with a ``"data"`` axis
every batch is split over its devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from annjax._types import Array, Layer
from annjax.training import mesh as _mesh
from annjax.training.step import losses_and_metrics

__all__ = ["evaluate_arrays", "predict_batched"]


def predict_batched(
    model: Layer, params, state, x: Array, batch_size: int, mesh=None
) -> Array:
    """Returns the model's evaluation-mode outputs on ``x``, ``batch_size`` at a time.

    ``jax.lax.map`` with ``batch_size`` runs the batches one after another (the
    remainder as one smaller batch); traceable (call it inside jit). On a
    ``mesh`` with a ``"data"`` axis of D devices each batch is split over
    them: the batch size is rounded up to a multiple of D and ``x`` padded
    with zeros to whole batches (the padding's outputs are dropped).
    """
    d = _mesh.size(mesh, _mesh.DATA)
    if d > 1:
        return _predict_split(model, params, state, x, batch_size, mesh, d)
    bs = max(1, min(batch_size, x.shape[0]))
    if bs == x.shape[0]:  # one batch: no loop to compile
        return model.apply(params, state, x, train=False)[0]

    def one(xi):
        return model.apply(params, state, xi[None], train=False)[0][0]

    return jax.lax.map(one, x, batch_size=bs)


def _predict_split(model: Layer, params, state, x, batch_size: int, mesh, d: int):
    """Returns :func:`predict_batched` on a mesh: batches split over ``"data"``."""
    n = x.shape[0]
    bs = -(-max(1, min(batch_size, n)) // d) * d
    pad = -n % bs
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])

    def one(batch):
        batch = _mesh.constrain_batch(batch, mesh)
        return model.apply(params, state, batch, train=False)[0]

    out = jax.lax.map(one, x.reshape(-1, bs, *x.shape[1:]))
    return out.reshape(-1, *out.shape[2:])[:n]


def evaluate_arrays(
    model: Layer, loss, metrics: tuple, batch_size: int, params, state, x, y, mesh=None
) -> dict[str, Array]:
    """Returns the loss and metrics of the whole of ``(x, y)``; traceable.

    Metrics see every prediction at once, so F1, R² and the like are exact,
    not averages of per-batch values.
    """
    pred = predict_batched(model, params, state, x, batch_size, mesh)
    return losses_and_metrics(loss, metrics, y, pred)
