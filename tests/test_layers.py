"""Tests for annjax.nn.layers and annjax.nn.normalization (dense, dropout, batch norm…).

Oracles: NumPy for the lecture's formula y = f(Wx + b), flax.linen for Dense,
Dropout and BatchNorm, float64 finite differences for gradients.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from annjax import nn as layers
from annjax._types import Layer

KEY = jax.random.key(0)
# Every test here runs under strict dtype promotion: an implicit float32 →
# float64 (or int → float) promotion inside a layer fails loudly.
pytestmark = pytest.mark.usefixtures("strict_promotion")


def _batch(shape, seed=0, loc=0.0, scale=1.0):
    """Returns a float32 array of normal samples with the given full shape."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(loc, scale, shape), jnp.float32)


def _shapes(tree):
    return jax.tree.map(lambda a: tuple(a.shape), tree)


# --------------------------------------------------------------------- init shapes

SHAPE_CASES = [
    ("dense (n,)", lambda: layers.dense(3), (4,)),
    ("dense (t, n)", lambda: layers.dense(3, activation="relu"), (2, 4)),
    ("activation relu", lambda: layers.activation("relu"), (4,)),
    ("activation leaky", lambda: layers.activation("leaky_relu", alpha=0.1), (2, 4)),
    ("activation softmax", lambda: layers.activation("softmax"), (4,)),
    ("flatten (H, W, C)", layers.flatten, (2, 3, 4)),
    ("dropout", lambda: layers.dropout(0.3), (4,)),
    ("batch_norm (features,)", layers.batch_norm, (4,)),
    ("batch_norm (H, W, C)", layers.batch_norm, (2, 3, 4)),
    ("batch_norm axis=1 (C, L)", lambda: layers.batch_norm(axis=1), (4, 3)),
]


@pytest.mark.parametrize(
    ("make", "in_shape"),
    [c[1:] for c in SHAPE_CASES],
    ids=[c[0] for c in SHAPE_CASES],
)
@pytest.mark.parametrize("train", [False, True])
def test_init_shape_equals_apply_shape(make, in_shape, train):
    layer = make()
    assert isinstance(layer, Layer)
    out_shape, params, state = layer.init(KEY, in_shape)
    assert isinstance(out_shape, tuple)
    x = _batch((5, *in_shape))
    y, new_state = layer.apply(params, state, x, key=jax.random.key(1), train=train)
    assert y.shape == (5, *out_shape)
    # State keeps its structure and shapes (so it can be carried through a scan).
    assert _shapes(new_state) == _shapes(state)
    assert bool(jnp.all(jnp.isfinite(y)))


def test_flatten_values_are_a_row_major_reshape():
    x = _batch((5, 2, 3, 4))
    out_shape, params, state = layers.flatten().init(KEY, (2, 3, 4))
    y, _ = layers.flatten().apply(params, state, x)
    assert out_shape == (24,)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x).reshape(5, 24))


# -------------------------------------------------------------------------- dense


@pytest.mark.parametrize(
    ("act", "np_f"),
    [
        (None, lambda z: z),
        ("relu", lambda z: np.maximum(z, 0.0)),
        ("tanh", np.tanh),
        ("sigmoid", lambda z: 1.0 / (1.0 + np.exp(-z))),
    ],
)
def test_dense_is_f_of_x_wt_plus_b_with_w_stored_out_in(act, np_f):
    layer = layers.dense(3, activation=act, b_init="lecture_uniform")
    out_shape, params, state = layer.init(KEY, (4,))
    assert out_shape == (3,)
    assert params["w"].shape == (3, 4)  # (out, in), the lecture's W
    assert params["b"].shape == (3,)
    assert state == {}
    x = _batch((5, 4), seed=1)
    y, _ = layer.apply(params, state, x)
    w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
    # Per example: y = f(W x + b), the matrix form of the lecture.
    expected = np.stack([np_f(w @ xi + b) for xi in np.asarray(x, np.float64)])
    # float32 against a float64 reference: a few ulps of the float32 result.
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)
    assert layer.kind == "dense"
    assert layer.activation == act


