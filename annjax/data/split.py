"""Steps 1 and 2 of the lecture's data protocol (see :mod:`annjax.data`).

:func:`split` the examples once into train, validation and test sets, then
fit a :class:`Standardizer` on the training split only and apply it to all
three, so nothing about the validation or test data leaks into training.

Examples:
  >>> import jax
  >>> import numpy as np
  >>> import annjax as ann
  >>> X = np.random.default_rng(0).normal(5.0, 2.0, size=(100, 3))
  >>> y = np.arange(100) % 2
  >>> (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = ann.data.split(
  ...     X, y, val=0.1, test=0.2, key=jax.random.key(0), stratify=True)
  >>> X_tr.shape, X_va.shape, X_te.shape
  ((70, 3), (10, 3), (20, 3))
  >>> scaler = ann.data.Standardizer.fit(X_tr)        # training statistics only
  >>> X_tr, X_va, X_te = (scaler.transform(x) for x in (X_tr, X_va, X_te))
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from annjax import _checks

Array = jax.Array
Data = Any  # a NumPy or jax array; slices keep the kind they were given

__all__ = [
    "Splits",
    "Standardizer",
    "split",
]


# --- validation -------------------------------------------------------------


def _as_data(name: str, x: Any) -> Data:
    """Returns ``x`` as an array with a batch axis (jax arrays stay on device)."""
    _checks.numeric_array(name, x)
    if not isinstance(x, jax.Array):
        x = np.asarray(x)
    if x.ndim == 0:
        raise _checks.fail(name, "an array with a batch axis", "a scalar")
    return x


def _check_pair(X: Any, y: Any) -> tuple[Data, Data | None]:
    """Returns X and y as arrays, after checking they hold as many examples."""
    X = _as_data("X", X)
    if y is None:
        return X, None
    y = _as_data("y", y)
    if y.shape[0] != X.shape[0]:
        raise _checks.fail(
            "y",
            f"shape ({X.shape[0]}, ...) to match X of shape {X.shape}",
            y.shape,
            "X and y must hold the same examples in the same order.",
        )
    return X, y


def _fraction(name: str, value: Any) -> float:
    """Returns ``value`` if it is a fraction in [0, 1)."""
    v = _checks.number(name, value)
    if not 0.0 <= v < 1.0:
        raise _checks.fail(name, "a fraction in [0, 1)", value)
    return v


def _split_sizes(n: int, val: float, test: float) -> tuple[int, int, int]:
    """Returns (n_train, n_val, n_test): val, test rounded half up; train the rest."""
    val, test = _fraction("val", val), _fraction("test", test)
    if not val + test < 1.0:
        raise _checks.fail("val + test", "a sum < 1", val + test)
    sizes = {}
    for name, frac in (("val", val), ("test", test)):
        sizes[name] = int(np.floor(frac * n + 0.5))
        if frac > 0 and sizes[name] == 0:
            raise _checks.fail(
                name,
                f"a fraction that leaves at least one of the {n} examples "
                f"in the {name} split (>= {0.5 / n:.3g})",
                frac,
                f"Use {name}=0 for no {name} split.",
            )
    n_train = n - sizes["val"] - sizes["test"]
    if n_train < 1:
        raise _checks.fail(
            "val + test",
            f"a sum that leaves at least one of the {n} examples for training",
            val + test,
        )
    return n_train, sizes["val"], sizes["test"]


# --- split ------------------------------------------------------------------


class Splits(NamedTuple):
    """The result of :func:`split`: three ``(X, y)`` pairs.

    Unpack it as ``(X_tr, y_tr), (X_va, y_va), (X_te, y_te) = splits`` or read
    ``splits.train``, ``splits.val``, ``splits.test``. A part whose fraction is
    0 holds arrays with 0 examples; ``y`` is None in every part when ``split``
    was given ``y=None``.
    """

    train: tuple[Data, Data | None]
    val: tuple[Data, Data | None]
    test: tuple[Data, Data | None]


def _stratified_counts(class_sizes: np.ndarray, part_sizes: np.ndarray) -> np.ndarray:
    """Returns counts[c, p]: how many examples of class c go to part p.

    Each count is ⌊q⌋ or ⌈q⌉ of its quota q = n_c · n_p / n, every class is
    shared out entirely and every part gets exactly n_p examples (a controlled
    rounding of the table of quotas, which always exists).
    """
    n = int(class_sizes.sum())
    floor, remainder = np.divmod(np.outer(class_sizes, part_sizes), n)
    counts = floor.copy()
    for c in range(len(class_sizes)):  # each class: round up its largest remainders
        missing = class_sizes[c] - counts[c].sum()
        counts[c, np.argsort(-remainder[c], kind="stable")[:missing]] += 1
    # The parts may now be over or under their size: move a rounded-up example
    # of some class to a part where that class was rounded down, along a path
    # of parts from one with a surplus to one with a deficit (flow augmentation).
    surplus = counts.sum(axis=0) - part_sizes
    while surplus.any():
        down = counts > floor  # can give one back
        up = (remainder > 0) & (counts == floor)  # can take one more
        start = int(np.flatnonzero(surplus > 0)[0])
        came_from = {start: (-1, -1)}
        frontier = [start]
        while frontier and not any(surplus[p] < 0 for p in came_from):
            p = frontier.pop(0)
            for q in range(len(part_sizes)):
                movers = np.flatnonzero(down[:, p] & up[:, q])
                if q not in came_from and movers.size:
                    came_from[q] = (p, int(movers[0]))
                    frontier.append(q)
        q = next(p for p in came_from if surplus[p] < 0)
        while q != start:
            p, c = came_from[q]
            counts[c, p] -= 1
            counts[c, q] += 1
            q = p
        surplus = counts.sum(axis=0) - part_sizes
    return counts


def _stratified_parts(labels: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Returns the part (0, 1, 2, …) of each example, class by class.

    ``labels`` are class ids in the shuffled order; within a class the first
    examples go to part 0, the next to part 1, and so on.
    """
    classes, inverse = np.unique(labels, axis=0, return_inverse=True)
    cls = inverse.reshape(-1)
    class_sizes = np.bincount(cls, minlength=len(classes))
    counts = _stratified_counts(class_sizes, np.asarray(sizes))
    order = np.argsort(cls, kind="stable")
    rank = np.empty_like(cls)
    rank[order] = np.arange(cls.size) - np.repeat(
        np.cumsum(class_sizes) - class_sizes, class_sizes
    )
    bounds = np.cumsum(counts, axis=1)  # (classes, parts)
    return (rank[:, None] >= bounds[cls]).sum(axis=1)


