"""The lecture's bias–variance decomposition, measured from replica predictions.

A learning algorithm trained on R resampled training sets (bootstrap
replicas) gives R predictions ŷ_r(x) at each test point x. Their average (or,
for labels, their mode) is the *main prediction* ȳ(x), and the expected loss
over the replicas splits into a bias and a variance term:

* squared error (Geman, Bienenstock and Doursat, 1992), ȳ = mean_r ŷ_r:

  .. math::

     E_r[(ŷ_r - y)^2] = (ȳ - y)^2 + E_r[(ŷ_r - ȳ)^2]
     \\qquad \\text{(expected loss = bias² + variance)}

* 0-1 loss (Domingos, 2000), ȳ = mode_r ŷ_r (ties: the smallest label):
  expected loss E_r[ŷ_r ≠ y], bias [ȳ ≠ y], variance E_r[ŷ_r ≠ ȳ] (here the
  three do not add up: variance that lands on a biased point lowers the loss).

The three averages over the test points are named and defined as the three
return values of ``mlxtend.evaluate.bias_variance_decomp`` (for ``"mse"``,
``bias`` is the *squared* bias); :func:`decompose` also returns them per test
point. Everything here is a pure function of the predictions, so it runs
under ``jax.jit``; :mod:`annjax.analysis.resampling` draws the replicas' weights
and ``ann.analysis.bias_variance`` trains them in one ``fit_many``.

Examples:
  >>> import numpy as np
  >>> import annjax as ann
  >>> y = np.array([0.0, 1.0])
  >>> preds = np.array([[0.0, 2.0], [1.0, 2.0]])       # 2 replicas x 2 points
  >>> d = ann.analysis.decompose(preds, y, loss="mse")
  >>> float(d.expected_loss), float(d.bias), float(d.variance)
  (0.75, 0.625, 0.125)
  >>> d.point_bias.tolist()                          # (ȳ - y)² per point
  [0.25, 1.0]

References:
  Geman, Bienenstock and Doursat (1992), Neural networks and the bias/variance
  dilemma. Domingos (2000), A unified bias-variance decomposition.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from annjax import _checks

Array = jax.Array

__all__ = ["LOSSES", "BiasVariance", "decompose"]

#: The losses the decomposition is defined for (mlxtend's "0-1_loss" is "0-1").
LOSSES = ("mse", "0-1")


class BiasVariance(NamedTuple):
    """A bias–variance decomposition over R replicas and n test points.

    Attributes:
      expected_loss: the replicas' loss, averaged over replicas and points
        (mlxtend's ``avg_expected_loss``).
      bias: for ``"mse"`` the squared bias (ȳ − y)², for ``"0-1"`` the main
        prediction's error rate [ȳ ≠ y], averaged over the points
        (mlxtend's ``avg_bias``).
      variance: E_r[(ŷ_r − ȳ)²] or E_r[ŷ_r ≠ ȳ], averaged over the points
        (mlxtend's ``avg_var``).
      point_expected_loss: ``expected_loss`` per test point, shape (n,)
        (several outputs of a regression are averaged per point).
      point_bias: ``bias`` per test point, shape (n,).
      point_variance: ``variance`` per test point, shape (n,).
      main_prediction: ȳ per point: the replicas' mean (``"mse"``, shape of one
        replica's predictions) or mode (``"0-1"``, labels of shape (n,)).
      predictions: the replicas' predictions, shape (R, n, ...), as given.
      loss: ``"mse"`` or ``"0-1"``.
      weights: the replicas' training weights (rounds, n_train) when
        ``ann.analysis.bias_variance`` trained them, else None.
      models: the replicas themselves (a ``ManyResult``), or None.
    """

    expected_loss: Array
    bias: Array
    variance: Array
    point_expected_loss: Array
    point_bias: Array
    point_variance: Array
    main_prediction: Array
    predictions: Array
    loss: str
    weights: Array | None = None
    models: Any = None


def _replica_labels(predictions: Array, threshold: float) -> Array:
    """Returns labels (R, n) from labels (R, n), (R, n, 1) or scores (R, n, k)."""
    p = predictions
    if p.ndim == 3 and p.shape[-1] > 1:
        return jnp.argmax(p, axis=-1).astype(jnp.int32)
    if p.ndim == 3:
        p = p[..., 0]
    if p.ndim != 2:
        raise _checks.fail(
            "predictions",
            "labels of shape (rounds, n) or (rounds, n, 1), or scores (rounds, n, k)",
            p.shape,
        )
    if jnp.issubdtype(p.dtype, jnp.floating):
        p = p >= threshold
    return p.astype(jnp.int32)


def _true_labels(y_true: Array, n: int) -> Array:
    """Returns labels (n,) from labels (n,)/(n, 1) or one-hot rows (n, k)."""
    y = y_true
    if y.ndim == 2 and y.shape[1] > 1:
        y = jnp.argmax(y, axis=-1)
    elif y.ndim == 2:
        y = y[:, 0]
    if y.shape != (n,):
        raise _checks.fail(
            "y_true", f"labels of shape ({n},) or one-hot rows ({n}, k)", y_true.shape
        )
    if jnp.issubdtype(y.dtype, jnp.floating):
        y = jnp.round(y)
    return y.astype(jnp.int32)


def _mode(labels: Array) -> Array:
    """Returns the most frequent label per column of ``labels`` (R, n), the
    smallest among ties (as ``np.argmax(np.bincount(...))``).

    Counted by comparing each replica's label with all others, one replica at
    a time (memory R × n), so no number of classes is needed under jit.
    """
    counts = jax.lax.map(lambda row: jnp.sum(labels == row, axis=0), labels)
    best = counts == jnp.max(counts, axis=0)
    largest = jnp.iinfo(labels.dtype).max
    return jnp.min(jnp.where(best, labels, largest), axis=0)


def _zero_one(predictions: Array, y_true: Array, threshold: float) -> tuple:
    labels = _replica_labels(predictions, threshold)
    y = _true_labels(y_true, labels.shape[1])
    main = _mode(labels)
    wrong = (labels != y).astype(jnp.float32)
    spread = (labels != main).astype(jnp.float32)
    bias = (main != y).astype(jnp.float32)
    return wrong.mean(0), bias, spread.mean(0), main


def _squared(predictions: Array, y_true: Array) -> tuple:
    p = predictions
    dtype = p.dtype if jnp.issubdtype(p.dtype, jnp.floating) else jnp.float32
    y = y_true.astype(dtype)
    n = p.shape[1] if p.ndim >= 2 else None
    if y.shape != p.shape[1:] and not (
        n is not None and {y.shape, p.shape[1:]} == {(n,), (n, 1)}
    ):
        raise _checks.fail(
            "predictions",
            f"shape (rounds, *{y.shape}) for y_true of shape {y.shape}",
            p.shape,
        )
    p = p.reshape(p.shape[0], n, -1).astype(dtype)
    y = y.reshape(n, -1)
    main = p.mean(0)
    expected = jnp.mean((p - y) ** 2, axis=(0, 2))
    bias = jnp.mean((main - y) ** 2, axis=1)
    variance = jnp.mean((p - main) ** 2, axis=(0, 2))
    return expected, bias, variance, main.reshape(predictions.shape[1:])


def decompose(
    predictions: ArrayLike,
    y_true: ArrayLike,
    *,
    loss: str = "mse",
    threshold: float = 0.5,
) -> BiasVariance:
    """Returns the bias–variance decomposition of the replicas' predictions.

    With ŷ_r the prediction of replica r = 1..R at test point i and ȳ_i the
    main prediction (mean for ``"mse"``, mode for ``"0-1"``):

    .. math::

       \\text{mse:}\\quad E_r(ŷ_{ri} - y_i)^2
         = (ȳ_i - y_i)^2 + E_r(ŷ_{ri} - ȳ_i)^2 \\qquad
       \\text{0-1:}\\quad E_r[ŷ_{ri} ≠ y_i],\\ [ȳ_i ≠ y_i],\\ E_r[ŷ_{ri} ≠ ȳ_i]

    and the averages over the points i, equal to
    ``mlxtend.evaluate.bias_variance_decomp``'s three return values.

    Args:
      predictions: the replicas' predictions, shape (R, n, ...): regression
        outputs (R, n) or (R, n, outputs) for ``"mse"``; labels (R, n),
        scores (R, n, k) (argmax) or one probability (R, n, 1) (≥ threshold)
        for ``"0-1"``.
      y_true: the test targets, shape (n, ...) (labels or one-hot for ``"0-1"``).
      loss: ``"mse"`` or ``"0-1"``.
      threshold: the class-1 threshold of a single score column (0.5 for a
        probability, 0.0 for a logit).

    Returns:
      A :class:`BiasVariance`; the means and per-point values are jax arrays.

    Raises:
      ValueError: an unknown loss, or predictions that do not match y_true.

    Examples:
      >>> import numpy as np
      >>> import annjax as ann
      >>> labels = np.array([[0, 1, 1], [0, 0, 1], [1, 0, 1]])  # 3 replicas
      >>> d = ann.analysis.decompose(labels, np.array([0, 1, 1]), loss="0-1")
      >>> d.main_prediction.tolist(), round(float(d.expected_loss), 4)
      ([0, 0, 1], 0.3333)
    """
    loss = _checks.one_of("loss", loss, LOSSES)
    p, y = jnp.asarray(predictions), jnp.asarray(y_true)
    if p.ndim < 2 or p.shape[0] < 1:
        raise _checks.fail(
            "predictions", "shape (rounds, n, ...) with rounds >= 1", p.shape
        )
    if loss == "mse":
        expected, bias, variance, main = _squared(p, y)
    else:
        expected, bias, variance, main = _zero_one(p, y, threshold)
    return BiasVariance(
        expected.mean(),
        bias.mean(),
        variance.mean(),
        expected,
        bias,
        variance,
        main,
        p,
        loss,
    )
