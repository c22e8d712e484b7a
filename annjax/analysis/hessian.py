r"""The Hessian of the training loss: top eigenvalues, trace and spectral density.

The Hessian :math:`H = \nabla^2_\theta L(\theta)` of a network with p
parameters has p² entries; it is never formed. Every estimator here needs
only Hessian-vector products, forward-over-reverse differentiation:

.. math:: Hv = \frac{\partial}{\partial \varepsilon}
   \nabla_\theta L(\theta + \varepsilon v) \Big|_{\varepsilon = 0}
   = \texttt{jax.jvp(jax.grad(L), (θ,), (v,))[1]},

at about the cost of two gradients, averaged over the data batch by batch
(:mod:`._objective`), all inside one compiled function. The linear algebra
(Lanczos, power iteration, Hutchinson, stochastic Lanczos quadrature) is in
:mod:`.lanczos`.

The top eigenvalue is the loss's *sharpness*: plain gradient descent with
learning rate η is stable on a quadratic only while :math:`\lambda_{max} <
2/\eta` (Cohen et al. 2021).

References:
  Ghorbani, Krishnan & Xiao (2019), "An Investigation into Neural Net
  Optimization via Hessian Eigenvalue Density", ICML.
  Yao, Gholami, Keutzer & Mahoney (2020), "PyHessian: Neural Networks Through
  the Lens of the Hessian", IEEE BigData.
  Hutchinson (1989), "A stochastic estimator of the trace of the influence
  matrix for Laplacian smoothing splines".
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from annjax import _checks
from annjax._types import Array, Layer
from annjax.analysis import lanczos as _lanczos
from annjax.analysis._objective import batch_loss, over_batches, prepare

__all__ = ["Density", "Spectrum", "hessian", "top_eigenvalue"]

METHODS = ("lanczos", "power")


class Density(NamedTuple):
    r"""The stochastic Lanczos quadrature of the Hessian's eigenvalue density.

    Each row (one random probe) is a discrete measure :math:`\sum_j w_j
    \delta(\lambda - \theta_j)` with :math:`\sum_j w_j = 1`; the density is
    their mean, smoothed by :meth:`smooth`.
    """

    nodes: Array  # (probes, steps) Ritz values θ_j
    weights: Array  # (probes, steps) Gauss weights w_j

    def smooth(self, grid, sigma: float | None = None) -> np.ndarray:
        """Returns the density on ``grid``: mean over probes of Σ_j w_j N(λ; θ_j, σ²).

        ``sigma`` defaults to 1 % of the nodes' range (PyHessian's broadening).
        """
        nodes, weights = np.asarray(self.nodes), np.asarray(self.weights)
        if sigma is None:
            sigma = max(0.01 * float(np.ptp(nodes)), 1e-12)
        z = (np.asarray(grid)[:, None, None] - nodes[None]) / sigma
        kernel = np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))
        return (kernel * weights[None]).sum(-1).mean(-1)


class Spectrum(NamedTuple):
    """What :func:`hessian` returns."""

    eigenvalues: Array  # (top_k,), descending
    eigenvectors: Any  # params-shaped pytree, each leaf with a leading (top_k,) axis
    trace: Array | None  # Hutchinson's estimate of tr H
    trace_error: Array | None  # its standard error
    density: Density | None


def _hvp(model: Layer, loss, state, x, y, batch_size: int, params):
    """Returns ``(flat_params, unravel, v ↦ Hv)`` on flat vectors, the data's mean."""
    flat, unravel = ravel_pytree(params)

    def hvp(v: Array) -> Array:
        tangent = unravel(v)

        def one(xb, yb):
            def grad(p):
                return jax.grad(batch_loss, argnums=2)(model, loss, p, state, xb, yb)

            return ravel_pytree(jax.jvp(grad, (params,), (tangent,))[1])[0]

        return over_batches(one, x, y, batch_size)

    return flat, unravel, hvp


def _top(hvp, flat, unravel, top_k: int, method: str, iterations: int, key):
    """Returns the ``top_k`` eigenvalues (descending) and their vectors as pytrees."""
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


def _spectrum(model, loss, batch_size, options, params, state, x, y, key):
    """The compiled body of :func:`hessian`; ``options`` is a static tuple."""
    top_k, method, iterations, trace, samples, density, probes = options
    flat, unravel, hvp = _hvp(model, loss, state, x, y, batch_size, params)
    top_key, trace_key, density_key = jax.random.split(key, 3)
    values, vectors = _top(hvp, flat, unravel, top_k, method, iterations, top_key)
    out = {"eigenvalues": values, "eigenvectors": vectors}
    if trace:
        n, dtype = flat.size, flat.dtype
        out["trace"] = _lanczos.hutchinson(hvp, trace_key, n, samples, dtype)
    if density:
        steps = min(iterations, flat.size)
        out["density"] = _lanczos.quadrature(
            hvp, density_key, flat.size, steps, probes, flat.dtype
        )
    return out


_compiled_spectrum = jax.jit(_spectrum, static_argnums=(0, 1, 2, 3))


