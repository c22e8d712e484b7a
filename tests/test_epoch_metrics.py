"""History metrics are the metrics of the epoch's predictions, exactly.

With the params frozen (``optax.set_to_zero``) an epoch's training-mode
predictions are ``predict``'s, so every history metric must equal the
metric of scikit-learn on those predictions (to 1e-5: float32 sums), padding
excluded (n = 103 examples in batches of 16: 9 padding rows).
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import optax
import pytest
from sklearn import metrics as skm

import annjax as ann

N, BATCH = 103, 16
TOL = 1e-5  # float32 sums of ~100 terms


def _frozen_fit(model, x, y, loss, metrics, val=None):
    return ann.fit(
        model,
        (x, y),
        val_data=val,
        loss=loss,
        optimizer=optax.set_to_zero(),
        metrics=metrics,
        epochs=1,
        batch_size=BATCH,
        progress=False,
        key=jax.random.key(3),
    )


@pytest.fixture(scope="module")
def classes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 5)).astype(np.float32)
    y = rng.integers(0, 3, N).astype(np.int32)
    return x, y


def test_classification_history_equals_sklearn(classes):
    x, y = classes
    model = ann.mlp([7, 3])
    names = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
    r = _frozen_fit(model, x, y, "softmax_cross_entropy", names)
    labels = np.argmax(np.asarray(ann.predict(model, r.params, r.state, x)), axis=1)
    want = {
        "accuracy": skm.accuracy_score(y, labels),
        "precision_macro": skm.precision_score(
            y, labels, average="macro", zero_division=0
        ),
        "recall_macro": skm.recall_score(y, labels, average="macro", zero_division=0),
        "f1_macro": skm.f1_score(y, labels, average="macro", zero_division=0),
    }
    for name, value in want.items():
        assert abs(r.history[name][0] - value) < TOL, name


def test_binary_history_equals_sklearn(classes):
    x, _ = classes
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.int32)
    model = ann.mlp([6, 1])
    names = ("binary_accuracy", "precision", "recall", "f1")
    r = _frozen_fit(model, x, y, "sigmoid_binary_cross_entropy", names)
    z = np.asarray(ann.predict(model, r.params, r.state, x))[:, 0]
    labels = (z >= 0).astype(int)  # σ(z) ≥ 0.5
    want = {
        "binary_accuracy": skm.accuracy_score(y, labels),
        "precision": skm.precision_score(y, labels, zero_division=0),
        "recall": skm.recall_score(y, labels, zero_division=0),
        "f1": skm.f1_score(y, labels, zero_division=0),
    }
    for name, value in want.items():
        assert abs(r.history[name][0] - value) < TOL, name


def test_regression_history_equals_sklearn_and_evaluate(classes):
    x, _ = classes
    y = (x @ np.arange(1, 6) + 50.0).astype(np.float32)  # a large mean: R²'s trap
    model = ann.mlp([4, 1], activation="tanh")
    names = ("mse", "rmse", "mae", "r2")
    r = _frozen_fit(model, x, y, "mse", names, val=(x, y))
    pred = np.asarray(ann.predict(model, r.params, r.state, x))[:, 0]
    want = {
        "mse": skm.mean_squared_error(y, pred),
        "rmse": skm.root_mean_squared_error(y, pred),
        "mae": skm.mean_absolute_error(y, pred),
        "r2": skm.r2_score(y, pred),
    }
    logs = ann.evaluate(model, r.params, r.state, (x, y), loss="mse", metrics=names)
    for name, value in want.items():
        np.testing.assert_allclose(r.history[name][0], value, rtol=TOL, err_msg=name)
        np.testing.assert_allclose(r.history[f"val_{name}"][0], logs[name], rtol=TOL)


def test_a_batch_mean_would_differ(classes):
    """The check above has teeth: the mean of per-batch F1 is not the epoch's."""
    x, y = classes
    model = ann.mlp([7, 3])
    r = _frozen_fit(model, x, y, "softmax_cross_entropy", ("f1_macro",))
    labels = np.argmax(np.asarray(ann.predict(model, r.params, r.state, x)), axis=1)
    per_batch = [
        skm.f1_score(y[i : i + BATCH], labels[i : i + BATCH], average="macro")
        for i in range(0, N, BATCH)
    ]
    assert abs(np.mean(per_batch) - r.history["f1_macro"][0]) > 1e-3


@pytest.mark.parametrize("name", ann.metrics.names())
def test_streaming_statistics_combine_to_the_whole(name):
    """finish(reduce(stats of each batch)) == the metric of all the examples."""
    rng = np.random.default_rng(1)
    n = 50
    if name in ann.metrics.REGRESSION:
        y = rng.normal(1e3, 1.0, (n, 2)).astype(np.float32)  # mean ≫ spread
        pred = (y + rng.normal(0, 0.5, (n, 2))).astype(np.float32)
    elif name in ("precision", "recall", "f1", "binary_accuracy"):
        y = rng.integers(0, 2, n).astype(np.int32)
        pred = rng.uniform(size=(n, 1)).astype(np.float32)
    else:
        y = rng.integers(0, 4, n).astype(np.int32)
        pred = rng.normal(size=(n, 4)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n).astype(np.float32)
    s = ann.metrics.streaming(name)
    cuts = [0, 7, 20, 21, 50]
    parts = [s.stats(y[a:b], pred[a:b], w[a:b]) for a, b in itertools.pairwise(cuts)]
    stacked = jax.tree_util.tree_map(lambda *v: np.stack(v), *parts)
    whole = ann.metrics.get(name)(y, pred, sample_weight=w)
    # R² of targets whose mean is 1000× their spread: float32 holds each
    # batch's mean to ~6e-5, which bounds the agreement to a few 1e-5 (the
    # one-pass form Σy² − (Σy)²/n would lose every digit here).
    rtol = 1e-4 if name == "r2" else 1e-5
    np.testing.assert_allclose(s.finish(s.reduce(stacked)), whole, rtol=rtol, atol=1e-6)
