"""layer_norm (annjax.nn.normalization).

Oracle: flax.linen.LayerNorm with the same ε, scale and bias, to 1e-5 (flax
computes Var as E[x²] − E[x]², annjax as E[(x − μ)²]: float32 rounding apart,
kept small by inputs of mean 0.5, not far from 0);
gradients by ``check_grads`` in float64.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann


@pytest.mark.parametrize("shape", [(6,), (4, 5, 3)])
@pytest.mark.parametrize(
    ("use_scale", "use_bias"), [(True, True), (False, True), (True, False)]
)
def test_layer_norm_matches_flax(key, shape, use_scale, use_bias):
    layer = ann.layer_norm(eps=1e-5, use_scale=use_scale, use_bias=use_bias)
    out_shape, params, state = layer.init(key, shape)
    k1, k2, k3 = jax.random.split(key, 3)
    if use_scale:
        params["scale"] = 1 + 0.1 * jax.random.normal(k1, params["scale"].shape)
    if use_bias:
        params["bias"] = 0.1 * jax.random.normal(k2, params["bias"].shape)
    x = 0.5 + 2.0 * jax.random.normal(k3, (2, *shape))
    y, new_state = layer.apply(params, state, x, train=True)
    flax = nn.LayerNorm(epsilon=1e-5, use_scale=use_scale, use_bias=use_bias)
    y_flax = flax.apply({"params": params}, x)
    assert y.shape == (2, *out_shape) and new_state == {}
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_flax), atol=1e-5)
    y_eval, _ = layer.apply(params, state, x)  # no state: the same in both modes
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_eval))


def test_layer_norm_default_eps_is_flax(key):
    layer = ann.layer_norm()
    _, params, state = layer.init(key, (3,))
    x = jnp.array([[0.0, 0.0, 1e-3]])  # variance 2e-7: ε = 1e-6 dominates
    y, _ = layer.apply(params, state, x)
    y_flax = nn.LayerNorm().apply({"params": params}, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_flax), atol=1e-5)


def test_layer_norm_gradients_float64(check_grads64, key):
    layer = ann.layer_norm()
    _, params, _ = layer.init(key, (2, 5))
    x = jax.random.normal(key, (3, 2, 5))

    def f(scale, bias, x):
        return layer.apply({"scale": scale, "bias": bias}, {}, x)[0]

    check_grads64(f, (params["scale"] + 0.5, params["bias"] + 0.1, x))


def test_layer_norm_errors(key):
    with pytest.raises(ValueError, match="layer_norm eps"):
        ann.layer_norm(eps=0.0)
    with pytest.raises(TypeError, match="layer_norm eps"):
        ann.layer_norm(eps="small")
    with pytest.raises(ValueError, match="layer_norm input_shape"):
        ann.layer_norm().init(key, ())
    _, params, state = ann.layer_norm().init(key, (4,))
    with pytest.raises(ValueError, match="expected a batch whose last axis has 4"):
        ann.layer_norm().apply(params, state, jnp.ones((2, 5)))
    assert ann.layer_norm() == ann.layer_norm(1e-6)