def split(
    X: ArrayLike,
    y: ArrayLike | None = None,
    val: float = 0.1,
    test: float = 0.2,
    *,
    key: jax.Array,
    stratify: bool = False,
) -> Splits:
    r"""Returns a random train/validation/test split of the examples.

    .. math:: n_\text{test} = \lfloor \text{test}\cdot n + \tfrac12 \rfloor,\quad
              n_\text{val} = \lfloor \text{val}\cdot n + \tfrac12 \rfloor,\quad
              n_\text{train} = n - n_\text{val} - n_\text{test}

    The examples are shuffled with ``jax.random.permutation(key, n)``, whose
    indices come back to the host and select the rows (a NumPy array stays
    NumPy, a jax array stays a jax array on its device); every example lands
    in exactly one part, in shuffled order. The same key gives the same split.

    With ``stratify=True`` each part keeps the class proportions of ``y``:
    part p holds ⌊n_c·n_p/n⌋ or ⌈n_c·n_p/n⌉ examples of class c (within one
    example of its share), and the part sizes are the same as without it.
    Classes are the distinct values (rows, for one-hot ``y``) of ``y``. Each
    part is in an order of its own (a second permutation, from
    ``fold_in(key, 1)``), so any prefix of it is a random subset.

    Fit preprocessing such as :class:`Standardizer` on ``train`` only.

    Args:
      X: inputs, shape ``(n, ...)``.
      y: targets, shape ``(n, ...)``, or None for unsupervised data.
      val: fraction of the examples for validation, in [0, 1).
      test: fraction for testing, in [0, 1); ``val + test < 1``.
      key: a ``jax.random.key``; required, so that a split is reproducible.
      stratify: keep the class proportions of ``y`` in each part.

    Returns:
      ``Splits(train=(X, y), val=(X, y), test=(X, y))``.

    Raises:
      ValueError: for X and y of different lengths, a fraction outside [0, 1),
        ``val + test >= 1``, a part that would be empty though its fraction
        is > 0, a missing key, or ``stratify=True`` without ``y``.
    """
    _checks.random_key("key", key)
    X, y = _check_pair(X, y)
    n = X.shape[0]
    sizes = _split_sizes(n, val, test)
    perm = np.asarray(jax.random.permutation(key, n))
    if stratify:
        if y is None:
            raise _checks.fail("y", "class labels when stratify=True", None)
        part = _stratified_parts(np.asarray(y)[perm].reshape(n, -1), sizes)
        # A class's examples join the parts in perm's order, so in perm's order
        # a small part holds each class in its own narrow stretch (a prefix of
        # it misses whole classes): a second permutation orders the parts.
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), n))
        perm, part = perm[order], part[order]
    else:
        part = np.repeat(np.arange(3), sizes)
    pairs = []
    for i in range(3):
        idx = perm[part == i]
        pairs.append((X[idx], None if y is None else y[idx]))
    return Splits(*pairs)