def test_dense_on_sequences_transforms_the_last_axis():
    layer = layers.dense(3)
    out_shape, params, state = layer.init(KEY, (2, 4))
    assert out_shape == (2, 3)
    x = _batch((5, 2, 4))
    y, _ = layer.apply(params, state, x)
    expected = np.einsum("btn,mn->btm", np.asarray(x), np.asarray(params["w"]))
    np.testing.assert_allclose(
        np.asarray(y), expected + np.asarray(params["b"]), rtol=1e-5, atol=1e-6
    )


def test_dense_matches_flax_dense_with_kernel_w_transposed():
    layer = layers.dense(3, b_init="lecture_uniform")
    _, params, state = layer.init(KEY, (4,))
    x = _batch((5, 4), seed=2)
    y, _ = layer.apply(params, state, x)
    # flax stores the kernel (in, out); the same map has kernel = Wᵀ.
    flax_vars = {"params": {"kernel": params["w"].T, "bias": params["b"]}}
    y_flax = nn.Dense(3).apply(flax_vars, x)
    # Tolerance 1e-6: the same float32 products, summed perhaps in another order
    # because the operand layouts differ; a wrong transpose or bias is O(1).
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_flax), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("act", "rule"),
    [
        ("relu", "he"),
        ("leaky_relu", "he"),
        ("elu", "he"),
        (None, "xavier"),
        ("tanh", "xavier"),
        ("sigmoid", "xavier"),
    ],
)
def test_dense_default_init_is_he_for_relu_family_else_xavier(act, rule, key):
    fan_in, fan_out = 250, 1000  # fan_in != fan_out, so a swapped fan shows
    _, params, _ = layers.dense(fan_out, activation=act).init(key, (fan_in,))
    w = np.asarray(params["w"], np.float64)
    assert w.shape == (fan_out, fan_in)
    expected = 2.0 / fan_in if rule == "he" else 2.0 / (fan_in + fan_out)
    # 250 000 samples: the sample variance is within ~0.3 % (1 σ) of the truth;
    # the alternatives (He ↔ Xavier, fan_out for fan_in) are off by 1.25-5x.
    np.testing.assert_allclose(w.var(), expected, rtol=0.03)
    assert abs(w.mean()) < 0.01 * np.sqrt(expected)
    if rule == "xavier":  # Xavier/Glorot *uniform*: bounded by √(6/(in+out))
        assert np.abs(w).max() <= np.sqrt(6.0 / (fan_in + fan_out))
    else:  # He *normal* has tails a uniform of the same variance lacks
        assert np.abs(w).max() > np.sqrt(3.0 * expected)


@pytest.mark.parametrize(
    ("name", "variance", "bound"),
    [
        ("he_uniform", 2.0 / 250, np.sqrt(6.0 / 250)),
        ("xavier_normal", 2.0 / 1250, None),
        ("lecture_uniform", 1.0 / 12.0, 0.5),
    ],
)
def test_dense_w_init_by_name(name, variance, bound, key):
    _, params, _ = layers.dense(1000, w_init=name).init(key, (250,))
    w = np.asarray(params["w"], np.float64)
    np.testing.assert_allclose(w.var(), variance, rtol=0.03)
    if bound is not None:
        assert np.abs(w).max() <= bound


def test_dense_w_init_by_function_gets_the_out_in_shape():
    calls = []

    def ones(key, shape, dtype=jnp.float32):
        calls.append(tuple(shape))
        return jnp.full(shape, 0.5, dtype)

    layer = layers.dense(3, w_init=ones)
    _, params, state = layer.init(KEY, (4,))
    assert calls == [(3, 4)]
    np.testing.assert_array_equal(np.asarray(params["w"]), np.full((3, 4), 0.5))
    y, _ = layer.apply(params, state, jnp.ones((5, 4)))
    np.testing.assert_allclose(np.asarray(y), np.full((5, 3), 2.0))


