r"""Hessian-vector products of a model's loss, and the top eigenpairs they give.

The Hessian :math:`H = \nabla^2_\theta L(\theta)` of a network with p
parameters has p² entries; it is never formed. Its product with a vector is
forward-over-reverse differentiation,

.. math:: Hv = \frac{\partial}{\partial \varepsilon}
   \nabla_\theta L(\theta + \varepsilon v) \Big|_{\varepsilon = 0}
   = \texttt{jax.jvp(jax.grad(L), (θ,), (v,))[1]},

at about the cost of two gradients, averaged over the data batch by batch
(:func:`over_batches`). Lanczos on these products (:mod:`.lanczos`) gives the
top eigenvalues; the largest, :math:`\lambda_{max}`, is the loss's
*sharpness*: on a quadratic, gradient descent with step η is stable only
while :math:`\lambda_{max} < 2/\eta` (:func:`stability_limit`), and Cohen et
al. (2021) find that it rises to 2/η and hovers there.

This floor sits below both users: ``fit(track_sharpness=N)`` measures
:func:`sharpness` inside the compiled epoch, and
:func:`annjax.analysis.hessian` studies the whole spectrum; so the two agree
by construction (same products, same Lanczos, same keys). Everything here is
pure and traceable.

References:
  Cohen, Kaur, Li, Kolter & Talwalkar (2021), "Gradient Descent on Neural
  Networks Typically Occurs at the Edge of Stability", ICLR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from annjax import losses as _losses
from annjax import optim as _optim
from annjax._types import Array, Layer
from annjax.curvature import lanczos as _lanczos

__all__ = [
    "SHARPNESS_ITERATIONS",
    "SHARPNESS_SEED",
    "batch_loss",
    "loss_hvp",
    "over_batches",
    "sharpness",
    "spectrum_keys",
    "stability_limit",
    "top_eigenpairs",
]

#: Lanczos steps of :func:`sharpness` in ``fit(track_sharpness=N)``: the top
#: Ritz value of a network's Hessian converges first, well within 20 steps.
SHARPNESS_ITERATIONS = 20
#: The seed of the fixed key ``jax.random.key(SHARPNESS_SEED)`` from which
#: ``fit(track_sharpness=N)`` starts Lanczos at every measurement.
SHARPNESS_SEED = 0


def batch_loss(model: Layer, loss, params, state, x: Array, y: Array) -> Array:
    """Returns the mean ``loss`` of the model's evaluation-mode outputs on a batch."""
    return _losses.get(loss)(y, model.apply(params, state, x, train=False)[0])


def over_batches(f: Callable[[Array, Array], Any], x, y, batch_size: int) -> Any:
    """Returns Σ_b (n_b / n) f(x_b, y_b) over consecutive batches; traceable.

    The full batches run in one ``lax.scan``, the remainder (if any) as one
    smaller batch, so every example counts once and with its own weight.
    """
    n = x.shape[0]
    full, rest = divmod(n, batch_size)
    parts = []
    if full:
        cut = full * batch_size
        xs = x[:cut].reshape(full, batch_size, *x.shape[1:])
        ys = y[:cut].reshape(full, batch_size, *y.shape[1:])

        def body(total, batch):
            return jax.tree.map(jnp.add, total, f(*batch)), None

        first = f(xs[0], ys[0])
        total = jax.lax.scan(body, first, (xs[1:], ys[1:]))[0]
        parts.append(jax.tree.map(lambda t: t * (batch_size / n), total))
    if rest:
        last = f(x[n - rest :], y[n - rest :])
        parts.append(jax.tree.map(lambda t: t * (rest / n), last))
    return parts[0] if len(parts) == 1 else jax.tree.map(jnp.add, *parts)


def loss_hvp(model: Layer, loss, state, x, y, batch_size: int, params) -> tuple:
    """Returns ``(flat_params, unravel, v ↦ Hv)`` on flat vectors.

    ``H`` is the Hessian in ``params`` of :func:`batch_loss` averaged over
    ``(x, y)``, ``batch_size`` examples at a time (:func:`over_batches`).
    """
    flat, unravel = ravel_pytree(params)

    def hvp(v: Array) -> Array:
        tangent = unravel(v)

        def one(xb, yb):
            def grad(p):
                return jax.grad(batch_loss, argnums=2)(model, loss, p, state, xb, yb)

            return ravel_pytree(jax.jvp(grad, (params,), (tangent,))[1])[0]

        return over_batches(one, x, y, batch_size)

    return flat, unravel, hvp


