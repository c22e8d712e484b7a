"""Tests of annjax.initializers: variances on (out, in) weights, ranges, registry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from annjax import initializers

# Implicit int → float or float32 → float64 promotions fail loudly here.
pytestmark = pytest.mark.usefixtures("strict_promotion")

# W is (m outputs, n inputs). fan_in ≠ fan_out, so an initializer that reads the
# fans from the wrong axes (jax's (in, out) default) is off by 4x and fails.
FAN_OUT, FAN_IN = 512, 2000
SHAPE = (FAN_OUT, FAN_IN)

# Expected variance of each initializer for SHAPE.
VARIANCES = {
    "he_normal": 2 / FAN_IN,
    "he_uniform": 2 / FAN_IN,
    "xavier_normal": 2 / (FAN_IN + FAN_OUT),
    "xavier_uniform": 2 / (FAN_IN + FAN_OUT),
    "lecun_normal": 1 / FAN_IN,
    "lecun_uniform": 1 / FAN_IN,
    "lecture_uniform": 1 / 12,
}


@pytest.mark.parametrize("name", sorted(VARIANCES))
def test_variance_uses_the_right_fans(name, key):
    # ~1e6 samples: the sample variance has a relative standard error of
    # sqrt(2/n) ≈ 0.14% (less for uniform), so 3% is > 20 sigma yet far below
    # the 4x error of swapped fans (or the 1.6x between He and Xavier).
    W = initializers.get(name)(key, SHAPE)
    assert W.shape == SHAPE
    assert W.dtype == jnp.float32
    assert float(jnp.var(W)) == pytest.approx(VARIANCES[name], rel=0.03)
    assert abs(float(jnp.mean(W))) < 5 * np.sqrt(VARIANCES[name] / W.size)


@pytest.mark.parametrize("name", ["he_normal", "xavier_normal"])
def test_variance_is_not_that_of_swapped_axes(name, key):
    # The transposed shape has swapped fans: a correct initializer changes its
    # variance with the shape (by 4x for He), a swapped one would keep it.
    W = initializers.get(name)(key, SHAPE)
    Wt = initializers.get(name)(key, SHAPE[::-1])
    if name == "he_normal":
        assert float(jnp.var(Wt) / jnp.var(W)) == pytest.approx(
            FAN_IN / FAN_OUT, rel=0.05
        )
    else:  # Xavier depends on fan_in + fan_out only: symmetric in the axes
        assert float(jnp.var(Wt) / jnp.var(W)) == pytest.approx(1.0, rel=0.05)


def test_lecture_uniform_range_mean_and_variance(key):
    W = initializers.lecture_uniform(key, SHAPE)
    assert float(W.min()) >= -0.5
    assert float(W.max()) < 0.5
    assert float(W.min()) < -0.499 and float(W.max()) > 0.499  # fills the range
    # Var(mean) = 1/(12 n): 5 sigma ≈ 1.4e-3.
    assert abs(float(W.mean())) < 5 * np.sqrt(1 / 12 / W.size)
    assert float(W.var()) == pytest.approx(1 / 12, rel=0.01)


@pytest.mark.parametrize(("low", "high"), [(-1.0, 1.0), (0.0, 2.0)])
def test_uniform_with_bounds(low, high, key):
    W = initializers.uniform(low, high)(key, (1000, 100))
    assert float(W.min()) >= low and float(W.max()) < high
    assert float(W.mean()) == pytest.approx((low + high) / 2, abs=0.02 * (high - low))


def test_uniform_rejects_empty_range():
    with pytest.raises(
        ValueError, match=r"uniform: expected low < high, got \(1.0, 1.0\)"
    ):
        initializers.uniform(1.0, 1.0)


def test_uniform_rejects_non_numbers():
    with pytest.raises(TypeError, match="low: expected a real number"):
        initializers.uniform("a", 1.0)


def test_zeros_and_dtype(key):
    W = initializers.get("zeros")(key, (3, 4), jnp.float16)
    assert W.dtype == jnp.float16
    np.testing.assert_array_equal(W, 0)


def test_same_key_same_weights(key):
    init = initializers.he_normal
    np.testing.assert_array_equal(init(key, (8, 4)), init(key, (8, 4)))
    other = init(jax.random.fold_in(key, 1), (8, 4))
    assert not np.array_equal(init(key, (8, 4)), other)


def test_get_aliases():
    assert initializers.get("glorot_uniform") is initializers.xavier_uniform
    assert initializers.get("Kaiming_Uniform") is initializers.he_uniform
    assert initializers.get("uniform") is initializers.lecture_uniform


def test_get_passes_callables_through():
    init = initializers.uniform(-1.0, 1.0)
    assert initializers.get(init) is init


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"initializer: expected one of .*he_normal.*"):
        initializers.get("he_norml")


def test_get_rejects_non_names():
    with pytest.raises(TypeError, match="initializer: expected a name or a callable"):
        initializers.get(0.5)


@pytest.mark.parametrize(
    ("activation", "expected"),
    [
        ("relu", initializers.he_normal),
        ("leaky_relu", initializers.he_normal),
        ("tanh", initializers.xavier_uniform),
        ("sigmoid", initializers.xavier_uniform),
        (None, initializers.xavier_uniform),
    ],
)
def test_default_for(activation, expected):
    assert initializers.default_for(activation) is expected
