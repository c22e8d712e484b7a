"""Tests of annjax.losses: optax and NumPy oracles, reductions, gradients, errors."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from annjax import activations, losses

# Implicit int → float or float32 → float64 promotions fail loudly here.
pytestmark = pytest.mark.usefixtures("strict_promotion")

BATCH, K = 6, 4

# Float32 losses against float64 oracles: a few ulps, relative.
RTOL = 1e-5


# Data from NumPy's generator (seeded by the reported `seed` fixture): no jax
# random ops to compile in every fixture.


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


@pytest.fixture
def regression(rng):
    return (
        rng.normal(size=(BATCH, K)).astype(np.float32),
        rng.normal(size=(BATCH, K)).astype(np.float32),
    )


@pytest.fixture
def classification(rng):
    """Integer labels, their one-hot form, logits and probabilities."""
    labels = rng.integers(0, K, BATCH).astype(np.int32)
    logits = 3 * rng.normal(size=(BATCH, K)).astype(np.float32)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return labels, np.eye(K, dtype=np.float32)[labels], logits, probs


@pytest.fixture
def binary(rng):
    """0/1 targets, logits and probabilities."""
    targets = rng.integers(0, 2, (BATCH, K)).astype(np.float32)
    logits = 3 * rng.normal(size=(BATCH, K)).astype(np.float32)
    return targets, logits, 1 / (1 + np.exp(-logits))


# --------------------------------------------------------------------------- #
# Oracles.
# --------------------------------------------------------------------------- #


def test_mse_is_the_lecture_formula_and_optax_squared_error(regression):
    y, y_hat = regression
    np_y, np_y_hat = np.asarray(y, np.float64), np.asarray(y_hat, np.float64)
    expected = np.mean((np_y - np_y_hat) ** 2)
    assert float(losses.mse(y, y_hat)) == pytest.approx(expected, rel=RTOL)
    # optax.l2_loss is half the squared error; squared_error is the summand.
    optax_mse = jnp.mean(optax.squared_error(y_hat, y))
    assert float(losses.mse(y, y_hat)) == pytest.approx(float(optax_mse), rel=RTOL)
    assert float(losses.mse(y, y_hat)) == pytest.approx(
        2 * float(jnp.mean(optax.l2_loss(y_hat, y))), rel=RTOL
    )


def test_mae_is_the_lecture_formula(regression):
    y, y_hat = regression
    expected = np.mean(np.abs(np.asarray(y, np.float64) - np.asarray(y_hat)))
    assert float(losses.mae(y, y_hat)) == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_huber_is_optax_huber_loss(regression, delta):
    y, y_hat = regression
    expected = jnp.mean(optax.huber_loss(y_hat, y, delta=delta))
    got = losses.huber(y, y_hat, delta=delta)
    assert float(got) == pytest.approx(float(expected), rel=RTOL)


def test_huber_is_half_mse_for_small_errors_and_linear_for_large():
    y = jnp.zeros(4)
    small = jnp.array([0.1, -0.2, 0.3, -0.4])
    assert float(losses.huber(y, small)) == pytest.approx(
        0.5 * float(losses.mse(y, small)), rel=RTOL
    )
    large = jnp.array([3.0, -5.0, 4.0, -6.0])  # δ(|r| − δ/2) with δ = 1
    assert float(losses.huber(y, large)) == pytest.approx(np.mean(np.abs(large) - 0.5))


def test_cross_entropy_is_the_lecture_formula(classification):
    labels, one_hot, _, probs = classification
    p = np.asarray(probs, np.float64)
    expected = -np.sum(np.asarray(one_hot) * np.log(p), axis=-1)
    got = losses.cross_entropy(one_hot, probs, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    # Integer labels pick the same entries: -log p[i, yᵢ].
    sparse = losses.cross_entropy(labels, probs, reduction="none")
    np.testing.assert_allclose(sparse, -np.log(p[np.arange(BATCH), labels]), rtol=RTOL)


def test_softmax_cross_entropy_is_optax(classification):
    labels, one_hot, logits, probs = classification
    dense = optax.softmax_cross_entropy(logits, one_hot)
    sparse = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(one_hot, logits, reduction="none"),
        dense,
        rtol=RTOL,
    )
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(labels, logits, reduction="none"),
        sparse,
        rtol=RTOL,
    )
    # and it is cross_entropy of softmax(logits), for logits of moderate size.
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(labels, logits),
        losses.cross_entropy(labels, probs),
        rtol=1e-4,
    )


def test_binary_cross_entropy_is_the_lecture_formula(binary):
    y, _, probs = binary
    p, t = np.asarray(probs, np.float64), np.asarray(y, np.float64)
    expected = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p), axis=-1)
    got = losses.binary_cross_entropy(y, probs, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-4)  # log(1 − p) near p = 1


def test_sigmoid_binary_cross_entropy_is_optax(binary):
    y, logits, probs = binary
    expected = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y), axis=-1)
    got = losses.sigmoid_binary_cross_entropy(y, logits, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    np.testing.assert_allclose(
        losses.sigmoid_binary_cross_entropy(y, logits),
        losses.binary_cross_entropy(y, probs),
        rtol=1e-4,
    )


def test_cross_entropy_of_a_perfect_prediction_is_zero():
    one_hot = jnp.eye(3)
    assert float(losses.cross_entropy(one_hot, one_hot)) == pytest.approx(0, abs=1e-6)
    assert float(losses.binary_cross_entropy(one_hot, one_hot)) == pytest.approx(
        0, abs=1e-6
    )


# --------------------------------------------------------------------------- #
# Reductions and shapes.
# --------------------------------------------------------------------------- #

# (loss, y_true, y_pred) of the same batch for every loss, features (3, 2).
_SHAPE = (BATCH, 3, 2)
_rng = np.random.default_rng(0)
_PROBS = _rng.uniform(0.05, 0.95, _SHAPE).astype(np.float32)
_VALUES = _rng.normal(size=_SHAPE).astype(np.float32)
_ONE_HOT = np.eye(2, dtype=np.float32)[_rng.integers(0, 2, _SHAPE[:-1])]
CASES = {
    "mse": (_VALUES, _VALUES[::-1]),
    "mae": (_VALUES, _VALUES[::-1]),
    "huber": (_VALUES, 2 * _VALUES[::-1]),
    "cross_entropy": (_ONE_HOT, _PROBS / _PROBS.sum(-1, keepdims=True)),
    "softmax_cross_entropy": (_ONE_HOT, _VALUES),
    "binary_cross_entropy": (_ONE_HOT, _PROBS),
    "sigmoid_binary_cross_entropy": (_ONE_HOT, _VALUES),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reductions(name):
    fn = losses.get(name)
    y, y_hat = CASES[name]
    per_example = fn(y, y_hat, reduction="none")
    assert per_example.shape == (BATCH,)
    np.testing.assert_allclose(fn(y, y_hat, "mean"), per_example.mean(), rtol=RTOL)
    np.testing.assert_allclose(
        fn(y, y_hat, reduction="sum"), per_example.sum(), rtol=RTOL
    )
    np.testing.assert_allclose(fn(y, y_hat), per_example.mean(), rtol=RTOL)


# Elementwise formulas of the pointwise losses, in NumPy (float64).
_POINTWISE = {
    "mse": lambda y, p: (y - p) ** 2,
    "mae": lambda y, p: np.abs(y - p),
    "huber": lambda y, p: np.where(
        np.abs(y - p) <= 1, 0.5 * (y - p) ** 2, np.abs(y - p) - 0.5
    ),
    "binary_cross_entropy": lambda y, p: -(y * np.log(p) + (1 - y) * np.log(1 - p)),
}


@pytest.mark.parametrize("name", sorted(_POINTWISE))
def test_pointwise_losses_average_over_feature_axes(name):
    y, y_hat = CASES[name]
    values = _POINTWISE[name](y.astype(np.float64), y_hat.astype(np.float64))
    np.testing.assert_allclose(
        losses.get(name)(y, y_hat, "none"), values.mean(axis=(1, 2)), rtol=1e-5
    )


def test_cross_entropy_sums_over_classes_and_averages_other_axes():
    y, p = CASES["cross_entropy"]
    per_position = -np.sum(y * np.log(p.astype(np.float64)), axis=-1)  # (batch, 3)
    np.testing.assert_allclose(
        losses.cross_entropy(y, p, "none"), per_position.mean(axis=1), rtol=RTOL
    )


def test_one_dimensional_targets_give_one_value_per_example():
    y, y_hat = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 5.0])
    np.testing.assert_allclose(losses.mse(y, y_hat, "none"), [0.0, 4.0, 4.0])


def test_integer_and_one_hot_labels_agree(classification):
    labels, one_hot, logits, probs = classification
    for fn, pred in [
        (losses.softmax_cross_entropy, logits),
        (losses.cross_entropy, probs),
    ]:
        np.testing.assert_allclose(
            fn(labels, pred, "none"), fn(one_hot, pred, "none"), rtol=RTOL
        )


def test_integer_targets_are_cast(strict_promotion):
    # Under strict promotion an implicit int → float promotion would raise.
    y = jnp.array([[0, 1], [1, 0]])
    p = jnp.array([[0.2, 0.8], [0.6, 0.4]])
    expected = np.mean((np.asarray(y) - np.asarray(p)) ** 2)
    assert float(losses.mse(y, p)) == pytest.approx(expected)
    assert np.isfinite(float(losses.binary_cross_entropy(y, p)))
    assert np.isfinite(float(losses.cross_entropy(jnp.array([1, 0]), p)))


# --------------------------------------------------------------------------- #
# Gradients and numerical stability.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name, check_grads64):
    # Inputs away from kinks: MAE (y = ŷ) and Huber (|y − ŷ| = δ) by construction
    # of CASES (the residuals are checked below), probabilities inside the clip.
    # Only "mean": the other reductions differ from it by a constant factor or
    # by not summing, which the reduction tests cover.
    fn = losses.get(name)
    y, y_hat = CASES[name]
    if name in ("mae", "huber"):
        residual = np.abs(y - y_hat)
        assert residual.min() > 1e-2 and np.abs(residual - 1.0).min() > 1e-2
    check_grads64(fn, (y, y_hat))


@pytest.mark.parametrize("name", sorted(losses.CLASSIFICATION & set(CASES)))
def test_gradients_of_integer_and_one_hot_labels_agree(name, classification):
    # The one-hot path is checked against finite differences above.
    labels, one_hot, logits, probs = classification
    pred = logits if name == "softmax_cross_entropy" else probs
    grad = jax.grad(losses.get(name), argnums=1)
    np.testing.assert_allclose(grad(labels, pred), grad(one_hot, pred), rtol=1e-6)


def test_softmax_cross_entropy_gradient_is_softmax_minus_labels(classification):
    _, one_hot, logits, probs = classification
    grad = jax.grad(losses.softmax_cross_entropy, argnums=1)(one_hot, logits, "sum")
    np.testing.assert_allclose(grad, probs - one_hot, atol=1e-6)


_LOGIT_LOSSES = ["softmax_cross_entropy", "sigmoid_binary_cross_entropy"]


@pytest.mark.parametrize("name", _LOGIT_LOSSES)
@pytest.mark.parametrize("size", [1e4, -1e4])
def test_logit_losses_are_finite_for_huge_logits(name, size):
    fn = losses.get(name)
    logits = jnp.array([[size, -size, 0.0], [-size, size, 0.5 * size]])
    for targets in (jnp.eye(3)[:2], jnp.eye(3)[:2][:, ::-1]):  # right and wrong
        value, grad = jax.value_and_grad(fn, argnums=1)(targets, logits)
        assert np.isfinite(float(value))
        assert bool(jnp.all(jnp.isfinite(grad)))
    if name == "softmax_cross_entropy":
        value, grad = jax.value_and_grad(fn, argnums=1)(jnp.array([1, 2]), logits)
        assert np.isfinite(float(value)) and bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy"])
def test_probability_losses_are_finite_at_zero_and_one(name):
    fn = losses.get(name)
    targets = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    for probs in (targets, targets[::-1]):  # exact hits and probability 0 on the truth
        value, grad = jax.value_and_grad(fn, argnums=1)(targets, probs)
        assert np.isfinite(float(value))
        assert bool(jnp.all(jnp.isfinite(grad)))


@given(
    hnp.arrays(
        np.float32,
        (BATCH, K),
        elements=st.floats(-1e4, 1e4, width=32, allow_subnormal=False),
    )
)
def test_softmax_cross_entropy_is_finite_and_non_negative(logits):
    labels = jnp.arange(BATCH) % K
    values = losses.softmax_cross_entropy(labels, logits, "none")
    assert bool(jnp.all(jnp.isfinite(values)))
    assert bool(jnp.all(values >= 0))


@given(hnp.arrays(np.float32, (BATCH,), elements=st.floats(-1e3, 1e3, width=32)))
def test_mse_is_symmetric_and_zero_on_the_diagonal(y):
    y_hat = jnp.asarray(y)[::-1]
    assert float(losses.mse(y, y_hat)) == float(losses.mse(y_hat, y))
    assert float(losses.mse(y, y)) == 0.0


# --------------------------------------------------------------------------- #
# Compilation.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", sorted(CASES))
def test_jitted_and_plain_calls_agree(name):
    fn = losses.get(name)
    y, y_hat = CASES[name]
    with jax.disable_jit():
        plain = fn(y, y_hat, "none")
    np.testing.assert_allclose(fn(y, y_hat, "none"), plain, rtol=1e-6)
    outer = jax.jit(lambda a, b: fn(a, b, "none"))
    np.testing.assert_allclose(outer(y, y_hat), plain, rtol=1e-6)


def test_second_call_does_not_recompile():
    y, y_hat = CASES["mse"]
    losses.mse(y, y_hat)
    size = losses.mse._cache_size()
    losses.mse(y_hat, y)
    assert losses.mse._cache_size() == size


# --------------------------------------------------------------------------- #
# Errors and registry.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", sorted(CASES))
def test_unknown_reduction(name):
    y, y_hat = CASES[name]
    with pytest.raises(ValueError, match=r"reduction: expected one of 'mean', 'sum'"):
        losses.get(name)(y, y_hat, reduction="average")


@pytest.mark.parametrize(
    "name",
    ["mse", "mae", "huber", "binary_cross_entropy", "sigmoid_binary_cross_entropy"],
)
@pytest.mark.parametrize(
    ("true_shape", "pred_shape"), [((4,), (4, 1)), ((4, 2), (4, 3)), ((5, 2), (4, 2))]
)
def test_mismatched_shapes_name_both(name, true_shape, pred_shape):
    fn = losses.get(name)
    with pytest.raises(ValueError) as info:
        fn(jnp.zeros(true_shape), jnp.full(pred_shape, 0.5))
    message = str(info.value)
    assert name in message
    assert str(true_shape) in message and str(pred_shape) in message


@pytest.mark.parametrize("name", ["cross_entropy", "softmax_cross_entropy"])
def test_categorical_shape_errors(name):
    fn = losses.get(name)
    probs = jnp.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=re.escape("(4,)") + ".*" + re.escape("(5,)")):
        fn(jnp.zeros(5, jnp.int32), probs)
    with pytest.raises(ValueError, match=r"integer class labels.*Cast the labels"):
        fn(jnp.zeros(4), probs)  # float labels of the sparse shape
    with pytest.raises(ValueError, match="a class axis"):
        fn(jnp.zeros(()), jnp.zeros(()))


def test_huber_rejects_non_positive_delta():
    with pytest.raises(ValueError, match="delta: expected a number > 0, got 0"):
        losses.huber(jnp.zeros(2), jnp.ones(2), delta=0.0)


def test_non_numeric_input_is_a_type_error():
    with pytest.raises(TypeError):
        losses.mse(np.array(["a", "b"]), jnp.zeros(2))


@pytest.mark.parametrize(
    ("alias", "fn"),
    [
        ("mean_squared_error", losses.mse),
        ("MSE", losses.mse),
        ("mean_absolute_error", losses.mae),
        ("categorical_crossentropy", losses.cross_entropy),
        ("sparse_categorical_crossentropy", losses.cross_entropy),
        ("binary_crossentropy", losses.binary_cross_entropy),
        ("huber_loss", losses.huber),
        ("sigmoid_bce", losses.sigmoid_binary_cross_entropy),
    ],
)
def test_get_aliases(alias, fn):
    assert losses.get(alias) is fn


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"loss: expected one of .*mse.*got 'msee'"):
        losses.get("msee")


def test_get_rejects_non_names():
    with pytest.raises(TypeError, match="loss: expected a name or a callable"):
        losses.get(1)


def test_get_passes_callables_through():
    assert losses.get(optax.l2_loss) is optax.l2_loss


def test_name_of():
    assert losses.name_of("categorical_crossentropy") == "cross_entropy"
    assert losses.name_of(losses.softmax_cross_entropy) == "softmax_cross_entropy"
    assert losses.name_of(optax.l2_loss) == "l2_loss"


def test_classification_set_lists_losses_that_take_class_labels():
    # Every name in CLASSIFICATION accepts integer labels; every other does not.
    probs = jnp.full((2, 3), 1 / 3)
    labels = jnp.array([0, 2])
    assert {"cross_entropy", "softmax_cross_entropy"} <= losses.CLASSIFICATION
    assert losses.CLASSIFICATION.issubset(losses.names())
    for name in losses.names():
        if name in losses.CLASSIFICATION:
            assert np.isfinite(float(losses.get(name)(labels, probs)))
        else:
            with pytest.raises(ValueError):
                losses.get(name)(labels, probs)
    assert not losses.CLASSIFICATION & losses.BINARY
    assert "binary_cross_entropy" in losses.BINARY


def test_activations_and_losses_compose():
    # softmax then cross_entropy equals softmax_cross_entropy on the logits.
    logits = jnp.array([[1.0, 2.0, 0.5]])
    probs = activations.softmax(logits)
    np.testing.assert_allclose(
        losses.cross_entropy(jnp.array([1]), probs),
        losses.softmax_cross_entropy(jnp.array([1]), logits),
        rtol=1e-6,
    )
