"""Classification metrics, each the ``finish`` of summable statistics.

Every metric here is computed in two parts: ``*_stats(y_true, y_pred, w)``
returns sums over the examples (correct counts, confusion counts), which add
up over batches, and a finish turns the sums into the value. The metric
called on one array is ``finish(stats(...))``; ``fit`` adds the statistics of
every batch of an epoch and finishes once, so the history holds the metric of
the epoch's predictions, not a mean of per-batch values.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from annjax import _checks
from annjax.metrics._common import (
    Array,
    _label_pair,
    _paired_floats,
    _safe_divide,
    _weights,
)

Average = Literal["binary", "macro"]

_FLOAT = jnp.dtype(jnp.result_type(float))


def ratio(stats: dict[str, Array]) -> Array:
    """Returns ``hits / weight``: the finish of the accuracies."""
    return _safe_divide(stats["hits"], stats["weight"])


def accuracy_stats(y_true, y_pred, sample_weight=None) -> dict[str, Array]:
    """Returns Σ wᵢ [ŷᵢ = yᵢ] and Σ wᵢ, the sums behind :func:`accuracy`."""
    t, p, _ = _label_pair(y_true, y_pred)
    w = _weights(sample_weight, t.shape[0], _FLOAT)
    return {"hits": jnp.sum(w * (t == p).astype(_FLOAT)), "weight": jnp.sum(w)}


@jax.jit
def accuracy(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    r"""Returns the fraction of examples whose predicted class is the true one.

    .. math:: \text{acc} = \frac{\sum_i w_i [\hat y_i = y_i]}{\sum_i w_i}

    Labels come from the module's rules: argmax of ``(batch, k)`` scores,
    p ≥ 0.5 for a single float column, integer labels as they are.

    Raises:
      ValueError: if the two arrays hold a different number of examples.
    """
    return ratio(accuracy_stats(y_true, y_pred, sample_weight))


def binary_accuracy_stats(
    y_true, y_pred, sample_weight=None, threshold=0.5
) -> dict[str, Array]:
    """Returns the correct binary outputs and their count, weighted."""
    t, p = _paired_floats(y_true, y_pred)
    correct = ((p >= threshold) == (t >= 0.5)).astype(_FLOAT)
    w = _weights(sample_weight, t.shape[0], _FLOAT)
    return {
        "hits": jnp.sum(w[:, None] * correct),
        "weight": jnp.sum(w) * correct.shape[1],
    }


@jax.jit
def binary_accuracy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    threshold: ArrayLike = 0.5,
    sample_weight: ArrayLike | None = None,
) -> Array:
    r"""Returns the fraction of binary outputs on the right side of ``threshold``.

    .. math:: \text{acc} = \operatorname{mean}_{ij}\,
              \big[\,[\hat p_{ij} \ge \theta] = y_{ij}\,\big]

    Every element counts, so multi-label outputs ``(batch, labels)`` work too.
    ``threshold=0.5`` for probabilities; ``threshold=0.0`` for logits.

    Raises:
      ValueError: if the shapes differ (beyond ``(batch,)`` against ``(batch, 1)``).
    """
    return ratio(binary_accuracy_stats(y_true, y_pred, sample_weight, threshold))


@functools.partial(jax.jit, static_argnames="num_classes")
def confusion_matrix(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    num_classes: int,
    sample_weight: ArrayLike | None = None,
) -> Array:
    r"""Returns the ``(num_classes, num_classes)`` confusion matrix C.

    .. math:: C_{ij} = \sum_n w_n\,[y_n = i]\,[\hat y_n = j]

    Rows are true classes, columns predicted classes, as in scikit-learn.
    Labels outside ``[0, num_classes)`` are not counted. Counts are int32
    without ``sample_weight``, floats with it.
    """
    _checks.integer("num_classes", num_classes, minimum=1)
    t, p, _ = _label_pair(y_true, y_pred)
    k = num_classes
    valid = (t >= 0) & (t < k) & (p >= 0) & (p < k)
    if sample_weight is None:
        w = valid.astype(jnp.int32)
    else:
        w = _weights(sample_weight, t.shape[0], _FLOAT)
        w = jnp.where(valid, w, 0)
    cell = jnp.where(valid, t * k + p, 0)
    return jnp.zeros((k * k,), w.dtype).at[cell].add(w).reshape(k, k)


def class_counts(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    sample_weight: ArrayLike | None = None,
    average: str = "binary",
    num_classes: int | None = None,
    pos_label: int = 1,
) -> dict[str, Array]:
    """Returns per-class true positives, predicted and true counts (weighted).

    The statistics of precision, recall and F1: they add up over batches.
    For ``average="binary"`` they are vectors of one entry, for ``pos_label``.
    """
    _checks.one_of("average", average, ("binary", "macro"))
    t, p, k_scores = _label_pair(y_true, y_pred)
    w = _weights(sample_weight, t.shape[0], _FLOAT)
    if average == "binary":
        if k_scores > 2:
            raise _checks.fail(
                "average",
                "'macro' for scores of more than 2 classes",
                average,
                "Binary precision/recall/F1 need 2 classes.",
            )
        is_t, is_p = (t == pos_label).astype(_FLOAT), (p == pos_label).astype(_FLOAT)
        return {
            "tp": jnp.sum(w * is_t * is_p)[None],
            "pred": jnp.sum(w * is_p)[None],
            "true": jnp.sum(w * is_t)[None],
        }
    k = num_classes if num_classes is not None else k_scores
    if not k:
        raise _checks.fail(
            "num_classes",
            "an integer >= 2 for average='macro' on integer labels",
            num_classes,
        )
    _checks.integer("num_classes", k, minimum=2)
    cm = confusion_matrix(t, p, k, w)
    return {
        "tp": jnp.diagonal(cm),
        "pred": jnp.sum(cm, axis=0),
        "true": jnp.sum(cm, axis=1),
    }


def _average(per_class: Array, counts: dict[str, Array]) -> Array:
    """Returns the mean over classes that occur in y_true or y_pred.

    scikit-learn averages over ``unique_labels(y_true, y_pred)``; a class seen
    in neither (or only with weight 0) is left out rather than counted as 0.
    """
    present = (counts["pred"] + counts["true"] > 0).astype(per_class.dtype)
    return _safe_divide(jnp.sum(per_class * present), jnp.sum(present))


def precision_of(c: dict[str, Array]) -> Array:
    """Returns the averaged precision TP / (TP + FP) of :func:`class_counts`."""
    return _average(_safe_divide(c["tp"], c["pred"]), c)


def recall_of(c: dict[str, Array]) -> Array:
    """Returns the averaged recall TP / (TP + FN) of :func:`class_counts`."""
    return _average(_safe_divide(c["tp"], c["true"]), c)


def f1_of(c: dict[str, Array]) -> Array:
    """Returns the averaged F1 2TP / (2TP + FP + FN) of :func:`class_counts`."""
    return _average(_safe_divide(2 * c["tp"], c["pred"] + c["true"]), c)


_CLASS_ARGS = ("average", "num_classes", "pos_label")


@functools.partial(jax.jit, static_argnames=_CLASS_ARGS)
def precision(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    average: Average = "binary",
    num_classes: int | None = None,
    pos_label: int = 1,
    sample_weight: ArrayLike | None = None,
) -> Array:
    r"""Returns the precision TP / (TP + FP): how many predicted positives are right.

    .. math:: P_c = \frac{TP_c}{TP_c + FP_c}

    Args:
      y_true: true labels (see :mod:`annjax.metrics` for the accepted forms).
      y_pred: predicted labels or scores.
      average: ``"binary"`` reports class ``pos_label``; ``"macro"`` the
        unweighted mean of P_c over the classes present in y_true or y_pred.
      num_classes: the number of classes for ``"macro"``; inferred from
        ``(batch, k)`` scores or one-hot labels when None. Static.
      pos_label: the positive class for ``"binary"``.
      sample_weight: optional weights of shape ``(batch,)``.

    Raises:
      ValueError: for an unknown ``average``, ``"macro"`` on integer labels
        without ``num_classes``, or arrays of different lengths.
    """
    return precision_of(
        class_counts(y_true, y_pred, sample_weight, average, num_classes, pos_label)
    )


@functools.partial(jax.jit, static_argnames=_CLASS_ARGS)
def recall(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    average: Average = "binary",
    num_classes: int | None = None,
    pos_label: int = 1,
    sample_weight: ArrayLike | None = None,
) -> Array:
    r"""Returns the recall TP / (TP + FN): how many true positives are found.

    .. math:: R_c = \frac{TP_c}{TP_c + FN_c}

    Arguments and errors as :func:`precision`.
    """
    return recall_of(
        class_counts(y_true, y_pred, sample_weight, average, num_classes, pos_label)
    )


@functools.partial(jax.jit, static_argnames=_CLASS_ARGS)
def f1(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    average: Average = "binary",
    num_classes: int | None = None,
    pos_label: int = 1,
    sample_weight: ArrayLike | None = None,
) -> Array:
    r"""Returns the F1 score, the harmonic mean of precision and recall.

    .. math:: F1_c = \frac{2 P_c R_c}{P_c + R_c} = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}

    The right-hand form is computed, so F1 is 0 (not NaN) when a class is
    neither predicted nor present. Arguments and errors as :func:`precision`.
    """
    return f1_of(
        class_counts(y_true, y_pred, sample_weight, average, num_classes, pos_label)
    )


def precision_macro(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    """Returns :func:`precision` with ``average="macro"``, classes from the scores."""
    return precision(y_true, y_pred, "macro", sample_weight=sample_weight)


def recall_macro(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    """Returns :func:`recall` with ``average="macro"``, classes from the scores."""
    return recall(y_true, y_pred, "macro", sample_weight=sample_weight)


def f1_macro(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    """Returns :func:`f1` with ``average="macro"``, classes from the scores."""
    return f1(y_true, y_pred, "macro", sample_weight=sample_weight)