def spectrum_keys(key: Array) -> tuple[Array, Array, Array]:
    """Returns the keys of the top eigenpairs, the trace and the density.

    One rule for :func:`sharpness` and :func:`annjax.analysis.hessian`, so
    that both start Lanczos from the same vector for the same ``key``.
    """
    top, trace, density = jax.random.split(key, 3)
    return top, trace, density


def top_eigenpairs(hvp, flat, unravel, top_k: int, method: str, iterations, key):
    """Returns the ``top_k`` eigenvalues (descending) and their vectors as pytrees.

    ``method="lanczos"``: ``min(iterations, p)`` Lanczos steps from a normal
    vector drawn from ``key``; the ``top_k`` largest Ritz values.
    ``method="power"``: power iteration with deflation, ``iterations`` steps
    per eigenvalue (the largest magnitudes).
    """
    start_key, restart_key = jax.random.split(key)
    if method == "power":
        starts = jax.random.normal(start_key, (top_k, flat.size), flat.dtype)
        values, vectors = _lanczos.power_iteration(hvp, starts, iterations)
    else:
        v0 = jax.random.normal(start_key, flat.shape, flat.dtype)
        steps = min(iterations, flat.size)
        alphas, betas, basis = _lanczos.lanczos(hvp, v0, steps, restart_key)
        ritz, y = _lanczos.ritz_pairs(alphas, betas)
        values = ritz[::-1][:top_k]
        vectors = (basis.T @ y[:, ::-1][:, :top_k]).T
    return values, jax.vmap(unravel)(vectors)


def sharpness(
    model: Layer,
    loss,
    params,
    state,
    x: Array,
    y: Array,
    *,
    iterations: int = SHARPNESS_ITERATIONS,
    key: Array,
) -> Array:
    r"""Returns :math:`\lambda_{max}`, the top eigenvalue of the loss's Hessian
    on the batch ``(x, y)``; traceable (call it inside jit, vmap, an epoch).

    Lanczos with ``iterations`` Hessian-vector products from ``key`` (its
    top-eigenpair key, :func:`spectrum_keys`): ``annjax.analysis.hessian(...,
    top_k=1, iterations=iterations, key=key)`` on the same batch gives the
    same value. ``y`` must be in the form ``fit`` trains on; nothing is
    checked.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import annjax as ann
      >>> from annjax.curvature import sharpness
      >>> model = ann.dense(1, use_bias=False)
      >>> _, params, state = model.init(jax.random.key(0), (2,))
      >>> x = jnp.array([[1.0, 0.0], [0.0, 3.0]]); y = jnp.zeros((2, 1))
      >>> lam = sharpness(model, "mse", params, state, x, y, key=jax.random.key(1))
      >>> round(float(lam), 4)  # H = (2/n) XᵀX = diag(1, 9)
      9.0
    """
    flat, unravel, hvp = loss_hvp(model, loss, state, x, y, x.shape[0], params)
    top_key = spectrum_keys(key)[0]
    return top_eigenpairs(hvp, flat, unravel, 1, "lanczos", iterations, top_key)[0][0]


def stability_limit(opt_state, params) -> Array | None:
    r"""Returns 2/η, the sharpness limit of plain gradient descent, or None.

    Gradient descent :math:`\theta \leftarrow \theta - \eta \nabla L` on a
    quadratic with curvature λ multiplies the error along its eigenvector by
    :math:`1 - \eta\lambda`, which grows in size once :math:`\lambda >
    2/\eta`. That is plain (S)GD's limit only: an optimizer that keeps a
    state per parameter (momentum: (2 + 2μ)/η; Adam's moments: a
    preconditioned Hessian) has another, so for those, and for a learning
    rate that is not injected (:func:`annjax.optim.learning_rate`), the
    result is None. η is the learning rate of the last step (a schedule's
    current value). Decoupled weight decay λ lowers the limit by λ; it is
    not subtracted.
    """
    target = jax.tree.structure(params)
    nodes = jax.tree.leaves(
        opt_state, is_leaf=lambda node: jax.tree.structure(node) == target
    )
    if any(jax.tree.structure(node) == target for node in nodes):
        return None  # a copy of the params: momentum, Adam's moments, …
    lr = _optim.learning_rate(opt_state)
    return None if lr is None else 2.0 / lr