# --- standardisation --------------------------------------------------------


@jax.jit
def _statistics(x: Array) -> tuple[Array, Array]:
    """Returns the NaN-aware (μ, σ) of :meth:`Standardizer.fit`."""
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else float
    x = x.astype(jnp.result_type(dtype))
    mean, std = jnp.nanmean(x, axis=0), jnp.nanstd(x, axis=0)
    # Rounding leaves a constant feature with σ ≈ ε·|μ| rather than exactly 0.
    constant = jnp.isnan(std) | (std <= 10 * jnp.finfo(x.dtype).eps * jnp.abs(mean))
    return jnp.nan_to_num(mean), jnp.where(constant, 1, std).astype(x.dtype)


class Standardizer(NamedTuple):
    r"""Per-feature standardisation z = (x − μ) / σ, fitted on training data.

    A NamedTuple, hence a pytree: it passes through ``jax.jit`` and
    ``flax.serialization`` as it is. Fit it on the training split only and
    apply the same statistics to validation and test data (module example).

    Attributes:
      mean: μ, the per-feature mean over the batch axis, shape ``X.shape[1:]``.
      std: σ, the per-feature standard deviation (ddof = 0), with 1 in place
        of a constant feature's 0.
    """

    mean: Array
    std: Array

    @classmethod
    def fit(cls, X: ArrayLike) -> Standardizer:
        r"""Returns the Standardizer with the statistics of ``X`` over axis 0.

        .. math:: μ_j = \frac1n \sum_i x_{ij}, \qquad
                  σ_j = \sqrt{\frac1n \sum_i (x_{ij} - μ_j)^2}

        NaNs are ignored (``nanmean``/``nanstd``). A constant feature
        (``σ ≤ 10·ε·|μ|``, rounding noise) gets σ = 1 so it maps to 0 instead of
        dividing by zero; an all-NaN feature gets μ = 0, σ = 1.

        Raises:
          ValueError: if ``X`` has no batch axis or no examples.
        """
        x = jnp.asarray(_as_data("X", X))
        if x.shape[0] == 0:
            raise _checks.fail("X", "at least one example to fit on", x.shape)
        return cls(*_statistics(x))

    def _checked(self, X: ArrayLike) -> Array:
        x = jnp.asarray(_as_data("X", X))
        if x.shape[1:] != self.mean.shape:
            raise _checks.fail(
                "X",
                f"shape (batch, {', '.join(map(str, self.mean.shape))}) "
                "as the data the Standardizer was fitted on",
                x.shape,
            )
        return x.astype(self.mean.dtype)

    def transform(self, X: ArrayLike) -> Array:
        r"""Returns z = (x − μ) / σ for each example of ``X``."""
        return (self._checked(X) - self.mean) / self.std

    def inverse_transform(self, Z: ArrayLike) -> Array:
        r"""Returns x = z·σ + μ, undoing :meth:`transform`."""
        return self._checked(Z) * self.std + self.mean

    @classmethod
    def fit_transform(cls, X: ArrayLike) -> tuple[Standardizer, Array]:
        """Returns ``(scaler, scaler.transform(X))`` with ``scaler = fit(X)``."""
        scaler = cls.fit(X)
        return scaler, scaler.transform(X)