def test_dense_without_bias_has_no_b():
    layer = layers.dense(3, use_bias=False)
    _, params, state = layer.init(KEY, (4,))
    assert set(params) == {"w"}
    x = _batch((5, 4))
    y, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(x) @ np.asarray(params["w"]).T, rtol=1e-5, atol=1e-6
    )


def test_dense_accepts_an_activation_callable():
    layer = layers.dense(3, activation=jnp.sin)
    _, params, state = layer.init(KEY, (4,))
    x = _batch((5, 4))
    y, _ = layer.apply(params, state, x)
    z = x @ params["w"].T + params["b"]
    np.testing.assert_allclose(np.asarray(y), np.asarray(jnp.sin(z)), rtol=1e-6)


def test_dense_gradients_float64(check_grads64):
    layer = layers.dense(3, activation="tanh", b_init="lecture_uniform")
    _, params, state = layer.init(KEY, (4,))
    x = np.random.default_rng(3).normal(size=(5, 4))  # tanh: smooth, no kinks

    def f(w, b, x):
        return layer.apply({"w": w, "b": b}, state, x)[0]

    # Second order, forward and reverse mode, in float64 (the fixture enables
    # x64 for this test only and converts the arguments).
    check_grads64(f, (params["w"], params["b"], x))


# --------------------------------------------------------------------- activation


@pytest.mark.parametrize(
    ("name", "reference", "kind"),
    [
        ("relu", jax.nn.relu, "relu"),
        ("sigmoid", jax.nn.sigmoid, "sigmoid"),
        ("logistic", jax.nn.sigmoid, "sigmoid"),
        ("tanh", jnp.tanh, "tanh"),
        ("softmax", jax.nn.softmax, "softmax"),
    ],
)
def test_activation_layer_applies_the_function_and_names_itself(name, reference, kind):
    layer = layers.activation(name)
    assert layer.kind == kind
    assert layer.activation == kind
    out_shape, params, state = layer.init(KEY, (4,))
    assert (out_shape, params, state) == ((4,), {}, {})
    x = _batch((5, 4))
    y, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(reference(x)), rtol=1e-6)


def test_activation_layer_passes_keyword_arguments():
    layer = layers.activation("leaky_relu", alpha=0.1)
    _, params, state = layer.init(KEY, (3,))
    y, _ = layer.apply(params, state, jnp.array([[-2.0, 0.5, -1.0]]))
    np.testing.assert_allclose(np.asarray(y), [[-0.2, 0.5, -0.1]], rtol=1e-6)


# ------------------------------------------------------------------------ dropout


def _dropout_apply(rate, x, key=KEY, train=True):
    layer = layers.dropout(rate)
    _, params, state = layer.init(KEY, x.shape[1:])
    y, new_state = layer.apply(params, state, x, key=key, train=train)
    assert new_state == state
    return y


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_dropout_is_the_identity_in_evaluation(rate):
    x = _batch((5, 4))
    # No key is needed when nothing is random.
    y = _dropout_apply(rate, x, key=None, train=False)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


def test_dropout_rate_zero_is_the_identity_in_training():
    x = _batch((5, 4))
    np.testing.assert_array_equal(
        np.asarray(_dropout_apply(0.0, x, key=None)), np.asarray(x)
    )


def test_dropout_rate_one_gives_zeros_not_nan():
    x = _batch((5, 4))
    y = _dropout_apply(1.0, x)
    assert not bool(jnp.any(jnp.isnan(y)))
    np.testing.assert_array_equal(np.asarray(y), np.zeros((5, 4)))
    # Also through the gradient: 0 · inf would give NaN.
    g = jax.grad(lambda x: _dropout_apply(1.0, x).sum())(x)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_dropout_scales_survivors_by_one_over_one_minus_rate():
    rate = 0.25
    x = _batch((100, 100), loc=3.0)  # away from 0, so a kept unit is never 0
    y = np.asarray(_dropout_apply(rate, x))
    kept = y != 0.0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / (1 - rate), rtol=1e-6)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropout_drops_a_fraction_rate_and_keeps_the_mean(rate, key):
    # 10^6 units: the kept fraction has a standard error ≤ 5e-4, so ± 0.005 is
    # ≥ 10 σ and still fails for a keep-probability convention (|1 − 2·rate| ≥ 0.6).
    x = jnp.ones((1000, 1000), jnp.float32)
    y = np.asarray(_dropout_apply(rate, x, key=key))
    kept = (y != 0.0).mean()
    assert abs(kept - (1.0 - rate)) < 0.005
    # E[y] = x: the standard error of the mean is ≤ 0.002 here.
    assert abs(y.mean() - 1.0) < 0.01


