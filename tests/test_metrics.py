"""Tests of annjax.metrics: scikit-learn as oracle, label rules, jit, registry, errors.

Tolerances: annjax computes in float32 and scikit-learn in float64, so values
agree to float32 rounding (rtol 1e-5); counts (confusion matrix) agree exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk

from annjax import metrics

pytestmark = pytest.mark.usefixtures("strict_promotion")

SEEDS = [0, 1, 2]
N, K = 64, 4
RTOL = 1e-5


def _classes(seed: int, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Returns integer labels and (N, k) logits that agree with them ~half the time."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, N)
    logits = rng.normal(size=(N, k)).astype(np.float32)
    logits[np.arange(N), y] += rng.choice([0.0, 2.0], N).astype(np.float32)
    return y, logits


def _targets(seed: int, outputs: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(N, outputs)).astype(np.float32)
    noise = rng.normal(scale=0.5, size=(N, outputs)).astype(np.float32)
    return y, y + noise


def _weights(seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 100).uniform(0.1, 2.0, N).astype(np.float32)


# --- accuracy and label rules ----------------------------------------------


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_matches_sklearn_for_every_label_form(seed):
    y, logits = _classes(seed)
    expected = sk.accuracy_score(y, logits.argmax(1))
    one_hot = np.eye(K, dtype=np.float32)[y]
    forms = [
        (y, logits),  # labels vs logits
        (y, _softmax(logits)),  # labels vs probabilities
        (one_hot, logits),  # one-hot vs logits
        (y, logits.argmax(1)),  # labels vs labels
        (y[:, None], logits.argmax(1)[:, None]),  # (batch, 1) labels
        (y.astype(np.float32), logits),  # float labels are rounded
    ]
    for y_true, y_pred in forms:
        np.testing.assert_allclose(metrics.accuracy(y_true, y_pred), expected, RTOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(N,), (N, 1)])
def test_single_float_column_is_a_probability_thresholded_at_half(seed, shape):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N)
    p = rng.uniform(size=N).astype(np.float32)
    p[:4] = 0.5  # p >= 0.5 is class 1
    expected = sk.accuracy_score(y, (p >= 0.5).astype(int))
    got = metrics.accuracy(y.reshape(shape), p.reshape(shape))
    np.testing.assert_allclose(got, expected, RTOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_accuracy_on_probabilities_logits_and_multilabel(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (N, 3)).astype(np.float32)
    z = rng.normal(size=(N, 3)).astype(np.float32)
    p = _sigmoid(z)
    expected = np.mean((p >= 0.5) == (y == 1))
    np.testing.assert_allclose(metrics.binary_accuracy(y, p), expected, RTOL)
    np.testing.assert_allclose(metrics.binary_accuracy(y, z, 0.0), expected, RTOL)
    expected_07 = np.mean((p >= 0.7) == (y == 1))
    np.testing.assert_allclose(metrics.binary_accuracy(y, p, 0.7), expected_07, RTOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_with_sample_weight_matches_sklearn(seed):
    y, logits = _classes(seed)
    w = _weights(seed)
    expected = sk.accuracy_score(y, logits.argmax(1), sample_weight=w)
    np.testing.assert_allclose(metrics.accuracy(y, logits, w), expected, RTOL)


def test_zero_weights_remove_examples():
    # The padded positions of data.epoch_batches carry weight 0.
    y, logits = _classes(0)
    pred = logits.argmax(1)
    t, p = _targets(0, 3)
    w = (np.arange(N) < 40).astype(np.float32)
    cases = [
        (metrics.accuracy(y, logits, w), sk.accuracy_score(y[:40], pred[:40])),
        (
            metrics.f1(y, pred, "macro", K, sample_weight=w),
            sk.f1_score(y[:40], pred[:40], average="macro"),
        ),
        (metrics.mse(t, p, w), sk.mean_squared_error(t[:40], p[:40])),
    ]
    for got, expected in cases:
        np.testing.assert_allclose(got, expected, RTOL)


# --- precision, recall, F1, confusion matrix --------------------------------

PRF = [
    (metrics.precision, sk.precision_score),
    (metrics.recall, sk.recall_score),
    (metrics.f1, sk.f1_score),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("ours", "theirs"), PRF)
def test_binary_scores_match_sklearn(seed, ours, theirs):
    y, logits = _classes(seed, k=2)
    pred = logits.argmax(1)
    expected = theirs(y, pred, zero_division=0)
    np.testing.assert_allclose(ours(y, logits), expected, RTOL)
    np.testing.assert_allclose(ours(y, pred), expected, RTOL)
    expected_0 = theirs(y, pred, pos_label=0, zero_division=0)
    np.testing.assert_allclose(ours(y, pred, pos_label=0), expected_0, RTOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("ours", "theirs"), PRF)
def test_macro_scores_match_sklearn(seed, ours, theirs):
    y, logits = _classes(seed)
    pred = logits.argmax(1)
    expected = theirs(y, pred, average="macro", zero_division=0)
    np.testing.assert_allclose(ours(y, pred, "macro", K), expected, RTOL)
    np.testing.assert_allclose(
        ours(y, logits, "macro"), expected, RTOL
    )  # k from scores
    w = _weights(seed)
    expected_w = theirs(y, pred, average="macro", sample_weight=w, zero_division=0)
    np.testing.assert_allclose(
        ours(y, pred, "macro", K, sample_weight=w), expected_w, RTOL
    )


@pytest.mark.parametrize(("ours", "theirs"), PRF)
def test_macro_averages_only_classes_present_like_sklearn(ours, theirs):
    # Class 3 is absent from both arrays, class 2 is predicted but never true.
    # (Tiled to N examples, the length every other call here compiles for.)
    y = np.tile([0, 0, 1, 1, 1, 0, 1, 0], N // 8)
    pred = np.tile([0, 1, 1, 2, 1, 0, 0, 0], N // 8)
    expected = theirs(y, pred, average="macro", zero_division=0)
    np.testing.assert_allclose(ours(y, pred, "macro", 4), expected, RTOL)


@pytest.mark.parametrize(("ours", "theirs"), PRF)
def test_zero_division_gives_zero_like_sklearn(ours, theirs):
    y = pred = np.zeros(N, np.int64)
    assert float(ours(y, pred)) == theirs(y, pred, zero_division=0) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_matrix_matches_sklearn(seed):
    y, logits = _classes(seed)
    pred = logits.argmax(1)
    labels = list(range(K))
    cm = metrics.confusion_matrix(y, pred, K)
    assert cm.dtype == jnp.int32
    np.testing.assert_array_equal(cm, sk.confusion_matrix(y, pred, labels=labels))
    np.testing.assert_array_equal(metrics.confusion_matrix(y, logits, K), cm)
    w = _weights(seed)
    np.testing.assert_allclose(
        metrics.confusion_matrix(y, pred, K, w),
        sk.confusion_matrix(y, pred, labels=labels, sample_weight=w),
        RTOL,
    )


def test_confusion_matrix_drops_labels_out_of_range():
    cm = metrics.confusion_matrix(np.array([0, 1, 2, -1]), np.array([0, 1, 1, 0]), 2)
    np.testing.assert_array_equal(cm, [[1, 0], [0, 1]])


# --- regression --------------------------------------------------------------

REGRESSION = [
    (metrics.mse, sk.mean_squared_error),
    (metrics.rmse, sk.root_mean_squared_error),
    (metrics.mae, sk.mean_absolute_error),
    (metrics.r2, sk.r2_score),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("ours", "theirs"), REGRESSION)
def test_regression_metrics_match_sklearn(seed, ours, theirs):
    y, pred = _targets(seed, 3)  # one output: next test
    np.testing.assert_allclose(ours(y, pred), theirs(y, pred), RTOL, atol=1e-6)
    w = _weights(seed)
    np.testing.assert_allclose(
        ours(y, pred, w), theirs(y, pred, sample_weight=w), RTOL, atol=1e-6
    )


@pytest.mark.parametrize(("ours", "theirs"), REGRESSION)
def test_regression_accepts_batch_against_batch_by_one(ours, theirs):
    y, pred = _targets(0, 1)
    expected = theirs(y[:, 0], pred[:, 0])
    np.testing.assert_allclose(ours(y[:, 0], pred), expected, RTOL, atol=1e-6)
    np.testing.assert_allclose(ours(y, pred[:, 0]), expected, RTOL, atol=1e-6)


def test_regression_accepts_integer_targets():
    y = np.arange(N)
    pred = np.arange(N, dtype=np.float32) + 0.5
    np.testing.assert_allclose(metrics.mae(y, pred), 0.5, RTOL)


def test_r2_of_constant_target_follows_sklearn_force_finite():
    y = np.full((N, 2), 3.0, np.float32)
    exact, off = y.copy(), y + 1.0
    assert float(metrics.r2(y, exact)) == sk.r2_score(y, exact) == 1.0
    assert float(metrics.r2(y, off)) == sk.r2_score(y, off) == 0.0


@pytest.mark.parametrize("value", [0.1, 0.3, -7.77, 1e4])
def test_r2_of_constant_target_guards_float32_rounding(value):
    # The float32 mean of a constant is inexact, so Σ(y − ȳ)² ≈ 1e-14, not 0:
    # R² read −2.2e13 (issue 21, case 1). Oracle: scikit-learn's force_finite
    # on the same values in float64, where their mean is exact (on float32
    # input scikit-learn 1.x itself returns about −1e12 for 0.3).
    y = np.full(60, value, "f4")
    noisy = y + np.random.default_rng(0).normal(0, 0.1, 60).astype("f4")
    assert sk.r2_score(y.astype("f8"), noisy.astype("f8"), force_finite=True) == 0
    assert float(metrics.r2(y, noisy)) == 0.0
    assert float(metrics.r2(y, y)) == 1.0


def test_fit_streaming_r2_of_constant_target_is_zero():
    import annjax as ann

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype("f4")
    y = np.full((60, 1), 0.1, "f4")
    result = ann.fit(
        ann.dense(1),
        (x, y),
        val_data=(x, y),
        loss="mse",
        metrics=("r2",),
        epochs=2,
        batch_size=16,
        progress=False,
    )
    np.testing.assert_array_equal(result.history["r2"], [0.0, 0.0])
    np.testing.assert_array_equal(result.history["val_r2"], [0.0, 0.0])


# --- jit -----------------------------------------------------------------------


def _all_calls():
    """Calls made exactly as elsewhere in this file, so they reuse its compilations."""
    y, logits = _classes(0)
    t, p = _targets(0, 3)
    return [
        (metrics.accuracy, (y, logits), {}),
        (metrics.binary_accuracy, (t > 0, _sigmoid(p)), {}),
        (metrics.precision, (y, logits, "macro"), {}),
        (metrics.recall, (y % 2, logits[:, :2]), {}),
        (metrics.f1, (y, logits.argmax(1), "macro", K), {}),
        (metrics.confusion_matrix, (y, logits.argmax(1), K), {}),
        (metrics.mse, (t, p), {}),
        (metrics.rmse, (t, p), {}),
        (metrics.mae, (t, p), {}),
        (metrics.r2, (t, p), {}),
    ]


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"), _all_calls(), ids=lambda v: getattr(v, "__name__", "")
)
def test_a_second_call_does_not_recompile(fn, args, kwargs):
    fn(*args, **kwargs)
    size = fn._cache_size()
    fn(*args, **kwargs)
    assert fn._cache_size() == size


# Op-by-op execution compiles every primitive, so the uncompiled path runs for
# two metrics only: macro F1 (label rules and confusion matrix) and R².
@pytest.mark.parametrize("index", [4, 9])
def test_jitted_equals_plain(index):
    fn, args, kwargs = _all_calls()[index]
    jitted = fn(*args, **kwargs)
    with jax.disable_jit():
        plain = fn(*args, **kwargs)
    np.testing.assert_allclose(jitted, plain, rtol=1e-6)


def test_metrics_work_inside_a_users_jit_and_vmap():
    y, logits = _classes(0)
    batched = jax.vmap(metrics.f1_macro)(jnp.stack([y, y]), jnp.stack([logits] * 2))
    np.testing.assert_allclose(batched, metrics.f1_macro(y, logits), RTOL)


# --- registry and direction --------------------------------------------------


def test_registry_names_get_and_direction():
    assert set(metrics.names()) == set(metrics.GREATER_IS_BETTER)
    for name in metrics.names():
        fn = metrics.get(name)
        assert callable(fn)
        assert metrics.mode(name) == metrics.mode(fn)
        assert metrics.mode(name) == (
            "max" if metrics.GREATER_IS_BETTER[name] else "min"
        )
    assert [metrics.mode(n) for n in ("mse", "rmse", "mae")] == ["min"] * 3
    assert [metrics.mode(n) for n in ("accuracy", "f1", "r2")] == ["max"] * 3
    assert metrics.get("ACCURACY") is metrics.accuracy
    assert metrics.get(metrics.mse) is metrics.mse


def test_registry_errors():
    with pytest.raises(ValueError, match=r"metric: expected one of .*accuracy"):
        metrics.get("acuracy")
    with pytest.raises(ValueError, match="metric: expected one of"):
        metrics.mode("loss")
    with pytest.raises(ValueError, match=r"registered metric.*own metric"):
        metrics.mode(lambda a, b: a)
    with pytest.raises(TypeError, match="metric: expected a name or a callable"):
        metrics.get(3)


# --- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        metrics.accuracy,
        metrics.binary_accuracy,
        metrics.precision,
        metrics.recall,
        metrics.f1,
        metrics.mse,
        metrics.rmse,
        metrics.mae,
        metrics.r2,
    ],
)
def test_mismatched_lengths_raise(fn):
    with pytest.raises(ValueError, match=r"y_pred: expected shape \(5, ...\)"):
        fn(np.zeros(5), np.zeros(4))


def test_bad_arguments_raise():
    y, logits = _classes(0)
    with pytest.raises(ValueError, match="average: expected one of 'binary', 'macro'"):
        metrics.f1(y, logits, average="micro")
    with pytest.raises(ValueError, match="num_classes: expected an integer >= 2"):
        metrics.precision(y, logits.argmax(1), "macro")
    with pytest.raises(ValueError, match="average: expected 'macro'"):
        metrics.recall(y, logits)  # binary on 4-class scores
    with pytest.raises(ValueError, match="num_classes: expected an integer >= 1"):
        metrics.confusion_matrix(y, y, 0)
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(64,\)"):
        metrics.accuracy(y, logits, np.ones(3))
    with pytest.raises(ValueError, match="to match the one-hot y_true"):
        metrics.accuracy(np.eye(3)[y % 3], logits)
    with pytest.raises(ValueError, match=r"y_pred: expected shape .*to match y_true"):
        metrics.mse(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="y_pred: expected labels of shape"):
        metrics.accuracy(y, np.zeros((N, 2, 2)))
