"""Tests of annjax.data: split, Standardizer (scikit-learn oracle), batching, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from annjax import data

pytestmark = pytest.mark.usefixtures("strict_promotion")


def _ids(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns X whose first column is the example's id, and y = 10·id."""
    ids = np.arange(n)
    return np.stack([ids, -ids], axis=1), 10 * ids


def _parts(splits: data.Splits) -> list[np.ndarray]:
    return [np.asarray(X[:, 0]) for X, _ in splits]


# --- split ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "val", "test", "sizes"),
    [
        (100, 0.1, 0.2, (70, 10, 20)),
        (10, 0.25, 0.25, (4, 3, 3)),  # 2.5 rounds half up
        (10, 0.05, 0.05, (8, 1, 1)),
        (10, 0.0, 0.34, (7, 0, 3)),
        (100, 0.0, 0.0, (100, 0, 0)),
    ],
)
def test_split_sizes(n, val, test, sizes, key):
    X, y = _ids(n)
    splits = data.split(X, y, val, test, key=key)
    assert tuple(len(X) for X, _ in splits) == sizes
    assert tuple(len(y) for _, y in splits) == sizes
    assert splits.val[0].shape[1:] == (2,)  # an empty part keeps the feature shape


@pytest.mark.parametrize("stratify", [False, True])
def test_every_example_lands_in_exactly_one_split_with_its_target(stratify, key):
    X, y = _ids(100)
    splits = data.split(X, y % 3 if stratify else y, key=key, stratify=stratify)
    ids = np.concatenate(_parts(splits))
    np.testing.assert_array_equal(np.sort(ids), np.arange(100))
    if not stratify:
        for X_part, y_part in splits:
            np.testing.assert_array_equal(y_part, 10 * X_part[:, 0])