def hessian(
    model: Layer,
    params,
    state,
    data: tuple[Any, Any],
    *,
    loss="softmax_cross_entropy",
    top_k: int = 1,
    trace: bool = False,
    density: bool = False,
    method: str = "lanczos",
    iterations: int = 100,
    samples: int = 100,
    probes: int = 1,
    key: Array,
    batch_size: int | None = None,
) -> Spectrum:
    r"""Returns the top eigenvalues of the loss's Hessian (and its trace, density).

    The loss is the mean over ``data = (X, y)`` of ``loss`` on the model's
    evaluation-mode outputs (batch norm with the given ``state``), as
    ``ann.evaluate`` reports it; ``H`` is its Hessian in ``params``.

    - ``method="lanczos"`` (default): ``min(iterations, p)`` Lanczos steps with
      full reorthogonalisation; the ``top_k`` largest Ritz values (algebraic,
      so the sharpness even when H has larger negative eigenvalues). With
      ``iterations >= p`` they are exact up to rounding.
    - ``method="power"``: ``iterations`` power-iteration steps per eigenvalue
      with deflation, as PyHessian; it finds the largest *magnitudes*.
    - ``trace=True``: Hutchinson's :math:`\frac1s\sum_{i=1}^s z_i^\top H z_i`
      with ``samples`` Rademacher probes, and ``trace_error`` its standard error
      :math:`\hat\sigma/\sqrt s`.
    - ``density=True``: stochastic Lanczos quadrature with ``probes`` random
      probes of ``min(iterations, p)`` steps each (:class:`Density`).

    Args:
      model, params, state: an annjax Layer and its params and state.
      data: ``(X, y)`` on which the loss is averaged, ``batch_size`` examples
        at a time (default: all at once).
      loss: a loss name or function ``(y_true, y_pred) -> scalar``.
      key: a ``jax.random.key`` for the starting and probe vectors.

    Returns:
      A :class:`Spectrum`.

    Raises:
      ValueError: for an argument out of range, data or params that do not
        fit the model (as ``ann.evaluate``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import annjax as ann
      >>> model = ann.mlp([8, 1], activation="tanh")
      >>> _, params, state = model.init(jax.random.key(0), (3,))
      >>> x = jax.random.normal(jax.random.key(1), (32, 3))
      >>> s = ann.analysis.hessian(model, params, state, (x, x[:, :1]),
      ...                          loss="mse", top_k=2, key=jax.random.key(2))
      >>> s.eigenvalues.shape, bool(s.eigenvalues[0] >= s.eigenvalues[1])
      ((2,), True)
    """
    x, y, batch_size = prepare(model, params, state, data, loss, batch_size)
    p = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
    options = (
        _checks.integer("top_k", top_k, minimum=1),
        _checks.one_of("method", method, METHODS),
        _checks.integer("iterations", iterations, minimum=1),
        bool(trace),
        _checks.integer("samples", samples, minimum=2),
        bool(density),
        _checks.integer("probes", probes, minimum=1),
    )
    if top_k > min(p, iterations if method == "lanczos" else p):
        raise _checks.fail(
            "top_k",
            f"at most min(number of params {p}, iterations {iterations})",
            top_k,
            "Ask for fewer eigenvalues or raise iterations.",
        )
    _checks.random_key("key", key)
    out = _compiled_spectrum(model, loss, batch_size, options, params, state, x, y, key)
    t = out.get("trace", (None, None))
    d = out.get("density")
    return Spectrum(
        out["eigenvalues"], out["eigenvectors"], t[0], t[1], d and Density(*d)
    )


def _top_eigenvalue(model, loss, iterations, params, state, x, y, key) -> Array:
    flat, unravel, hvp = _hvp(model, loss, state, x, y, x.shape[0], params)
    return _top(hvp, flat, unravel, 1, "lanczos", iterations, key)[0][0]


_compiled_top = jax.jit(_top_eigenvalue, static_argnums=(0, 1, 2))


def top_eigenvalue(
    model: Layer, params, state, batch, loss, *, iterations: int = 20, key: Array
) -> Array:
    r"""Returns :math:`\lambda_{max}` of the loss's Hessian on one batch; compiled.

    ``batch = (x, y)`` must already be in the form ``fit`` trains on (device
    arrays, targets shaped as the model's output); nothing is checked, so it
    can be called inside a jitted function (an epoch) as after one. Lanczos
    with ``iterations`` Hessian-vector products (20 are plenty for the top
    eigenvalue of a network: its Ritz value converges first). This is the
    *sharpness* of Cohen et al. (2021), to compare with 2/lr.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import annjax as ann
      >>> model = ann.dense(1, use_bias=False)
      >>> _, params, state = model.init(jax.random.key(0), (2,))
      >>> x = jnp.array([[1.0, 0.0], [0.0, 3.0]]); y = jnp.zeros((2, 1))
      >>> lam = ann.analysis.top_eigenvalue(model, params, state, (x, y), "mse",
      ...                                   key=jax.random.key(1))
      >>> round(float(lam), 4)  # H = (2/n) XᵀX = diag(1, 9)
      9.0
    """
    x, y = batch
    return _compiled_top(model, loss, iterations, params, state, x, y, key)
