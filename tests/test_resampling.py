"""Tests of the resampling weights: k-fold masks equal scikit-learn's splits for the
same seed; bootstrap counts follow the multinomial law; nested training subsets."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import annjax as ann

model_selection = pytest.importorskip("sklearn.model_selection")


def sklearn_masks(splitter, X, y=None) -> np.ndarray:
    masks = np.zeros((splitter.get_n_splits(), len(X)), np.float32)
    for k, (_, test) in enumerate(splitter.split(X, y)):
        masks[k, test] = 1
    return masks


@pytest.mark.parametrize(("n", "folds"), [(10, 5), (23, 4), (7, 7)])
@pytest.mark.parametrize("seed", [None, 0, 42])
def test_kfold_equals_sklearn(n, folds, seed):
    splitter = model_selection.KFold(folds, shuffle=seed is not None, random_state=seed)
    got = ann.analysis.kfold_weights(n, folds, seed=seed)
    np.testing.assert_array_equal(got.held_out, sklearn_masks(splitter, np.zeros(n)))
    np.testing.assert_array_equal(got.train, 1 - got.held_out)
    assert got.held_out.shape == (folds, n) and (got.held_out.sum(0) == 1).all()


@pytest.mark.parametrize("seed", [None, 0, 7])
@pytest.mark.parametrize("folds", [3, 5])
def test_stratified_kfold_equals_sklearn(seed, folds):
    rng = np.random.default_rng(0)
    y = rng.choice([3, 0, 7], size=47, p=[0.5, 0.3, 0.2])  # labels out of order
    splitter = model_selection.StratifiedKFold(
        folds, shuffle=seed is not None, random_state=seed
    )
    want = sklearn_masks(splitter, np.zeros(47), y)
    got = ann.analysis.kfold_weights(y, folds, stratify=True, seed=seed)
    np.testing.assert_array_equal(got.held_out, want)
    one_hot = np.eye(8)[y]  # one-hot labels give the same split
    np.testing.assert_array_equal(
        ann.analysis.kfold_weights(one_hot, folds, stratify=True, seed=seed).held_out,
        want,
    )


def test_bootstrap_counts_are_multinomial(key):
    n, rounds = 200, 400
    W = np.asarray(ann.analysis.bootstrap_weights(n, rounds, key=key))
    assert W.shape == (rounds, n) and W.dtype == np.float32
    np.testing.assert_array_equal(W.sum(1), n)
    assert (np.round(W) == W).all() and W.min() >= 0
    # Left out with probability (1 - 1/n)^n ≈ 0.366; 80,000 counts give a
    # standard error of 0.0017, so 0.01 fails for a wrong draw (e.g. a permutation).
    assert abs((W == 0).mean() - (1 - 1 / n) ** n) < 0.01
    # Count of one example ~ Binomial(n, 1/n): variance 1 - 1/n.
    assert abs(W.var() - (1 - 1 / n)) < 0.03
    assert len({row.tobytes() for row in W}) == rounds  # distinct replicas


def test_bootstrap_key_decides(key):
    a = ann.analysis.bootstrap_weights(30, 4, key=key)
    b = ann.analysis.bootstrap_weights(30, 4, key=key)
    c = ann.analysis.bootstrap_weights(30, 4, key=jax.random.fold_in(key, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_subset_sizes_follow_sklearn_learning_curve():
    sizes = np.array([0.005, 0.1, 0.33, 0.55, 0.78, 1.0])
    # scikit-learn's own translation (a private helper: the oracle, not the API)
    want = model_selection._validation._translate_train_sizes(sizes, 90)
    np.testing.assert_array_equal(ann.analysis.subset_sizes(90, list(sizes)), want)
    np.testing.assert_array_equal(ann.analysis.subset_sizes(90, [5, 90]), [5, 90])


def test_subset_weights_nested_random_subsets(key):
    W = np.asarray(ann.analysis.subset_weights(20, [0.25, 0.5, 1.0], 3, key=key))
    assert W.shape == (9, 20)
    np.testing.assert_array_equal(W.sum(1), [5, 5, 5, 10, 10, 10, 20, 20, 20])
    by_size = W.reshape(3, 3, 20)  # (size, round, n)
    assert (by_size[0] <= by_size[1]).all() and (by_size[1] <= by_size[2]).all()
    assert not np.array_equal(by_size[0, 0], by_size[0, 1])  # rounds differ


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda k: ann.analysis.bootstrap_weights(0, 2, key=k), "n: expected"),
        (lambda k: ann.analysis.bootstrap_weights(5, 0, key=k), "rounds: expected"),
        (lambda k: ann.analysis.bootstrap_weights(5, 2, key=0), "key: expected"),
        (lambda k: ann.analysis.kfold_weights(5, 1), "folds: expected"),
        (lambda k: ann.analysis.kfold_weights(3, 4), "folds: expected at most"),
        (lambda k: ann.analysis.kfold_weights(9, 3, stratify=True), "data: expected"),
        (
            lambda k: ann.analysis.kfold_weights([0, 1, 1], 3, stratify=True),
            "folds: expected at most the size",
        ),
        (lambda k: ann.analysis.subset_weights(9, [1.5], 2, key=k), "sizes: expected"),
        (lambda k: ann.analysis.subset_weights(9, [10], 2, key=k), "sizes: expected"),
        (lambda k: ann.analysis.subset_weights(9, [], 2, key=k), "sizes: expected"),
    ],
)
def test_errors(key, call, match):
    with pytest.raises(ValueError, match=match):
        call(key)
