"""Batching: one epoch's order as equal-shaped batches, and minibatch iteration.

:func:`epoch_batches` gives a compiled ``lax.scan`` its batches (the last one
filled up with weight-0 padding); :func:`batches` serves a hand-written loop.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from annjax import _checks
from annjax.data.split import Data, _check_pair

Array = jax.Array

__all__ = ["batches", "epoch_batches", "num_batches"]


def num_batches(n: int, batch_size: int, drop_remainder: bool = False) -> int:
    r"""Returns the number of batches per epoch, ⌈n / B⌉ (⌊n / B⌋ when dropping).

    Raises:
      ValueError: if n < 1, B < 1, or ``drop_remainder`` leaves no batch (B > n).
    """
    n = _checks.integer("n", n, minimum=1)
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    if not drop_remainder:
        return -(-n // batch_size)
    if batch_size > n:
        raise _checks.fail(
            "batch_size",
            f"at most n = {n} with drop_remainder=True",
            batch_size,
            "Lower batch_size or keep the partial batch.",
        )
    return n // batch_size


@functools.partial(jax.jit, static_argnames=("n", "batch_size", "drop_remainder"))
def epoch_batches(
    key: jax.Array, n: int, batch_size: int, drop_remainder: bool = False
) -> tuple[Array, Array]:
    r"""Returns one epoch's batches as ``(indices, weights)``, both ``(K, B)``.

    K = :func:`num_batches`. The order is ``jax.random.permutation(key, n)``:
    split a new key every epoch for a new order. Every batch has the same
    shape, so a ``lax.scan`` can run over them:

    * ``drop_remainder=False`` (default): the permutation is padded to K·B by
      wrapping around to its start, and ``weights`` is 1 for the n real
      positions and 0 for the K·B − n padded ones (all in the last batch).
      Every example counts exactly once per epoch if the loss is the
      weighted mean

      .. math:: L_b = \frac{\sum_i w_{bi}\,\ell(x_{I_{bi}}, y_{I_{bi}})}
                {\sum_i w_{bi}}

    * ``drop_remainder=True``: the n − K·B examples at the end of the
      permutation are skipped this epoch (different ones every epoch); all
      weights are 1.

    Padded indices are real examples, so ``X[indices]`` never reads out of
    range. Jittable: ``n``, ``batch_size`` and ``drop_remainder`` are static.

    Returns:
      ``indices`` (int32) and ``weights`` (float), each of shape ``(K, B)``.

    Raises:
      ValueError: for a bad key, n < 1, batch_size < 1, or no batch at all.
    """
    _checks.random_key("key", key)
    return batches_of(jax.random.permutation(key, n), batch_size, drop_remainder)


def batches_of(
    order: Array, batch_size: int, drop_remainder: bool = False
) -> tuple[Array, Array]:
    """Returns :func:`epoch_batches` for a given order of the n examples.

    ``order`` is a permutation of ``range(n)`` (n = its length); the batches
    are padded or cut as :func:`epoch_batches` describes. Jittable.
    """
    n = order.shape[0]
    k = num_batches(n, batch_size, drop_remainder)
    slots = jnp.arange(k * batch_size)
    indices = order[slots % n].astype(jnp.int32)
    weights = (slots < n).astype(jnp.result_type(float))
    return indices.reshape(k, batch_size), weights.reshape(k, batch_size)


def _iterate(
    X: Data, y: Data | None, batch_size: int, order: np.ndarray | None, stop: int
) -> Iterator[tuple[Data, Data | None]]:
    for start in range(0, stop, batch_size):
        take = slice(start, min(start + batch_size, stop))
        if order is not None:
            take = order[take]
        yield X[take], None if y is None else y[take]


def batches(
    X: ArrayLike,
    y: ArrayLike | None,
    batch_size: int,
    *,
    key: jax.Array | None = None,
    drop_remainder: bool = False,
) -> Iterator[tuple[Data, Data | None]]:
    """Returns an iterator over ``(X_b, y_b)`` minibatches, for a hand-written loop.

    In order without ``key`` (the slices are views, no copy); shuffled by
    ``jax.random.permutation(key, n)`` with one (pass a new key each epoch).
    The last batch holds the remaining n − (K−1)·B examples, fewer than
    ``batch_size``, unless ``drop_remainder=True`` drops it. ``y_b`` is None
    when ``y`` is None. Arguments are checked at the call, not at the first
    ``next``.

    Raises:
      ValueError: for X and y of different lengths, batch_size < 1, a bad key,
        or ``drop_remainder=True`` with batch_size > n.
    """
    X, y = _check_pair(X, y)
    n = X.shape[0]
    k = num_batches(n, batch_size, drop_remainder)
    order = None
    if key is not None:
        _checks.random_key("key", key)
        order = np.asarray(jax.random.permutation(key, n))
    return _iterate(X, y, batch_size, order, min(n, k * batch_size))
