"""The bias–variance studies, each one fit_many: oracles are mlxtend's
bias_variance_decomp on the same bootstrap draws (through a scikit-learn-style
wrapper of ann.fit), scikit-learn's folds, and a separate fit per model."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import annjax as ann

mlxtend_evaluate = pytest.importorskip("mlxtend.evaluate")

# fit_many against separate fits: equal up to float reassociation
TOL = {"rtol": 2e-4, "atol": 1e-5}
KW = dict(optimizer=ann.adam(1e-2), epochs=2, batch_size=16)
REG = ann.mlp([4, 1])


@pytest.fixture(scope="module")
def curve_data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(60, 2)).astype(np.float32)
    y = (np.sin(3 * X[:, 0]) + X[:, 1] + 0.1 * rng.normal(size=60)).astype(np.float32)
    return (X[:40], y[:40]), (X[40:], y[40:])


class AnnFit:
    """A scikit-learn-style estimator around ann.fit: round i trains with the
    i-th key on the bootstrap sample mlxtend draws, given as counts."""

    def __init__(self, X, keys, **fit_kwargs):
        self.X, self.keys, self.kw, self.round = X, keys, fit_kwargs, 0
        self.counts = []

    def fit(self, X_boot, y_boot):
        # rows of X are distinct: each drawn row is found by its values
        index = {row.tobytes(): i for i, row in enumerate(self.X)}
        counts = np.zeros(len(self.X), np.float32)
        for row in X_boot:
            counts[index[row.tobytes()]] += 1
        y = np.zeros(len(self.X), np.float32)
        y[[index[r.tobytes()] for r in X_boot]] = y_boot
        key = self.keys[self.round]
        self.result = ann.fit(REG, (self.X, y, counts), key=key, **self.kw)
        self.counts.append(counts)
        self.round += 1
        return self

    def predict(self, X):
        r = self.result
        return np.asarray(ann.predict(REG, r.params, r.state, X))[:, 0]


def test_bias_variance_equals_mlxtend_on_the_same_draws(curve_data):
    (X, y), (Xt, yt) = curve_data
    rounds, key = 5, jax.random.key(1)
    keys = jax.random.split(jax.random.split(key)[1], rounds)  # the replicas' keys
    wrapper = AnnFit(X, keys, loss="mse", progress=False, **KW)
    want = mlxtend_evaluate.bias_variance_decomp(
        wrapper, X, y, Xt, yt, loss="mse", num_rounds=rounds, random_seed=0
    )
    d = ann.analysis.bias_variance(
        REG,
        (X, y),
        (Xt, yt),
        rounds=rounds,
        key=key,
        weights=np.stack(wrapper.counts),
        **KW,
    )
    assert d.predictions.shape == (rounds, 20, 1) and d.loss == "mse"
    np.testing.assert_allclose([d.expected_loss, d.bias, d.variance], want, **TOL)
    np.testing.assert_allclose(d.expected_loss, d.bias + d.variance, rtol=1e-5)
    np.testing.assert_array_equal(d.weights, np.stack(wrapper.counts))
    assert d.point_bias.shape == (20,)


def test_bias_variance_draws_its_own_bootstrap(curve_data):
    train, test = curve_data
    key = jax.random.key(2)
    d = ann.analysis.bias_variance(REG, train, test, rounds=3, key=key, **KW)
    np.testing.assert_array_equal(
        d.weights, ann.analysis.bootstrap_weights(40, 3, key=jax.random.split(key)[0])
    )
    np.testing.assert_allclose(
        d.models.ensemble(test[0])[:, 0], d.main_prediction[:, 0], rtol=1e-6
    )
    # the averaged prediction's MSE is the decomposition's bias² term
    scored = ann.analysis.evaluate_ensemble(
        d.models, test, loss="mse", metrics=("mae",)
    )
    np.testing.assert_allclose(scored["loss"], d.bias, rtol=1e-5)
    mae = np.abs(np.asarray(d.main_prediction)[:, 0] - test[1]).mean()
    np.testing.assert_allclose(scored["mae"], mae, rtol=1e-5)
    with pytest.raises(ValueError, match="data: expected"):
        ann.analysis.evaluate_ensemble(d.models, test[0])


def test_zero_one_bias_variance_on_classes():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(48, 2)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=48) > 0).astype(np.int32)
    d = ann.analysis.bias_variance(
        ann.mlp([4, 2]),
        (X[:32], y[:32]),
        (X[32:], y[32:]),
        loss="0-1",
        rounds=3,
        key=jax.random.key(0),
        **KW,
    )
    labels = np.asarray(d.predictions).argmax(-1)
    want = ann.analysis.decompose(labels, y[32:], loss="0-1")
    np.testing.assert_allclose(d.expected_loss, want.expected_loss)
    assert 0 <= float(d.variance) <= 1


def test_complexity_curve_sweeps_in_one_call_and_per_architecture(curve_data):
    train, test = curve_data
    key = jax.random.key(3)
    swept = ann.analysis.complexity_curve(
        "l2", [0.0, 0.1], train, test, model=REG, rounds=2, key=key, **KW
    )
    assert swept.name == "l2" and len(swept.results[0].models.stop_reason) == 4
    for value, result in zip([0.0, 0.1], swept.results, strict=True):
        alone = ann.analysis.bias_variance(
            REG, train, test, rounds=2, key=key, l2=value, **KW
        )
        np.testing.assert_allclose(result.predictions, alone.predictions, **TOL)
    wide = ann.analysis.complexity_curve(
        lambda w: ann.mlp([w, 1]),
        [2, 8],
        train,
        test,
        rounds=2,
        key=key,
        name="width",
        **KW,
    )
    alone = ann.analysis.bias_variance(
        ann.mlp([8, 1]), train, test, rounds=2, key=key, **KW
    )
    np.testing.assert_allclose(wide.expected_loss[1], alone.expected_loss, rtol=1e-6)
    np.testing.assert_allclose(wide.expected_loss, wide.bias + wide.variance, rtol=1e-5)
    assert wide.best in (2, 8)


def test_learning_curve_models_equal_separate_fits(curve_data):
    train, val = curve_data
    key = jax.random.key(4)
    lc = ann.analysis.learning_curve(
        REG,
        train,
        val_data=val,
        sizes=(0.25, 1.0),
        rounds=2,
        key=key,
        loss="mse",
        metrics=("mae",),
        **KW,
    )
    np.testing.assert_array_equal(lc.sizes, [10, 40])
    assert lc.train["loss"].shape == lc.val["mae"].shape == (2, 2)
    keys = jax.random.split(jax.random.split(key)[1], 4)
    for i in (0, 3):
        s, r = divmod(i, 2)
        mask = np.asarray(lc.weights[i])
        one = ann.fit(
            REG, (*train, mask), key=keys[i], loss="mse", progress=False, **KW
        )
        on_val = ann.evaluate(
            REG, one.params, one.state, val, loss="mse", metrics=("mae",)
        )
        on_train = ann.evaluate(REG, one.params, one.state, (*train, mask), loss="mse")
        np.testing.assert_allclose(lc.val["mae"][s, r], on_val["mae"], **TOL)
        np.testing.assert_allclose(lc.train["loss"][s, r], on_train["loss"], **TOL)


def test_learning_curve_full_batch_model_equals_a_fit_on_its_subset(curve_data):
    train, val = curve_data
    key = jax.random.key(5)
    kw = dict(KW, batch_size=64)  # one batch: the weighting IS the subset
    lc = ann.analysis.learning_curve(
        REG, train, val_data=val, sizes=(0.5,), rounds=1, key=key, loss="mse", **kw
    )
    keep = np.asarray(lc.weights[0]) > 0
    keys = jax.random.split(jax.random.split(key)[1], 1)
    one = ann.fit(
        REG,
        (train[0][keep], train[1][keep]),
        key=keys[0],
        loss="mse",
        progress=False,
        **kw,
    )
    on_val = ann.evaluate(REG, one.params, one.state, val, loss="mse")
    np.testing.assert_allclose(lc.val["loss"][0, 0], on_val["loss"], **TOL)


@pytest.mark.parametrize("stratify", [False, True])
def test_cross_validate_folds_equal_sklearn_and_separate_fits(stratify):
    from sklearn.model_selection import KFold, StratifiedKFold

    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int32)
    key = jax.random.key(6)
    cv = ann.analysis.cross_validate(
        ann.mlp([4, 2]),
        (X, y),
        folds=3,
        stratify=stratify,
        seed=0,
        key=key,
        metrics=("accuracy",),
        **KW,
    )
    splitter = (StratifiedKFold if stratify else KFold)(3, shuffle=True, random_state=0)
    keys = jax.random.split(key, 3)
    for k, (_, test_idx) in enumerate(splitter.split(X, y)):
        np.testing.assert_array_equal(np.flatnonzero(cv.folds.held_out[k]), test_idx)
        one = ann.fit(
            ann.mlp([4, 2]),
            (X, y, cv.folds.train[k]),
            (X[test_idx], y[test_idx]),
            key=keys[k],
            metrics=("accuracy",),
            progress=False,
            **KW,
        )
        np.testing.assert_allclose(
            cv.histories[k]["val_loss"], one.history["val_loss"], **TOL
        )
        np.testing.assert_allclose(
            cv.scores["loss"][k], one.history["val_loss"][-1], **TOL
        )
        np.testing.assert_allclose(
            cv.scores["accuracy"][k], one.history["val_accuracy"][-1], **TOL
        )
    assert cv.scores["accuracy"].shape == (3,)
    np.testing.assert_allclose(cv.mean["accuracy"], cv.scores["accuracy"].mean())
    np.testing.assert_allclose(cv.std["loss"], cv.scores["loss"].std())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda t, v: ann.analysis.bias_variance(
                REG, t, v, loss="mae", key=jax.random.key(0)
            ),
            "loss: expected one of",
        ),
        (
            lambda t, v: ann.analysis.bias_variance(
                REG, t, v, rounds=0, key=jax.random.key(0)
            ),
            "rounds: expected",
        ),
        (
            lambda t, v: ann.analysis.bias_variance(
                REG, t[0], v, key=jax.random.key(0)
            ),
            r"train: expected a pair \(X, y\)",
        ),
        (
            lambda t, v: ann.analysis.bias_variance(
                REG, t, v, rounds=2, key=jax.random.key(0), weights=np.ones((3, 40))
            ),
            r"weights: expected shape \(2, 40\)",
        ),
        (
            lambda t, v: ann.analysis.bias_variance(
                REG, t, v, key=jax.random.key(0), keys=1
            ),
            "keys: expected no value",
        ),
        (
            lambda t, v: ann.analysis.complexity_curve(
                "l2", [], t, v, model=REG, key=jax.random.key(0)
            ),
            "values: expected at least one",
        ),
        (
            lambda t, v: ann.analysis.complexity_curve(
                "depth", [1], t, v, model=REG, key=jax.random.key(0)
            ),
            "build: expected one of",
        ),
        (
            lambda t, v: ann.analysis.complexity_curve(
                "l2", [1], t, v, key=jax.random.key(0)
            ),
            "model: expected the Layer",
        ),
        (
            lambda t, v: ann.analysis.complexity_curve(
                lambda w: REG, [1], t, v, model=REG, key=jax.random.key(0)
            ),
            "model: expected None",
        ),
        (
            lambda t, v: ann.analysis.learning_curve(
                REG, t, val_data=v[0], key=jax.random.key(0)
            ),
            r"val_data: expected a pair",
        ),
        (
            lambda t, v: ann.analysis.learning_curve(
                REG, t, val_data=v, sizes=(2.0,), key=jax.random.key(0)
            ),
            "sizes: expected",
        ),
        (
            lambda t, v: ann.analysis.cross_validate(
                REG, t, folds=1, key=jax.random.key(0)
            ),
            "folds: expected",
        ),
        (
            lambda t, v: ann.analysis.cross_validate(
                REG, t, val_data=v, key=jax.random.key(0)
            ),
            "val_data: expected no value",
        ),
    ],
)
def test_errors(curve_data, call, match):
    with pytest.raises(ValueError, match=match):
        call(*curve_data)
