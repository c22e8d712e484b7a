"""Tests of ann.analysis.hessian and top_eigenvalue against the full Hessian.

Oracle: ``numpy.linalg.eigvalsh`` of ``jax.hessian`` of the flattened loss, in
float64 (x64 fixture), on models of a few hundred params; and a quadratic loss
whose Hessian is built with a chosen spectrum.
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import annjax as ann


def _f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _mlp_problem(model, seed=0, n=64, d=8, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, k, n)
    _, params, state = model.init(jax.random.key(seed), (d,))
    return _f64(params), _f64(state), x, y


def _full_hessian(model, params, state, x, y, loss="softmax_cross_entropy"):
    flat, unravel = ravel_pytree(params)

    def f(v):
        pred = model.apply(unravel(v), state, jnp.asarray(x), train=False)[0]
        return ann.losses.get(loss)(jnp.asarray(y), pred)

    return np.asarray(jax.jit(jax.hessian(f))(flat))


MODELS = {
    "mlp": lambda: ann.mlp([20, 3], activation="tanh"),
    "batch_norm": lambda: ann.serial(
        ann.dense(16), ann.batch_norm(), ann.activation("tanh"), ann.dense(3)
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_top_eigenvalues_equal_eigvalsh_of_the_full_hessian(x64, name):
    model = MODELS[name]()
    params, state, x, y = _mlp_problem(model)
    h = _full_hessian(model, params, state, x, y)
    p = h.shape[0]
    want = np.linalg.eigvalsh(h)[::-1][:3]
    # batches of 10 over 64 examples: six full ones and a remainder of four
    s = ann.analysis.hessian(
        model,
        params,
        state,
        (x, y),
        top_k=3,
        iterations=p,
        batch_size=10,
        key=jax.random.key(1),
    )
    # 1e-3 relative, the bound; with p Lanczos steps it is exact
    np.testing.assert_allclose(s.eigenvalues, want, rtol=1e-3)
    vectors = np.stack(
        [
            ravel_pytree(jax.tree.map(lambda a, i=i: a[i], s.eigenvectors))[0]
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(
        vectors @ h @ vectors.T, np.diag(want), atol=1e-3 * want[0]
    )


def test_few_lanczos_steps_find_the_top_eigenvalue(x64):
    model = MODELS["mlp"]()
    params, state, x, y = _mlp_problem(model, seed=3)
    want = np.linalg.eigvalsh(_full_hessian(model, params, state, x, y))[-1]
    # 20 of the 243 steps (the options of the test below: one compilation)
    s = ann.analysis.hessian(
        model, params, state, (x, y), iterations=20, key=jax.random.key(0)
    )
    np.testing.assert_allclose(s.eigenvalues[0], want, rtol=1e-3)


def test_trace_is_within_the_stated_error(x64):
    model = MODELS["mlp"]()
    params, state, x, y = _mlp_problem(model, seed=1)
    exact = np.trace(_full_hessian(model, params, state, x, y))
    s = ann.analysis.hessian(
        model,
        params,
        state,
        (x, y),
        trace=True,
        samples=200,
        iterations=5,
        key=jax.random.key(2),
    )
    assert 0 < s.trace_error < 0.5 * abs(exact)
    # a 4-sigma band: fails about once in 16 000 seeds if the estimator is right
    assert abs(s.trace - exact) < 4 * s.trace_error


def _quadratic(spectrum, seed=0):
    """A linear model under mse whose Hessian (2/n) XᵀX = Q diag(spectrum) Qᵀ."""
    d = len(spectrum)
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]
    x = np.sqrt(d / 2) * np.diag(np.sqrt(spectrum)) @ q.T
    model = ann.dense(1, use_bias=False)
    _, params, state = model.init(jax.random.key(0), (d,))
    return model, _f64(params), state, x, np.zeros((d, 1))


SPECTRUM = np.array([10.0, 4.0, 2.5, 1.0, 0.5, 0.1])


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_a_quadratic_with_a_known_spectrum_is_recovered(x64, method):
    model, params, state, x, y = _quadratic(SPECTRUM)
    s = ann.analysis.hessian(
        model,
        params,
        state,
        (x, y),
        loss="mse",
        top_k=6 if method == "lanczos" else 2,
        method=method,
        iterations=200,
        trace=True,
        key=jax.random.key(0),
    )
    k = s.eigenvalues.shape[0]
    np.testing.assert_allclose(s.eigenvalues, SPECTRUM[:k], rtol=1e-6)
    assert abs(s.trace - SPECTRUM.sum()) < 4 * s.trace_error


def test_density_is_the_gauss_quadrature_of_the_spectrum(x64):
    model, params, state, x, y = _quadratic(SPECTRUM)
    s = ann.analysis.hessian(
        model,
        params,
        state,
        (x, y),
        loss="mse",
        density=True,
        probes=3,
        key=jax.random.key(4),
    )
    nodes, weights = np.asarray(s.density.nodes), np.asarray(s.density.weights)
    assert nodes.shape == weights.shape == (3, 6)  # steps capped at the 6 params
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-9)
    for row, w in zip(nodes, weights, strict=True):
        np.testing.assert_allclose(
            np.sort(row[w > 1e-10]), np.sort(SPECTRUM), rtol=1e-6
        )
    grid = np.linspace(-2, 12, 4001)
    mass = s.density.smooth(grid, sigma=0.1).sum() * (grid[1] - grid[0])
    np.testing.assert_allclose(mass, 1.0, rtol=1e-3)


def test_top_eigenvalue_equals_hessian_top_1_and_runs_inside_jit(x64):
    model = MODELS["mlp"]()
    params, state, x, y = _mlp_problem(model, seed=2)
    key = jax.random.key(5)
    want = ann.analysis.hessian(model, params, state, (x, y), iterations=20, key=key)
    data = (jnp.asarray(x), jnp.asarray(y))
    got = ann.analysis.top_eigenvalue(
        model, params, state, data, "softmax_cross_entropy", key=key
    )
    np.testing.assert_allclose(got, want.eigenvalues[0], rtol=1e-10)

    @jax.jit
    def inside(p):
        return ann.analysis.top_eigenvalue(
            model, p, state, data, "softmax_cross_entropy", key=key
        )

    np.testing.assert_allclose(inside(params), got, rtol=1e-10)


def test_a_second_call_does_not_recompile():
    model = MODELS["mlp"]()
    _, params, state = model.init(jax.random.key(0), (8,))
    x, y = np.ones((16, 8), np.float32), np.zeros(16, np.int32)
    module = importlib.import_module("annjax.analysis.hessian")

    ann.analysis.hessian(
        model, params, state, (x, y), iterations=4, key=jax.random.key(0)
    )
    size = module._compiled_spectrum._cache_size()
    params = jax.tree.map(lambda a: a + 1, params)
    ann.analysis.hessian(
        model, params, state, (x, y), iterations=4, key=jax.random.key(1)
    )
    assert module._compiled_spectrum._cache_size() == size


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": 5, "iterations": 4}, "top_k: expected at most"),
        ({"method": "qr"}, "method"),
        ({"iterations": 0}, "iterations"),
        ({"samples": 1}, "samples"),
        ({"probes": 0}, "probes"),
        ({"batch_size": 0}, "batch_size"),
        ({"key": None}, "key"),
        ({"loss": "nope"}, "nope"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    model = ann.mlp([4, 2])
    _, params, state = model.init(jax.random.key(0), (3,))
    x, y = np.ones((8, 3), np.float32), np.zeros(8, np.int32)
    kwargs = {"key": jax.random.key(0), **kwargs}
    with pytest.raises(ValueError, match=match):
        ann.analysis.hessian(model, params, state, (x, y), **kwargs)


def test_params_of_another_model_are_refused():
    model = ann.mlp([4, 2])
    _, params, state = ann.mlp([5, 2]).init(jax.random.key(0), (3,))
    x, y = np.ones((8, 3), np.float32), np.zeros(8, np.int32)
    with pytest.raises(ValueError, match="params"):
        ann.analysis.hessian(model, params, state, (x, y), key=jax.random.key(0))
