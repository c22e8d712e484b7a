"""Tests of label smoothing in annjax.losses.softmax_cross_entropy.

Oracle: ``optax.smooth_labels`` followed by ``optax.softmax_cross_entropy``
(the issue's definition), on one-hot and on integer labels; gradients against
float64 finite differences.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from annjax import losses

pytestmark = pytest.mark.usefixtures("strict_promotion")

BATCH, K = 6, 4
RTOL = 1e-5  # float32 against the same float32 optax ops: a few ulps


@pytest.fixture
def data(seed):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(size=(BATCH, K)) * 3, jnp.float32)
    labels = jnp.asarray(rng.integers(0, K, BATCH), jnp.int32)
    return labels, jax.nn.one_hot(labels, K, dtype=jnp.float32), logits


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 1.0])
def test_equals_optax_smooth_labels_then_cross_entropy(data, alpha):
    labels, one_hot, logits = data
    oracle = optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot, alpha))
    for targets in (one_hot, labels):
        got = losses.softmax_cross_entropy(
            targets, logits, reduction="none", label_smoothing=alpha
        )
        np.testing.assert_allclose(got, oracle, rtol=RTOL)
    mean = losses.get("softmax_cross_entropy")(labels, logits, label_smoothing=alpha)
    np.testing.assert_allclose(mean, np.mean(oracle), rtol=RTOL)


def test_smoothing_changes_the_loss_and_its_gradient_is_softmax_minus_smoothed(data):
    labels, one_hot, logits = data
    plain = losses.softmax_cross_entropy(labels, logits)
    smooth = losses.softmax_cross_entropy(labels, logits, label_smoothing=0.2)
    assert float(plain) != pytest.approx(float(smooth))
    grad = jax.grad(
        lambda z: losses.softmax_cross_entropy(labels, z, "sum", label_smoothing=0.2)
    )(logits)
    target = 0.8 * one_hot + 0.2 / K
    np.testing.assert_allclose(grad, jax.nn.softmax(logits) - target, atol=1e-6)


def test_gradients_match_finite_differences(data, check_grads64):
    labels, one_hot, logits = data

    def loss(z, y):
        return losses.softmax_cross_entropy(y, z, label_smoothing=0.1)

    check_grads64(lambda z: loss(z, labels), (logits,))
    check_grads64(loss, (logits, one_hot))


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_outside_the_unit_interval_raises(data, alpha):
    labels, _, logits = data
    with pytest.raises(
        ValueError, match=r"softmax_cross_entropy label_smoothing: expected a prob"
    ):
        losses.softmax_cross_entropy(labels, logits, label_smoothing=alpha)


def test_a_non_number_raises_type_error(data):
    labels, _, logits = data
    with pytest.raises(TypeError, match="label_smoothing: expected a real number"):
        losses.softmax_cross_entropy(labels, logits, label_smoothing="0.1")


@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0])
def test_check_label_smoothing_returns_an_alpha_in_the_unit_interval(alpha):
    assert losses.check_label_smoothing(alpha) == alpha


def test_check_label_smoothing_names_the_argument_in_its_errors():
    with pytest.raises(ValueError, match=r"my alpha: expected a probability"):
        losses.check_label_smoothing(1.5, "my alpha")
    with pytest.raises(ValueError, match=r"my alpha: expected a probability"):
        losses.check_label_smoothing(-0.1, "my alpha")
    with pytest.raises(TypeError, match="my alpha: expected a real number"):
        losses.check_label_smoothing("0.1", "my alpha")
