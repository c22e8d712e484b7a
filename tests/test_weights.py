"""Example weights: (X, y, w), class_weight, fit_many(sample_weight=, val_weight=).

Oracles: full-batch training on integer weights equals training on the
duplicated rows, and on a 0/1 mask equals training on the subset (Adam
included: a batch of weight 0 takes no step); weighted metrics equal
scikit-learn's ``sample_weight`` results; each model of fit_many equals its
own fit on its row of weights.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import annjax as ann

# Equal up to float reassociation (vmapped matmuls, sums in another order).
TOL = {"rtol": 1e-4, "atol": 1e-5}
KW = dict(optimizer=ann.adam(1e-2), epochs=3, progress=False)
MODEL = ann.mlp([6, 3])


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 4)) * 2
    y = rng.integers(0, 3, 60).astype(np.int32)
    x = (centers[y] + rng.normal(size=(60, 4))).astype(np.float32)
    w = rng.integers(0, 4, 60).astype(np.float32)
    return x, y, w


def leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def assert_same_params(a, b, **tol):
    for u, v in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_allclose(u, v, **(tol or TOL))


def test_integer_weights_equal_duplicated_rows_full_batch(blobs):
    x, y, w = blobs
    rows = np.repeat(np.arange(len(y)), w.astype(int))
    key = jax.random.key(3)
    weighted = ann.fit(MODEL, (x, y, w), batch_size=1000, key=key, **KW)
    repeated = ann.fit(MODEL, (x[rows], y[rows]), batch_size=1000, key=key, **KW)
    assert_same_params(weighted.params, repeated.params)
    np.testing.assert_allclose(
        weighted.history["loss"], repeated.history["loss"], **TOL
    )


def test_a_mask_equals_the_subset_and_empty_batches_take_no_step(blobs):
    # batch 16 > the 10 kept examples: one real step per epoch, three of
    # weight 0 after it that must not move Adam (its moments would).
    x, y, _ = blobs
    mask = np.zeros(len(y), np.float32)
    mask[::6] = 1
    key = jax.random.key(4)
    masked = ann.fit(MODEL, (x, y, mask), batch_size=16, key=key, **KW)
    subset = ann.fit(MODEL, (x[::6], y[::6]), batch_size=16, key=key, **KW)
    assert_same_params(masked.params, subset.params)
    assert int(masked.train_state.step) == int(subset.train_state.step) == 3


@pytest.mark.parametrize(
    ("loss", "metrics"),
    [
        ("softmax_cross_entropy", ("accuracy", "precision_macro", "f1_macro")),
        ("mse", ("mse", "mae", "r2")),
    ],
)
def test_weighted_evaluate_equals_sklearn(blobs, loss, metrics):
    from sklearn import metrics as skm

    x, y, w = blobs
    model = MODEL if loss != "mse" else ann.mlp([6, 1])
    target = y if loss != "mse" else x[:, 0]
    r = ann.fit(
        model, (x, target), loss=loss, batch_size=20, key=jax.random.key(0), **KW
    )
    got = ann.evaluate(
        model, r.params, r.state, (x, target, w), loss=loss, metrics=metrics
    )
    pred = np.asarray(ann.predict(model, r.params, r.state, x))
    if loss == "mse":
        pred = pred[:, 0]
        per_example = (pred - target) ** 2
        want = {
            "mse": skm.mean_squared_error(target, pred, sample_weight=w),
            "mae": skm.mean_absolute_error(target, pred, sample_weight=w),
            "r2": skm.r2_score(target, pred, sample_weight=w),
        }
    else:
        labels = pred.argmax(1)
        logp = pred - np.log(np.exp(pred).sum(1, keepdims=True))
        per_example = -logp[np.arange(len(y)), y]
        want = {
            "accuracy": skm.accuracy_score(y, labels, sample_weight=w),
            "precision_macro": skm.precision_score(
                y, labels, average="macro", sample_weight=w, zero_division=0
            ),
            "f1_macro": skm.f1_score(y, labels, average="macro", sample_weight=w),
        }
    want["loss"] = np.sum(w * per_example) / np.sum(w)
    # float32 sums of 60 terms against float64: 1e-5 relative
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6)


def test_class_weight_equals_per_example_weights(blobs):
    x, y, _ = blobs
    key = jax.random.key(5)
    by_class = ann.fit(
        MODEL, (x, y), class_weight={1: 3.0, 2: 0.5}, batch_size=8, key=key, **KW
    )
    w = np.select([y == 1, y == 2], [3.0, 0.5], 1.0).astype(np.float32)
    by_example = ann.fit(MODEL, (x, y, w), batch_size=8, key=key, **KW)
    assert_same_params(by_class.params, by_example.params, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("steps_per_call", [None, 2])
def test_fit_many_rows_equal_separate_fits(blobs, steps_per_call):
    x, y, w = blobs
    W = np.stack([w, np.ones_like(w), (np.arange(60) < 25).astype(np.float32)])
    V = np.stack([np.ones(60, np.float32), w, W[2]])
    keys = jax.random.split(jax.random.key(6), 3)
    opts = dict(
        batch_size=16, metrics=("accuracy",), steps_per_call=steps_per_call, **KW
    )
    many = ann.fit_many(
        MODEL, (x, y), (x, y), keys=keys, sample_weight=W, val_weight=V, **opts
    )
    for i in range(3):
        one = ann.fit(MODEL, (x, y, W[i]), (x, y, V[i]), key=keys[i], **opts)
        sel = many.select(i)
        assert_same_params(sel.params, one.params)
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(sel.history[name], one.history[name], **TOL)
        assert int(sel.train_state.step) == int(one.train_state.step)
    # model 2 trains on 25 examples: 2 steps of 16 per epoch, not 4
    assert int(many.select(2).train_state.step) == 3 * 2


def test_predict_and_ensemble(blobs, tmp_path):
    x, y, _ = blobs
    keys = jax.random.split(jax.random.key(8), 3)
    many = ann.fit_many(MODEL, (x, y), keys=keys, batch_size=16, **KW)
    out = np.asarray(many.predict(x))
    assert out.shape == (3, 60, 3)
    for i in range(3):
        one = many.select(i)
        want = ann.predict(MODEL, one.params, one.state, x)
        np.testing.assert_allclose(out[i], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(many.ensemble(x), out.mean(0), rtol=1e-6)
    votes = np.asarray(many.ensemble(x, how="vote"))
    labels = out.argmax(-1)
    for j in range(60):
        counts = np.bincount(labels[:, j], minlength=3)
        assert votes[j] == counts.argmax()
    loaded = ann.load(ann.save(tmp_path / "many.ann", many))
    with pytest.raises(ValueError, match="model: expected the Layer"):
        loaded.predict(x)
    np.testing.assert_allclose(loaded.predict(x, model=MODEL), out, rtol=1e-6)
    with pytest.raises(ValueError, match="how: expected one of"):
        many.ensemble(x, how="median")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda x, y, w: ann.fit(MODEL, (x, y, w[:5]), **KW),
            r"train_data w: expected shape \(60,\)",
        ),
        (
            lambda x, y, w: ann.fit(MODEL, (x, y, -w), **KW),
            "train_data w: expected finite weights >= 0",
        ),
        (
            lambda x, y, w: ann.fit(MODEL, (x, y, w * np.nan), **KW),
            "expected finite weights",
        ),
        (
            lambda x, y, w: ann.fit(MODEL, (x, y, 0 * w), **KW),
            "at least one example of every model",
        ),
        (
            lambda x, y, w: ann.fit(MODEL, (x, y), class_weight=[1, 2], **KW),
            "class_weight: expected a mapping",
        ),
        (
            lambda x, y, w: ann.fit(MODEL, (x, y), class_weight={0: -1}, **KW),
            r"class_weight\[0\]: expected a number >= 0",
        ),
        (
            lambda x, y, w: ann.fit(MODEL, (x, y), (x, y, w[:3]), **KW),
            "val_data w: expected shape",
        ),
        (
            lambda x, y, w: ann.fit_many(
                MODEL,
                (x, y),
                keys=jax.random.split(jax.random.key(0), 2),
                sample_weight=np.ones((3, 60)),
                **KW,
            ),
            r"sample_weight: expected shape \(60,\) or \(2, 60\)",
        ),
        (
            lambda x, y, w: ann.fit_many(
                MODEL,
                (x, y),
                keys=jax.random.split(jax.random.key(0), 2),
                sample_weight=np.stack([w, 0 * w]),
                **KW,
            ),
            r"sample_weight: expected a positive weight .* model\(s\) \[1\]",
        ),
        (
            lambda x, y, w: ann.fit_many(
                MODEL,
                (x, y),
                keys=jax.random.split(jax.random.key(0), 2),
                val_weight=w,
                **KW,
            ),
            "val_weight: expected val_data",
        ),
        (
            lambda x, y, w: ann.evaluate(
                MODEL, *MODEL.init(jax.random.key(0), (4,))[1:], (x, y, w[:2])
            ),
            "data w: expected shape",
        ),
    ],
)
def test_errors(blobs, call, match):
    with pytest.raises(ValueError, match=match):
        call(*blobs)