def test_split_shuffles_reproducibly(key):
    X, y = _ids(100)
    a, b = data.split(X, y, key=key), data.split(X, y, key=key)
    for (Xa, ya), (Xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(Xa, Xb)
        np.testing.assert_array_equal(ya, yb)
    other = data.split(X, y, key=jax.random.fold_in(key, 1))
    assert not np.array_equal(a.test[0], other.test[0])
    assert not np.array_equal(a.train[0][:, 0], np.sort(a.train[0][:, 0]))


def test_split_keeps_the_array_kind_and_accepts_y_none(key):
    X, y = _ids(10)
    on_device = data.split(jnp.asarray(X), jnp.asarray(y), key=key)
    assert isinstance(on_device.train[0], jax.Array)
    assert isinstance(data.split(X, y, key=key).train[0], np.ndarray)
    unsupervised = data.split(X.tolist(), None, 0.2, 0.2, key=key)
    assert [y for _, y in unsupervised] == [None, None, None]
    assert [len(X) for X, _ in unsupervised] == [6, 2, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("one_hot", [False, True])
def test_stratified_split_keeps_class_proportions(seed, one_hot):
    counts = np.array([61, 27, 9, 3])  # imbalanced, n = 100
    labels = np.repeat(np.arange(4), counts)
    X = np.arange(100)[:, None]
    y = np.eye(4)[labels] if one_hot else labels
    splits = data.split(X, y, 0.15, 0.25, key=jax.random.key(seed), stratify=True)
    plain = data.split(X, y, 0.15, 0.25, key=jax.random.key(seed))
    assert [len(p[0]) for p in splits] == [len(p[0]) for p in plain] == [60, 15, 25]
    for X_part, _ in splits:
        share = counts * len(X_part) / 100
        got = np.bincount(labels[X_part[:, 0]], minlength=4)
        assert np.all(np.abs(got - share) < 1), (got, share)
    ids = np.concatenate([X_part[:, 0] for X_part, _ in splits])
    np.testing.assert_array_equal(np.sort(ids), np.arange(100))


def test_split_errors(key):
    X, y = _ids(10)
    with pytest.raises(
        ValueError, match=r"y: expected shape \(10, ...\) to match X .*got \(9,\)"
    ):
        data.split(X, y[:9], key=key)
    for name, kwargs in [
        ("val", {"val": -0.1}),
        ("val", {"val": 1.0}),
        ("test", {"test": 1.5}),
    ]:
        with pytest.raises(
            ValueError, match=rf"{name}: expected a fraction in \[0, 1\)"
        ):
            data.split(X, y, key=key, **kwargs)
    with pytest.raises(ValueError, match=r"val \+ test: expected a sum < 1"):
        data.split(X, y, 0.5, 0.5, key=key)
    with pytest.raises(ValueError, match="test: expected a fraction that leaves"):
        data.split(X, y, 0.1, 0.04, key=key)  # 0.4 examples rounds to none
    with pytest.raises(ValueError, match="val: expected a fraction that leaves"):
        data.split(X, y, 0.01, 0.2, key=key)
    with pytest.raises(ValueError, match=r"val \+ test: expected a sum that leaves"):
        data.split(X[:2], y[:2], 0.45, 0.45, key=key)
    with pytest.raises(ValueError, match=r"key: expected one jax\.random key"):
        data.split(X, y, key=None)
    with pytest.raises(ValueError, match=r"key: expected one jax\.random key"):
        data.split(X, y, key=0)
    with pytest.raises(ValueError, match="y: expected class labels when stratify"):
        data.split(X, None, key=key, stratify=True)
    with pytest.raises(TypeError, match="val: expected a real number"):
        data.split(X, y, "0.1", key=key)
    with pytest.raises(TypeError, match="X: expected a numeric array"):
        data.split(np.array(["a", "b"]), None, key=key)
    with pytest.raises(ValueError, match="X: expected an array with a batch axis"):
        data.split(np.float32(1.0), None, key=key)


# --- Standardizer -----------------------------------------------------------------


def test_standardizer_fits_on_train_and_matches_sklearn(key):
    rng = np.random.default_rng(0)
    X = rng.normal([5.0, -3.0, 100.0], [2.0, 0.5, 30.0], size=(100, 3))
    (X_tr, _), (X_va, _), (X_te, _) = data.split(X.astype(np.float32), None, key=key)
    scaler = data.Standardizer.fit(X_tr)
    oracle = StandardScaler().fit(X_tr.astype(np.float64))
    # float32 statistics against float64: agree to float32 rounding.
    np.testing.assert_allclose(scaler.mean, oracle.mean_, rtol=1e-5)
    np.testing.assert_allclose(scaler.std, oracle.scale_, rtol=1e-5)
    Z_tr = scaler.transform(X_tr)
    np.testing.assert_allclose(Z_tr.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(Z_tr.std(axis=0), 1.0, rtol=1e-5)
    for part in (X_va, X_te):  # train statistics, not the part's own
        np.testing.assert_allclose(
            scaler.transform(part), oracle.transform(part), rtol=1e-4, atol=1e-5
        )
    np.testing.assert_allclose(
        scaler.inverse_transform(scaler.transform(X_te)), X_te, rtol=1e-5
    )
    again, Z = data.Standardizer.fit_transform(X_tr)
    np.testing.assert_array_equal(Z, Z_tr)
    np.testing.assert_array_equal(again.mean, scaler.mean)


def test_constant_and_nan_features():
    X = np.array(
        [[1.0, 0.1, 0.0, np.nan], [3.0, 0.1, 0.0, np.nan], [np.nan, 0.1, 0.0, np.nan]],
        np.float32,
    )
    scaler = data.Standardizer.fit(X)
    np.testing.assert_allclose(scaler.mean, [2.0, 0.1, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(scaler.std, [1.0, 1.0, 1.0, 1.0])  # nanstd of [1,3] is 1
    Z = np.asarray(scaler.transform(X))
    np.testing.assert_allclose(
        Z[:2, :3], [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], atol=1e-6
    )
    assert np.isnan(Z[2, 0]) and np.isnan(Z[:, 3]).all()  # NaNs stay NaN


def test_standardizer_is_a_pytree_and_works_in_jit():
    X = np.random.default_rng(1).normal(size=(50, 2, 3)).astype(np.float32)
    scaler = data.Standardizer.fit(X)
    assert scaler.mean.shape == scaler.std.shape == (2, 3)
    assert len(jax.tree.leaves(scaler)) == 2
    jitted = jax.jit(lambda s, x: s.transform(x))(scaler, X)
    np.testing.assert_allclose(jitted, scaler.transform(X), rtol=1e-6)
    fitted = jax.jit(data.Standardizer.fit)(X)
    np.testing.assert_allclose(fitted.std, scaler.std, rtol=1e-6)
    ints = data.Standardizer.fit(np.arange(10)[:, None])
    assert ints.mean.dtype == jnp.float32


def test_standardizer_errors():
    scaler = data.Standardizer.fit(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"X: expected shape \(batch, 3\)"):
        scaler.transform(np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"X: expected shape \(batch, 3\)"):
        scaler.inverse_transform(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="X: expected at least one example"):
        data.Standardizer.fit(np.ones((0, 3)))
    with pytest.raises(ValueError, match="X: expected an array with a batch axis"):
        data.Standardizer.fit(np.float32(2.0))


# --- epoch batches -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "batch_size", "drop", "expected"),
    [(10, 3, False, 4), (10, 3, True, 3), (9, 3, False, 3), (5, 8, False, 1)],
)
def test_num_batches(n, batch_size, drop, expected):
    assert data.num_batches(n, batch_size, drop) == expected


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (12, 4), (5, 8)])
def test_epoch_batches_count_every_example_exactly_once(n, batch_size, key):
    idx, w = data.epoch_batches(key, n, batch_size)
    k = data.num_batches(n, batch_size)
    assert idx.shape == w.shape == (k, batch_size)
    assert idx.dtype == jnp.int32
    idx, w = np.asarray(idx).ravel(), np.asarray(w).ravel()
    assert w.sum() == n and set(np.unique(w)) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.sort(idx[w == 1]), np.arange(n))
    assert np.all((idx >= 0) & (idx < n))  # padded slots are real examples
    assert np.all(w[:n] == 1)  # the padding is at the end, in the last batch


def test_epoch_batches_drop_remainder(key):
    idx, w = data.epoch_batches(key, 10, 3, drop_remainder=True)
    assert idx.shape == (3, 3) and float(w.sum()) == 9.0
    assert len(np.unique(np.asarray(idx))) == 9


def test_epoch_batches_new_order_per_key_same_for_same_key(key):
    a, _ = data.epoch_batches(key, 100, 10)
    b, _ = data.epoch_batches(key, 100, 10)
    c, _ = data.epoch_batches(jax.random.fold_in(key, 1), 100, 10)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    raw, _ = data.epoch_batches(jax.random.PRNGKey(0), 100, 10)  # legacy raw keys
    assert raw.shape == (10, 10)


def test_weighted_batch_means_over_a_scan_give_the_full_mean(key):
    # What the training engine does: scan over the batches, weighted mean per
    # batch, and every example counts once per epoch.
    x = jnp.asarray(np.random.default_rng(0).normal(size=10), jnp.float32)

    @jax.jit
    def epoch(key):
        idx, w = data.epoch_batches(key, 10, 4)

        def body(total, batch):
            i, wb = batch
            return total + jnp.sum(wb * x[i] ** 2), jnp.sum(wb)

        total, counts = jax.lax.scan(body, jnp.zeros((), jnp.float32), (idx, w))
        return total / jnp.sum(counts), counts

    mean, counts = epoch(key)
    np.testing.assert_allclose(mean, jnp.mean(x**2), rtol=1e-6)
    np.testing.assert_array_equal(counts, [4, 4, 2])
    keys = jax.random.split(key, 2)
    np.testing.assert_allclose(jax.vmap(epoch)(keys)[0], [mean, mean], rtol=1e-6)


def test_epoch_batches_errors(key):
    with pytest.raises(ValueError, match=r"key: expected one jax\.random key"):
        data.epoch_batches(jax.random.split(key, 2), 10, 3)
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1"):
        data.epoch_batches(key, 10, 0)
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        data.epoch_batches(key, 0, 3)
    with pytest.raises(ValueError, match="batch_size: expected at most n = 5"):
        data.epoch_batches(key, 5, 8, drop_remainder=True)
    with pytest.raises(TypeError, match="batch_size: expected an integer"):
        data.num_batches(10, 2.5)


# --- batches (plain iterator) -----------------------------------------------------


def test_batches_in_order_with_a_smaller_last_batch():
    X, y = _ids(10)
    got = list(data.batches(X, y, 4))
    assert [len(Xb) for Xb, _ in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([Xb for Xb, _ in got]), X)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in got]), y)
    assert [len(Xb) for Xb, _ in data.batches(X, y, 4, drop_remainder=True)] == [4, 4]
    assert all(yb is None for _, yb in data.batches(X, None, 4))


def test_batches_shuffled_with_a_key(key):
    X, y = _ids(10)
    got = list(data.batches(jnp.asarray(X), jnp.asarray(y), 3, key=key))
    ids = np.concatenate([np.asarray(Xb[:, 0]) for Xb, _ in got])
    assert sorted(ids) == list(range(10)) and list(ids) != list(range(10))
    for Xb, yb in got:
        np.testing.assert_array_equal(yb, 10 * Xb[:, 0])
    again = np.concatenate([Xb[:, 0] for Xb, _ in data.batches(X, y, 3, key=key)])
    np.testing.assert_array_equal(ids, again)


def test_batches_check_arguments_at_the_call(key):
    X, y = _ids(10)
    with pytest.raises(ValueError, match=r"y: expected shape \(10, ...\) to match X"):
        data.batches(X, y[:3], 4)  # no next() needed
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1"):
        data.batches(X, y, 0)
    with pytest.raises(ValueError, match=r"key: expected one jax\.random key"):
        data.batches(X, y, 4, key=3)
    with pytest.raises(ValueError, match="batch_size: expected at most n = 10"):
        data.batches(X, y, 11, drop_remainder=True)
