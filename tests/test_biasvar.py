"""Tests of the bias–variance decomposition: mlxtend's bias_variance_decomp is the
oracle on the same predictions; the MSE identity and per-point NumPy formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann

mlxtend_evaluate = pytest.importorskip("mlxtend.evaluate")


class Recorded:
    """A scikit-learn-style estimator that delegates to ``estimator`` and keeps
    every prediction, so mlxtend's rounds can be decomposed by annjax too."""

    def __init__(self, estimator):
        self.estimator = estimator
        self.predictions = []

    def fit(self, X, y):
        self.estimator.fit(X, y)
        return self

    def predict(self, X):
        self.predictions.append(self.estimator.predict(X))
        return self.predictions[-1]


class Cubic:
    """Least-squares cubic polynomial on the first feature (float64, exact)."""

    def fit(self, X, y):
        self.coef = np.polyfit(X[:, 0], y, 3)
        return self

    def predict(self, X):
        return np.polyval(self.coef, X[:, 0])


def regression(n: int = 80, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 1))
    y = np.sin(2 * X[:, 0]) + 0.3 * rng.normal(size=n)
    return X[:60], y[:60], X[60:], y[60:]


def test_mse_equals_mlxtend_on_the_same_predictions(x64):
    # Same float64 predictions on both sides: agreement to 1e-12 (rounding only).
    X, y, Xt, yt = regression()
    recorded = Recorded(Cubic())
    expected = mlxtend_evaluate.bias_variance_decomp(
        recorded, X, y, Xt, yt, loss="mse", num_rounds=25, random_seed=3
    )
    d = ann.analysis.decompose(np.stack(recorded.predictions), yt, loss="mse")
    np.testing.assert_allclose(
        [d.expected_loss, d.bias, d.variance], expected, rtol=1e-12
    )


def test_zero_one_equals_mlxtend_on_the_same_predictions():
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 2))
    y = (X[:, 0] + 0.5 * rng.normal(size=150) > 0).astype(np.int64)
    y[::7] = 2  # three classes, so the mode is not a plain majority
    recorded = Recorded(DecisionTreeClassifier(max_depth=3, random_state=0))
    expected = mlxtend_evaluate.bias_variance_decomp(
        recorded,
        X[:100],
        y[:100],
        X[100:],
        y[100:],
        loss="0-1_loss",
        num_rounds=20,
        random_seed=0,
    )
    d = ann.analysis.decompose(np.stack(recorded.predictions), y[100:], loss="0-1")
    # Counts over 20 rounds x 50 points: float32 means agree to 1e-6.
    np.testing.assert_allclose(
        [d.expected_loss, d.bias, d.variance], expected, rtol=1e-6
    )


def test_mse_identity_and_per_point_formulas(x64):
    rng = np.random.default_rng(2)
    preds, y = rng.normal(size=(7, 30)), rng.normal(size=30)
    d = ann.analysis.decompose(preds, y)
    main = preds.mean(0)
    np.testing.assert_allclose(d.point_expected_loss, ((preds - y) ** 2).mean(0))
    np.testing.assert_allclose(d.point_bias, (main - y) ** 2)
    np.testing.assert_allclose(d.point_variance, ((preds - main) ** 2).mean(0))
    np.testing.assert_allclose(d.main_prediction, main)
    # expected loss = bias² + variance, per point and on average, to float64 eps
    np.testing.assert_allclose(
        d.point_expected_loss, d.point_bias + d.point_variance, rtol=1e-13
    )
    np.testing.assert_allclose(d.expected_loss, d.bias + d.variance, rtol=1e-13)
    assert d.predictions.shape == (7, 30) and d.loss == "mse"


def test_mse_identity_in_float32():
    rng = np.random.default_rng(3)
    preds = rng.normal(size=(20, 50, 1)).astype(np.float32)
    d = ann.analysis.decompose(preds, rng.normal(size=50).astype(np.float32))
    assert d.point_bias.shape == (50,) and d.main_prediction.shape == (50, 1)
    np.testing.assert_allclose(d.expected_loss, d.bias + d.variance, rtol=1e-6)


def test_several_outputs_are_averaged_per_point(x64):
    rng = np.random.default_rng(4)
    preds, y = rng.normal(size=(5, 6, 3)), rng.normal(size=(6, 3))
    d = ann.analysis.decompose(preds, y)
    np.testing.assert_allclose(d.point_expected_loss, ((preds - y) ** 2).mean((0, 2)))


def test_zero_one_mode_breaks_ties_to_the_smallest_label():
    labels = np.array([[2, 1, 0], [1, 1, 3], [2, 0, 3], [1, 0, 0]])
    d = ann.analysis.decompose(labels, np.array([1, 0, 3]), loss="0-1")
    # column 0: 2, 1, 2, 1 (tie → 1); column 1: 1, 1, 0, 0 (tie → 0); 0, 3, 3, 0 → 0
    assert d.main_prediction.tolist() == [1, 0, 0]
    np.testing.assert_allclose(d.point_bias, [0, 0, 1])
    np.testing.assert_allclose(d.point_variance, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(d.point_expected_loss, [0.5, 0.5, 0.5])


def test_zero_one_from_scores_and_probabilities():
    scores = np.array([[[0.1, 0.9], [0.8, 0.2]], [[0.6, 0.4], [0.3, 0.7]]])
    y_onehot = np.array([[0.0, 1.0], [1.0, 0.0]])
    d = ann.analysis.decompose(scores, y_onehot, loss="0-1")
    a = ann.analysis.decompose(np.array([[1, 0], [0, 1]]), [1, 0], loss="0-1")
    np.testing.assert_array_equal(d.point_expected_loss, a.point_expected_loss)
    probs = scores[..., 1:]  # (rounds, n, 1): class 1 at >= threshold
    p = ann.analysis.decompose(probs, [1, 0], loss="0-1")
    np.testing.assert_array_equal(p.point_variance, a.point_variance)
    logits = np.log(probs / (1 - probs))
    q = ann.analysis.decompose(logits, [1, 0], loss="0-1", threshold=0.0)
    np.testing.assert_array_equal(q.main_prediction, p.main_prediction)


def test_jitted_equals_eager():
    rng = np.random.default_rng(5)
    preds, y = rng.integers(0, 3, size=(9, 40)), rng.integers(0, 3, size=40)
    eager = ann.analysis.decompose(preds, y, loss="0-1")
    jitted = jax.jit(lambda p, t: ann.analysis.decompose(p, t, loss="0-1")[:7])(
        jnp.asarray(preds), jnp.asarray(y)
    )
    for a, b in zip(eager[:7], jitted, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.zeros((2, 3)), np.zeros(3)), {"loss": "mae"}, "loss: expected one of"),
        ((np.zeros(3), np.zeros(3)), {}, "predictions: expected shape \\(rounds"),
        ((np.zeros((2, 4)), np.zeros(3)), {}, "predictions: expected shape"),
        ((np.zeros((2, 3, 2, 2)), np.zeros(3)), {"loss": "0-1"}, "predictions: exp"),
        ((np.zeros((2, 3)), np.zeros(4)), {"loss": "0-1"}, "y_true: expected"),
    ],
)
def test_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ann.analysis.decompose(*args, **kwargs)
