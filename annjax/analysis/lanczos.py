r"""The spectrum of a symmetric operator known only by its products ``v ↦ Hv``.

Pure, traceable linear algebra on flat vectors; :mod:`.hessian` applies it to
Hessian-vector products. Nothing here forms ``H``.

- **Lanczos** (full reorthogonalisation): ``m`` products build an orthonormal
  basis :math:`V = [v_1 … v_m]` of the Krylov space of :math:`v_1` in which
  :math:`V^\top H V = T` is tridiagonal (:math:`\alpha_i` on the diagonal,
  :math:`\beta_i` beside it). The eigenvalues of ``T`` (Ritz values) approach
  the extreme eigenvalues of ``H`` first; :math:`V y` are the Ritz vectors.
- **Power iteration** with deflation (as PyHessian): :math:`v \leftarrow Hv /
  \lVert Hv \rVert`, orthogonal to the vectors already found; the Rayleigh
  quotient :math:`v^\top H v` estimates the eigenvalue of largest magnitude.
- **Hutchinson**: :math:`\operatorname{tr} H = \mathbb E[z^\top H z]` for
  Rademacher ``z``; the mean of ``s`` probes with its standard error.
- **Stochastic Lanczos quadrature** (Ghorbani et al. 2019; Yao et al. 2020):
  from a random unit :math:`v`, the Ritz values :math:`\theta_j` with weights
  :math:`w_j = (e_1^\top y_j)^2` are the Gauss quadrature of the spectral
  density: :math:`v^\top f(H) v \approx \sum_j w_j f(\theta_j)`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from annjax._types import Array

__all__ = ["hutchinson", "lanczos", "power_iteration", "quadrature", "ritz_pairs"]

MatVec = Callable[[Array], Array]


def _orthogonalize(w: Array, basis: Array) -> Array:
    """Returns ``w`` minus its projection on the rows of ``basis`` (twice, for
    stability: classical Gram–Schmidt run twice is as good as modified)."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def lanczos(matvec: MatVec, v0: Array, steps: int, key: Array) -> tuple:
    """Returns ``(alphas, betas, basis)``: ``steps`` Lanczos steps from ``v0``.

    ``alphas`` (m,) and ``betas`` (m - 1,) are T's diagonal and off-diagonal,
    ``basis`` (m, n) the orthonormal Lanczos vectors. On breakdown (the Krylov
    space is invariant, :math:`\\beta \\approx 0`) the next vector is a fresh
    random one orthogonal to the basis and that ``beta`` is 0, so ``T`` stays
    the exact projection of ``H`` and every Ritz value is one of its
    eigenvalues. ``steps`` must not exceed ``v0.size``.
    """
    n = v0.size
    restarts = jax.random.normal(key, (steps, n), v0.dtype)
    basis = jnp.zeros((steps, n), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    alphas = jnp.zeros(steps, v0.dtype)
    betas = jnp.zeros(steps, v0.dtype)
    tol = jnp.sqrt(jnp.finfo(v0.dtype).eps)

    def step(i, carry):
        basis, alphas, betas, scale = carry
        v = basis[i]
        w = matvec(v)
        alpha = jnp.vdot(v, w)
        w = _orthogonalize(w, basis)
        beta = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(alpha) + beta)
        broke = beta <= tol * scale
        fresh = _orthogonalize(restarts[i], basis)
        nxt = jnp.where(broke, fresh / jnp.linalg.norm(fresh), w / beta)
        basis = basis.at[i + 1].set(nxt, mode="drop")
        betas = betas.at[i].set(jnp.where(broke, 0.0, beta))
        return basis, alphas.at[i].set(alpha), betas, scale

    tiny = jnp.finfo(v0.dtype).tiny
    carry = (basis, alphas, betas, jnp.asarray(tiny, v0.dtype))
    basis, alphas, betas, _ = jax.lax.fori_loop(0, steps, step, carry)
    return alphas, betas[:-1], basis


def ritz_pairs(alphas: Array, betas: Array) -> tuple[Array, Array]:
    """Returns T's eigenvalues (ascending) and eigenvectors (columns)."""
    t = jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)
    return jnp.linalg.eigh(t)


def power_iteration(matvec: MatVec, starts: Array, iterations: int) -> tuple:
    """Returns ``(eigenvalues, vectors)`` of the ``k`` largest-magnitude eigenvalues.

    ``starts`` (k, n) are the starting vectors; the j-th vector is kept
    orthogonal to the j - 1 found before it (deflation), and after
    ``iterations`` products its Rayleigh quotient is its eigenvalue.
    """
    found = jnp.zeros_like(starts)
    values = []
    for j in range(starts.shape[0]):

        def body(_, carry, done=found[:j]):
            v, _value = carry
            v = _orthogonalize(v, done)
            v = v / jnp.linalg.norm(v)
            hv = matvec(v)
            return hv / jnp.linalg.norm(hv), jnp.vdot(v, hv)

        v0 = starts[j]
        v, value = jax.lax.fori_loop(0, iterations, body, (v0, jnp.zeros((), v0.dtype)))
        found = found.at[j].set(v)
        values.append(value)
    return jnp.stack(values), found


def hutchinson(matvec: MatVec, key: Array, n: int, samples: int, dtype) -> tuple:
    """Returns ``(estimate, standard_error)`` of tr H from ``samples`` Rademacher
    probes: the mean of :math:`z^\\top H z` and its standard deviation / √s."""
    z = jax.random.rademacher(key, (samples, n), dtype)
    values = jax.lax.map(lambda zi: jnp.vdot(zi, matvec(zi)), z)
    error = jnp.std(values, ddof=1) / jnp.sqrt(samples) if samples > 1 else jnp.inf
    return jnp.mean(values), jnp.asarray(error, dtype)


def quadrature(matvec: MatVec, key: Array, n: int, steps: int, probes: int, dtype):
    """Returns ``(nodes, weights)``, each (probes, steps): the stochastic Lanczos
    quadrature of H's spectral density, one row per random unit probe."""

    def one(k):
        start_key, restart_key = jax.random.split(k)
        v0 = jax.random.normal(start_key, (n,), dtype)
        alphas, betas, _ = lanczos(matvec, v0, steps, restart_key)
        nodes, vectors = ritz_pairs(alphas, betas)
        return nodes, vectors[0] ** 2

    return jax.lax.map(one, jax.random.split(key, probes))