def test_dropout_masks_depend_on_the_key():
    x = jnp.ones((100, 100), jnp.float32)
    y1 = np.asarray(_dropout_apply(0.5, x, key=jax.random.key(1)))
    y2 = np.asarray(_dropout_apply(0.5, x, key=jax.random.key(2)))
    y1_again = np.asarray(_dropout_apply(0.5, x, key=jax.random.key(1)))
    assert (y1 != y2).any()
    np.testing.assert_array_equal(y1, y1_again)


def test_dropout_matches_flax_dropout_in_evaluation():
    x = _batch((5, 4))
    y_flax = nn.Dropout(0.3, deterministic=True).apply({}, x)
    y = _dropout_apply(0.3, x, train=False)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_flax))


def test_dropout_training_without_key_raises():
    layer = layers.dropout(0.5)
    _, params, state = layer.init(KEY, (4,))
    with pytest.raises(ValueError, match="key"):
        layer.apply(params, state, jnp.ones((2, 4)), train=True)


# --------------------------------------------------------------------- batch norm


def _random_affine(n, seed):
    rng = np.random.default_rng(seed)
    return {
        "scale": jnp.asarray(rng.normal(1.0, 0.3, n), jnp.float32),
        "bias": jnp.asarray(rng.normal(0.0, 0.3, n), jnp.float32),
    }


@pytest.mark.parametrize(
    ("batch_shape", "axis", "momentum"),
    [
        ((16, 4), -1, 0.99),
        ((16, 4), -1, 0.9),
        ((8, 2, 3, 4), -1, 0.99),
        ((8, 4, 3), 1, 0.99),
    ],
    ids=[
        "(batch, features)",
        "(batch, features) momentum=0.9",
        "(batch, H, W, C)",
        "axis=1 (batch, C, L)",
    ],
)
def test_batch_norm_matches_flax_in_training_and_evaluation(
    batch_shape, axis, momentum
):
    n = batch_shape[axis]
    layer = layers.batch_norm(momentum=momentum, eps=1e-5, axis=axis)
    out_shape, params, state = layer.init(KEY, batch_shape[1:])
    assert out_shape == batch_shape[1:]
    assert _shapes(params) == {"scale": (n,), "bias": (n,)}
    assert _shapes(state) == {"mean": (n,), "var": (n,)}
    params = _random_affine(n, seed=0)  # γ, β away from 1, 0 so both are tested

    flax_train = nn.BatchNorm(
        use_running_average=False, momentum=momentum, epsilon=1e-5, axis=axis
    )
    flax_vars = {"params": params, "batch_stats": state}
    # Tolerance 1e-5: flax computes Var as E[x²] − E[x]², annjax as E[(x − μ)²];
    # in float32 on O(1)-scaled data these differ by a few ulps; a wrong
    # momentum convention or an unbiased variance is off by ≥ 1e-3.
    for step in range(3):
        x = _batch(batch_shape, seed=10 + step, loc=1.0 + step, scale=2.0)
        y, state = layer.apply(params, state, x, train=True)
        y_flax, updates = flax_train.apply(flax_vars, x, mutable=["batch_stats"])
        flax_vars = {"params": params, **updates}
        np.testing.assert_allclose(np.asarray(y), np.asarray(y_flax), atol=1e-5)
        for stat in ("mean", "var"):
            np.testing.assert_allclose(
                np.asarray(state[stat]),
                np.asarray(flax_vars["batch_stats"][stat]),
                atol=1e-5,
            )
    # The running statistics really moved (so the comparison above is not 0 = 0).
    assert float(jnp.abs(state["mean"]).min()) > 1e-3

    flax_eval = nn.BatchNorm(
        use_running_average=True, momentum=momentum, epsilon=1e-5, axis=axis
    )
    x = _batch(batch_shape, seed=99, loc=-1.0)
    y, state_after = layer.apply(params, state, x, train=False)
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(flax_eval.apply(flax_vars, x)), atol=1e-5
    )
    # Evaluation leaves the running statistics alone.
    for stat in ("mean", "var"):
        np.testing.assert_array_equal(
            np.asarray(state_after[stat]), np.asarray(state[stat])
        )


