"""Tests of annjax.activations: formulas, gradients, properties, registry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from annjax import activations

# Implicit int → float or float32 → float64 promotions fail loudly here.
pytestmark = pytest.mark.usefixtures("strict_promotion")

# Every test in float32 uses arrays of this one shape (the property tests draw
# them), so each jitted activation compiles once for the whole file.
_SHAPE = (3, 16)
_GRID = np.linspace(-6, 6, 48).reshape(_SHAPE)


def _floats(low: float = -50.0, high: float = 50.0):
    return hnp.arrays(
        np.float32,
        _SHAPE,
        elements=st.floats(low, high, width=32, allow_subnormal=False),
    )


# Points away from 0, where relu and leaky_relu have their kink.
_AWAY_FROM_KINK = np.array([-2.5, -1.3, -0.4, 0.3, 0.9, 1.7, 3.2])

SMOOTH = [
    "sigmoid",
    "tanh",
    "softplus",
    "elu",
    "gelu",
    "swish",
    "softmax",
    "linear",
    "identity",
    "relu",  # smooth away from the kink at 0
    "leaky_relu",
]

# The lecture's formulas in NumPy (float64), the oracle for the wrappers.
NUMPY = {
    "heaviside": lambda z: np.where(z >= 0, 1.0, 0.0),
    "sign": np.sign,
    "bipolar_step": lambda z: np.where(z >= 0, 1.0, -1.0),
    "identity": lambda z: z,
    "linear": lambda z: z,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(0, z),
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.01 * z),
    "softmax": lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True),
    "elu": lambda z: np.where(z > 0, z, np.expm1(z)),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "swish": lambda z: z / (1 + np.exp(-z)),
}


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_matches_lecture_formula(name):
    # float32 against float64: a few ulps of float32.
    got = activations.get(name)(_GRID.astype(np.float32))
    np.testing.assert_allclose(got, NUMPY[name](_GRID), rtol=1e-5, atol=1e-6)


def test_step_functions_at_zero():
    # The lecture's thresholds fire at z = 0; sign is the lecture's −1, 0, 1 and
    # bipolar_step is the ±1 unit that never returns 0.
    assert activations.heaviside(0.0) == 1.0
    assert activations.sign(0.0) == 0.0
    assert activations.sign(-0.5) == -1.0
    assert activations.bipolar_step(0.0) == 1.0
    assert activations.bipolar_step(-0.5) == -1.0


def test_linear_with_slope_and_offset():
    z = jnp.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(activations.linear(z, 3.0, 0.5), [-2.5, 0.5, 6.5])


def test_gelu_matches_tanh_approximation():
    z = _GRID
    inner = np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)
    expected = 0.5 * z * (1 + np.tanh(inner))
    np.testing.assert_allclose(
        activations.gelu(z.astype(np.float32)), expected, atol=1e-6
    )


@pytest.mark.parametrize("name", SMOOTH)
def test_gradients_match_finite_differences(name, check_grads64):
    check_grads64(activations.get(name), (_AWAY_FROM_KINK,))


def test_gradients_of_linear_parameters(check_grads64):
    check_grads64(activations.linear, (_AWAY_FROM_KINK, 1.5, -0.2))


@pytest.mark.parametrize("fn", [activations.elu, activations.leaky_relu])
def test_gradients_with_respect_to_alpha(fn, check_grads64):
    check_grads64(fn, (_AWAY_FROM_KINK, 0.3))


@pytest.mark.parametrize("name", ["heaviside", "step", "sign", "bipolar_step"])
def test_step_gradients_are_zero(name):
    # Why gradient descent cannot train a threshold unit (the perceptron rule can).
    fn = activations.get(name)
    z = jnp.array([-2.0, -0.1, 0.1, 2.0])
    np.testing.assert_array_equal(jax.grad(lambda z: fn(z).sum())(z), 0.0)


def test_sigmoid_derivative_is_bounded_by_a_quarter():
    z = jnp.asarray(2 * _GRID, jnp.float32).reshape(-1)
    d = jax.vmap(jax.grad(activations.sigmoid))(z)
    assert float(d.max()) <= 0.25
    assert float(jax.grad(activations.sigmoid)(0.0)) == 0.25  # the maximum, at 0
    np.testing.assert_allclose(d, activations.sigmoid(z) * (1 - activations.sigmoid(z)))


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_sums_to_one(axis, key):
    z = 10 * jax.random.normal(key, _SHAPE)
    p = activations.softmax(z, axis=axis)
    assert bool(jnp.all(p > 0))
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-6)


def test_softmax_does_not_overflow():
    p = activations.softmax(jnp.array([1e4, 0.0, -1e4]))
    assert bool(jnp.all(jnp.isfinite(p)))
    np.testing.assert_allclose(p, [1.0, 0.0, 0.0])


@given(_floats())
def test_sigmoid_is_symmetric(z):
    np.testing.assert_allclose(
        activations.sigmoid(z) + activations.sigmoid(-z), 1.0, atol=1e-6
    )


@given(_floats())
def test_relu_is_idempotent(z):
    once = activations.relu(z)
    np.testing.assert_array_equal(activations.relu(once), once)
    assert bool(jnp.all(once >= 0))


@given(_floats())
def test_leaky_relu_with_alpha_zero_is_relu(z):
    np.testing.assert_array_equal(activations.leaky_relu(z, 0.0), activations.relu(z))


@given(_floats())
def test_tanh_is_odd(z):
    np.testing.assert_allclose(activations.tanh(-z), -activations.tanh(z), atol=1e-7)


@given(_floats(-20.0, 20.0))
def test_softplus_is_a_smooth_relu(z):
    # relu(z) ≤ softplus(z) ≤ relu(z) + log 2.
    sp, r = activations.softplus(z), activations.relu(z)
    assert bool(jnp.all(sp >= r - 1e-6))
    assert bool(jnp.all(sp <= r + np.log(2) + 1e-6))


# One name per function: aliases ("step", "logistic", "silu") are the same object.
_UNIQUE = sorted({activations.name_of(name) for name in activations.names()})


@pytest.mark.parametrize("name", _UNIQUE)
def test_jitted_and_plain_calls_agree_and_keep_the_shape(name):
    fn = activations.get(name)
    z = jnp.asarray(_GRID, jnp.float32)
    with jax.disable_jit():
        plain = fn(z)
    jitted = fn(z)
    assert jitted.shape == plain.shape == _SHAPE
    # XLA fuses the compiled version, so float32 rounding may differ by a few
    # ulps of the inputs' scale (gelu's 1 + tanh(u) cancels for negative z).
    np.testing.assert_allclose(jitted, plain, rtol=1e-6, atol=1e-6)


def test_second_call_does_not_recompile():
    z = jnp.asarray(_GRID, jnp.float32)
    activations.tanh(z)
    size = activations.tanh._cache_size()
    activations.tanh(z + 1)
    assert activations.tanh._cache_size() == size


def test_get_aliases_and_case():
    assert activations.get("logistic") is activations.sigmoid
    assert activations.get("step") is activations.heaviside
    assert activations.get("SiLU") is activations.swish
    assert activations.get("ReLU") is activations.relu


def test_get_passes_callables_through():
    def mine(z):
        return z

    assert activations.get(mine) is mine


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"activation: expected one of .*relu.*got 'rleu'"
    ):
        activations.get("rleu")


def test_get_rejects_non_names():
    with pytest.raises(TypeError, match="activation: expected a name or a callable"):
        activations.get(3)


def test_name_of():
    assert activations.name_of("logistic") == "sigmoid"
    assert activations.name_of(activations.swish) == "swish"
    assert activations.name_of("step") == "heaviside"
    assert activations.name_of(None) is None


def test_families_are_registered_names():
    assert activations.RELU_FAMILY.issubset(activations.names())
    assert activations.SATURATING.issubset(activations.names())
