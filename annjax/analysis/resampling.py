"""Resampling protocols as example weights: one row per model, one column per example.

Every protocol that retrains a model on parts of one data set is a weighting
of that data set: a bootstrap sample is a vector of counts, a cross-validation
fold is a 0/1 mask, a smaller training set is a mask. Stacked as a matrix of
shape ``(n_models, n_examples)``, the weights let ``fit_many`` train every
model of the protocol in one compiled call (``fit_many(sample_weight=W)``).

* :func:`bootstrap_weights`: R rows of counts c_ri = #{j : I_rj = i} for
  indices I_rj drawn uniformly with replacement (Σ_i c_ri = n);
* :func:`kfold_weights`: the k train/held-out masks of scikit-learn's ``KFold``
  (or ``StratifiedKFold``), the same split for the same seed;
* :func:`subset_weights`: nested random subsets of growing size, for the
  learning curve (size-major: row s·R + r is size s of round r).

Examples:
  >>> import jax
  >>> import annjax as ann
  >>> W = ann.analysis.bootstrap_weights(5, rounds=3, key=jax.random.key(0))
  >>> W.shape, W.sum(axis=1).tolist()
  ((3, 5), [5.0, 5.0, 5.0])
  >>> folds = ann.analysis.kfold_weights(5, folds=5)
  >>> folds.held_out.tolist()[0], folds.train.tolist()[0]
  ([1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from annjax import _checks

Array = jax.Array

__all__ = [
    "Folds",
    "bootstrap_weights",
    "kfold_weights",
    "subset_sizes",
    "subset_weights",
]


def bootstrap_weights(n: int, rounds: int, *, key: Array) -> Array:
    """Returns the counts of ``rounds`` bootstrap samples of n examples, (rounds, n).

    Row r counts how often each example was drawn in n uniform draws with
    replacement, c_ri = Σ_j [I_rj = i], so a model weighted by row r sees the
    bootstrap sample (X[I_r], y[I_r]) (a weighted loss Σ_i c_ri ℓ_i equals the
    sum over the sample). About e⁻¹ ≈ 36.8 % of the examples get weight 0.

    Args:
      n: number of training examples.
      rounds: number of bootstrap replicas.
      key: a ``jax.random.key``.

    Returns:
      float32 counts of shape (rounds, n), each row summing to n.

    Raises:
      ValueError: n or rounds < 1, or key is not one key.
    """
    n = _checks.integer("n", n, minimum=1)
    rounds = _checks.integer("rounds", rounds, minimum=1)
    key = _checks.random_key("key", key)
    draws = jax.random.randint(key, (rounds, n), 0, n)
    rows = jnp.arange(rounds)[:, None]
    return jnp.zeros((rounds, n), jnp.float32).at[rows, draws].add(1.0)


class Folds(NamedTuple):
    """Cross-validation masks, both of shape (folds, n): row k is fold k's model.

    Attributes:
      train: 1 where fold k's model trains (the other k − 1 folds), else 0.
      held_out: 1 on fold k itself (its validation set), else 0; train +
        held_out = 1 everywhere and every example is held out exactly once.
    """

    train: np.ndarray
    held_out: np.ndarray


def _kfold_ids(n: int, folds: int, rng: np.random.RandomState | None) -> np.ndarray:
    """Returns each example's fold as scikit-learn's ``KFold``: consecutive
    blocks of (optionally shuffled) indices, the first n mod k one longer."""
    order = np.arange(n)
    if rng is not None:
        rng.shuffle(order)
    sizes = np.full(folds, n // folds)
    sizes[: n % folds] += 1
    ids = np.empty(n, np.int64)
    ids[order] = np.repeat(np.arange(folds), sizes)
    return ids


def _stratified_ids(
    labels: np.ndarray, folds: int, rng: np.random.RandomState | None
) -> np.ndarray:
    """Returns each example's fold as scikit-learn's ``StratifiedKFold``.

    Classes are numbered by first appearance; the sorted labels are dealt to
    the folds round robin, which fixes how many of each class every fold
    holds; each class's examples then get their folds in blocks, in data
    order (shuffled per class with ``rng``).
    """
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    _, by_appearance = np.unique(first, return_inverse=True)
    encoded = by_appearance[inverse.reshape(-1)]
    classes = len(first)
    if np.all(folds > np.bincount(encoded)):
        raise _checks.fail(
            "folds",
            "at most the size of the largest class",
            folds,
            "Use fewer folds, or stratify=False.",
        )
    ordered = np.sort(encoded)
    allocation = np.stack(
        [np.bincount(ordered[i::folds], minlength=classes) for i in range(folds)]
    )
    ids = np.empty(len(labels), np.int64)
    for c in range(classes):
        block = np.repeat(np.arange(folds), allocation[:, c])
        if rng is not None:
            rng.shuffle(block)
        ids[encoded == c] = block
    return ids


def _class_labels(y: Any) -> np.ndarray:
    """Returns labels (n,) from labels (n,)/(n, 1) or one-hot rows (n, k)."""
    y = np.asarray(_checks.numeric_array("y", y))
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    if y.ndim == 2:
        y = y[:, 0]
    if y.ndim != 1:
        raise _checks.fail("y", "labels (n,) or one-hot rows (n, k)", y.shape)
    return y


def kfold_weights(
    data: int | ArrayLike,
    folds: int = 5,
    *,
    stratify: bool = False,
    seed: int | None = None,
) -> Folds:
    """Returns the k-fold masks of scikit-learn's ``KFold``/``StratifiedKFold``.

    Fold k's model trains with weights ``train[k]`` and validates on
    ``held_out[k]``; ``held_out[k]`` marks the indices scikit-learn's k-th
    split yields as its test part, for the same ``seed``:
    ``KFold(folds, shuffle=seed is not None, random_state=seed)`` (or
    ``StratifiedKFold`` with ``stratify=True``). The seed is NumPy's (the
    shuffle is ``np.random.RandomState(seed).shuffle``, as scikit-learn's),
    not a jax key, so the split is the one scikit-learn users already have.

    Args:
      data: the number of examples n, or, with ``stratify``, the labels y
        ((n,), (n, 1) or one-hot (n, k)).
      folds: k >= 2.
      stratify: keep each class's share in every fold (needs the labels).
      seed: shuffle with this NumPy seed; None keeps the data order.

    Returns:
      :class:`Folds` of float32 masks, shape (folds, n).

    Raises:
      ValueError: folds < 2 or more folds than examples (or than the largest
        class, stratified); stratify without labels.
    """
    folds = _checks.integer("folds", folds, minimum=2)
    if stratify:
        if isinstance(data, int | np.integer):
            raise _checks.fail(
                "data", "the labels y with stratify=True", data, "Pass y, not n."
            )
        labels = _class_labels(data)
        n = len(labels)
    else:
        n = data if isinstance(data, int | np.integer) else len(np.asarray(data))
        n = _checks.integer("n", n, minimum=1)
    if folds > n:
        raise _checks.fail("folds", f"at most the number of examples {n}", folds)
    rng = None if seed is None else np.random.RandomState(seed)
    split = _stratified_ids if stratify else _kfold_ids
    ids = split(labels if stratify else n, folds, rng)
    held_out = (ids[None, :] == np.arange(folds)[:, None]).astype(np.float32)
    return Folds(1.0 - held_out, held_out)


def subset_sizes(n: int, sizes: Sequence[float]) -> np.ndarray:
    """Returns the absolute training-set sizes: a float in (0, 1] is a fraction
    of n (rounded down, at least 1, as scikit-learn's ``learning_curve``), an
    int a count in [1, n]."""
    out = []
    for s in sizes:
        if isinstance(s, float | np.floating):
            if not 0.0 < s <= 1.0:
                raise _checks.fail("sizes", "fractions in (0, 1] or counts", s)
            out.append(max(1, int(s * n)))
        else:
            s = _checks.integer("sizes", s)
            if not 1 <= s <= n:
                raise _checks.fail("sizes", f"counts in [1, {n}]", s)
            out.append(s)
    if not out:
        raise _checks.fail("sizes", "at least one size", sizes)
    return np.asarray(out, np.int64)


def subset_weights(n: int, sizes: Sequence[float], rounds: int, *, key: Array) -> Array:
    """Returns 0/1 masks of random training subsets, shape (len(sizes)·rounds, n).

    Round r draws one random order of the n examples; size m_s takes its
    first m_s, so within a round the subsets are nested (the curve then
    moves by the added data, not by a new draw). Row s·rounds + r is size s
    of round r.

    Args:
      n: number of training examples.
      sizes: fractions in (0, 1] or counts (see :func:`subset_sizes`).
      rounds: random subsets per size.
      key: a ``jax.random.key``.

    Returns:
      float32 masks, each row holding m_s ones.
    """
    n = _checks.integer("n", n, minimum=1)
    rounds = _checks.integer("rounds", rounds, minimum=1)
    key = _checks.random_key("key", key)
    m = jnp.asarray(subset_sizes(n, sizes))
    keys = jax.random.split(key, rounds)
    ranks = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)  # (rounds, n)
    masks = ranks[None, :, :] < m[:, None, None]  # example i kept if its rank < m
    return masks.reshape(len(m) * rounds, n).astype(jnp.float32)
