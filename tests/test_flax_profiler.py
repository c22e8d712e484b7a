"""Tests of the profiler inside ``from_flax`` models (linen and nnx).

A flax module applies its activations as functions, which ``from_flax`` taps
from the traced program (:mod:`annjax.nn._activation_taps`). Oracle: the same
dead and saturated fractions computed by hand, with NumPy, from the module's
own intermediates (linen's ``capture_intermediates``; nnx's submodules called
one by one) through the profiler's definitions.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import annjax as ann
from annjax.analysis import profiler
from annjax.nn import from_flax

KEY = jax.random.key(0)
DEAD_BIAS = np.array([-100.0, -100.0, 0.0, 0.0], np.float32)  # 2 of 4 channels


def _dead_bias(key, shape, dtype=jnp.float32):
    return jnp.asarray(DEAD_BIAS, dtype)


def _dead(y) -> float:
    """By hand: a channel is dead when it is <= 0 for every example and position."""
    y = np.asarray(y)
    return float(np.mean(np.all(y <= 0, axis=tuple(range(y.ndim - 1)))))


def _saturation(y) -> float:
    """By hand: sigmoid units whose derivative y(1 − y) is below 0.05 · 1/4."""
    y = np.asarray(y, np.float64)
    return float(np.mean(y * (1 - y) < profiler.SATURATION_THRESHOLD * 0.25))


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Dense(6)(x))


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), bias_init=_dead_bias)(x))
        x = x.reshape((x.shape[0], -1))
        x = nn.sigmoid(nn.Dense(8, kernel_init=nn.initializers.normal(3.0))(x))
        x = nn.swish(nn.Dense(8)(x))  # gated: no activation to measure
        x = nn.gelu(x)  # gated (tanh form) too
        return nn.Dense(2)(Block()(x))


def _images(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 6, 1)).astype("f4")
    return x, (x[:, 0, 0, 0] > 0).astype("i4")


def test_linen_taps_equal_the_modules_intermediates_by_hand():
    module = CNN()
    layer = from_flax(module)
    _, params, state = layer.init(KEY, (6, 6, 1))
    x, y = _images()
    _, inter = module.apply(
        {"params": params}, x, capture_intermediates=True, mutable=["intermediates"]
    )
    inter = inter["intermediates"]
    relu = jax.nn.relu(inter["Conv_0"]["__call__"][0])
    sigmoid = jax.nn.sigmoid(inter["Dense_0"]["__call__"][0])
    block = inter["Block_0"]["__call__"][0]

    probe = {}
    out, _ = layer.apply(params, state, x, probe=probe)
    assert sorted(probe) == ["Block_0/relu_0", "relu_0", "sigmoid_0"]
    np.testing.assert_array_equal(probe["relu_0"].output, relu)
    np.testing.assert_array_equal(probe["sigmoid_0"].output, sigmoid)
    np.testing.assert_array_equal(probe["Block_0/relu_0"].output, block)
    np.testing.assert_array_equal(out, module.apply({"params": params}, x))

    flow = ann.gradient_flow(layer, params, state, (x, y))  # jit + grad
    assert flow["dead_fraction/relu_0"] == _dead(relu) == 0.5
    assert flow["saturation/sigmoid_0"] == pytest.approx(_saturation(sigmoid))
    assert flow["saturation/sigmoid_0"] > 0
    # float32 mean against a float64 one
    assert flow["dead_fraction/Block_0/relu_0"] == pytest.approx(_dead(block))


def test_fit_reports_the_dead_relus_of_a_flax_cnn_per_epoch():
    x, y = _images(40)
    model = ann.serial(from_flax(CNN()), ann.activation("relu"))
    result = ann.fit(
        model, (x, y), epochs=2, batch_size=20, track_gradients=True, progress=False
    )
    # the two channels with bias -100 get no gradient: dead in every step
    np.testing.assert_array_equal(result.history["dead_fraction/cnn_0/relu_0"], 0.5)
    for name in ("saturation/cnn_0/sigmoid_0", "dead_fraction/cnn_0/Block_0/relu_0"):
        assert result.history[name].shape == (2,)
    assert "dead_fraction/relu_1" in result.history  # annjax's own tap beside
    assert not any("swish" in k or "gelu" in k for k in result.history)


class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.conv.bias[...] = jnp.asarray(DEAD_BIAS)
        self.dense = nnx.Linear(144, 5, rngs=rngs)
        self.out = nnx.Linear(5, 2, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.conv(x)).reshape((x.shape[0], -1))
        return self.out(nnx.tanh(self.dense(h)))


def test_nnx_taps_equal_its_submodules_called_by_hand():
    module = NNXNet(nnx.Rngs(0))
    layer = from_flax(module)
    _, params, state = layer.init(KEY, (6, 6, 1))
    x, y = _images()
    relu = nnx.relu(module.conv(x))
    tanh = nnx.tanh(module.dense(relu.reshape((x.shape[0], -1))))
    probe = {}
    layer.apply(params, state, x, probe=probe)
    assert sorted(probe) == ["relu_0", "tanh_0"]
    np.testing.assert_allclose(probe["relu_0"].output, relu, rtol=1e-6)
    np.testing.assert_allclose(probe["tanh_0"].output, tanh, rtol=1e-6)
    flow = ann.gradient_flow(layer, params, state, (x, y))
    assert flow["dead_fraction/relu_0"] == _dead(relu) == 0.5
    tanh_saturated = np.mean(1 - np.square(np.asarray(tanh, np.float64)) < 0.05)
    assert flow["saturation/tanh_0"] == pytest.approx(tanh_saturated)


def test_a_module_without_activations_records_nothing():
    layer = from_flax(nn.Dense(3))
    _, params, state = layer.init(KEY, (4,))
    probe = {}
    layer.apply(params, state, jnp.ones((2, 4)), probe=probe)
    assert probe == {}


def test_gated_units_are_skipped_and_a_gate_from_elsewhere_is_kept():
    from annjax.nn._activation_taps import call_with_taps

    def fn(a, b):
        swish = a * jax.nn.sigmoid(a)  # gated by its own input: skipped
        gelu = jax.nn.gelu(b)  # tanh form: skipped
        lstm = jax.nn.sigmoid(b) * jnp.tanh(a + 1.0)  # two gates, kept
        return jax.nn.relu(swish + gelu + lstm)

    a, b = jnp.linspace(-2, 2, 6).reshape(2, 3), jnp.ones((2, 3))
    out, taps = call_with_taps(fn, a, b)
    np.testing.assert_allclose(out, fn(a, b), rtol=1e-6)
    assert sorted(taps) == ["relu_0", "sigmoid_0", "tanh_0"]
    np.testing.assert_allclose(taps["tanh_0"].output, jnp.tanh(a + 1.0), rtol=1e-6)
    assert taps["relu_0"].activation == "relu"