def test_batch_norm_training_output_is_normalised_per_feature():
    layer = layers.batch_norm(axis=1)
    _, params, state = layer.init(KEY, (4, 3))
    x = _batch((8, 4, 3), loc=5.0, scale=4.0)
    y, _ = layer.apply(params, state, x, train=True)
    y = np.asarray(y, np.float64)
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.var(axis=(0, 2)), 1.0, atol=1e-3)


def test_batch_norm_gradients_in_training_float64(check_grads64):
    layer = layers.batch_norm()
    _, _, state = layer.init(KEY, (4,))
    affine = _random_affine(4, 1)
    x = np.random.default_rng(4).normal(size=(5, 4))
    state = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), state)

    def f(scale, bias, x):
        params = {"scale": scale, "bias": bias}
        return layer.apply(params, state, x, train=True)[0]

    check_grads64(f, (affine["scale"], affine["bias"], x))


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize("units", [0, -3])
def test_dense_units_below_one_raises(units):
    with pytest.raises(ValueError, match=r"dense units: expected an integer >= 1"):
        layers.dense(units)


@pytest.mark.parametrize("units", [2.5, "3", True, None])
def test_dense_non_integer_units_raises_type_error(units):
    with pytest.raises(TypeError, match="dense units"):
        layers.dense(units)


def test_unknown_activation_name_raises():
    with pytest.raises(ValueError, match="relux"):
        layers.dense(3, activation="relux")
    with pytest.raises(ValueError, match=r"expected one of .*relu"):
        layers.activation("relux")


def test_unknown_initializer_name_raises():
    with pytest.raises(ValueError, match=r"initializer.*he_normal.*got 'gaussian'"):
        layers.dense(3, w_init="gaussian")
    with pytest.raises(ValueError, match="initializer"):
        layers.dense(3, b_init="gaussian")


def test_dense_on_wrong_input_width_names_both_shapes():
    layer = layers.dense(3)
    _, params, state = layer.init(KEY, (4,))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
        layer.apply(params, state, jnp.ones((5, 6)))


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_dropout_rate_outside_unit_interval_raises(rate):
    with pytest.raises(ValueError, match=r"dropout rate: expected .*\[0, 1\]"):
        layers.dropout(rate)


def test_dropout_rate_of_wrong_type_raises():
    with pytest.raises(TypeError, match="dropout rate"):
        layers.dropout("0.5")


@pytest.mark.parametrize("momentum", [1.0, -0.1, 1.5])
def test_batch_norm_momentum_outside_range_raises(momentum):
    with pytest.raises(ValueError, match=r"batch_norm momentum: expected .*\[0, 1\)"):
        layers.batch_norm(momentum=momentum)


@pytest.mark.parametrize("eps", [0.0, -1e-5])
def test_batch_norm_non_positive_eps_raises(eps):
    with pytest.raises(ValueError, match="batch_norm eps: expected a number > 0"):
        layers.batch_norm(eps=eps)


@pytest.mark.parametrize("axis", [0, 2, -3])
def test_batch_norm_invalid_axis_raises_at_init(axis):
    with pytest.raises(ValueError, match="batch_norm axis"):
        layers.batch_norm(axis=axis).init(KEY, (4,))
