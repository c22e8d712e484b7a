"""Evaluation metrics m(y_true, y_pred), jit-compiled, with a registry.

Every metric takes ``y_true`` first, as scikit-learn does, and returns a scalar
(:func:`confusion_matrix` returns a matrix). All are jitted; the arguments that
change shapes (``num_classes``, ``average``, ``pos_label``) are static.

What a classification metric accepts as ``y_pred``, and how it turns it into
labels ŷ (``y_true`` goes through the same rules, except that 1-D floats are
rounded to the nearest integer label rather than thresholded):

* integer or bool labels of shape ``(batch,)`` or ``(batch, 1)``: used as is;
* scores of shape ``(batch, k)`` with ``k >= 2`` (probabilities or raw logits,
  the model's output as is): ŷ = argmax over the last axis. argmax is the
  same before and after softmax, so logits need no conversion;
* floats of shape ``(batch,)`` or ``(batch, 1)``: one binary output read as
  the probability of class 1, ŷ = 1 if p ≥ 0.5 else 0 (the Heaviside step of
  :func:`annjax.activations.heaviside` moved to 0.5). A single *logit* column
  must go through a sigmoid first, or use ``binary_accuracy(..., threshold=0.0)``
  on the logit itself (z ≥ 0 ⇔ σ(z) ≥ 0.5).

Regression metrics take ``y_true`` and ``y_pred`` of the same shape,
``(batch,)`` or ``(batch, outputs)`` (``(batch,)`` against ``(batch, 1)`` is
accepted, so the usual broadcasting mistake cannot silently give a
``(batch, batch)`` error matrix) and average uniformly over outputs, as
scikit-learn's ``multioutput="uniform_average"``.

Every metric takes an optional ``sample_weight`` of shape ``(batch,)``; weight 0
removes an example, so the padded positions of
:func:`annjax.data.epoch_batches` can be masked out. Divisions by zero give 0,
like scikit-learn's ``zero_division=0``.

Accuracy, MSE and MAE are weighted means over examples, so batch values
combine into the epoch's value (weight each batch by its Σw). Precision,
recall, F1, RMSE and R² do not: compute them on the predictions for the whole
set (or sum confusion matrices over batches).

Examples:
  >>> import jax.numpy as jnp
  >>> import annjax as ann
  >>> logits = jnp.array([[2.0, -1.0], [0.1, 0.3], [1.0, 0.0]])
  >>> round(float(ann.metrics.accuracy(jnp.array([0, 1, 1]), logits)), 4)
  0.6667
  >>> ann.metrics.mode("accuracy"), ann.metrics.mode("mse")
  ('max', 'min')
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from annjax import _checks

Array = jax.Array

__all__ = [
    "GREATER_IS_BETTER",
    "accuracy",
    "binary_accuracy",
    "confusion_matrix",
    "f1",
    "f1_macro",
    "get",
    "mae",
    "mode",
    "mse",
    "names",
    "precision",
    "precision_macro",
    "r2",
    "recall",
    "recall_macro",
    "rmse",
]

Average = Literal["binary", "macro"]


# --- shared conversions -----------------------------------------------------


def _float_dtype(*arrays: Array) -> jnp.dtype:
    """Returns the widest floating dtype among ``arrays``, or the default float.

    Chosen by hand because strict dtype promotion refuses int + float.
    """
    floats = [a.dtype for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    if not floats:
        return jnp.dtype(jnp.result_type(float))
    return max(floats, key=lambda d: jnp.dtype(d).itemsize)


def _num_examples(y_true: Array, y_pred: Array) -> int:
    """Returns the batch size shared by ``y_true`` and ``y_pred``."""
    if y_true.ndim == 0:
        raise _checks.fail("y_true", "an array with a batch axis", "a scalar")
    if y_pred.ndim == 0 or y_pred.shape[0] != y_true.shape[0]:
        raise _checks.fail(
            "y_pred",
            f"shape ({y_true.shape[0]}, ...) to match y_true",
            y_pred.shape,
        )
    return y_true.shape[0]


def _weights(sample_weight: ArrayLike | None, n: int, dtype: jnp.dtype) -> Array:
    """Returns the per-example weights of shape (n,), ones when None."""
    if sample_weight is None:
        return jnp.ones((n,), dtype)
    w = jnp.asarray(sample_weight)
    if w.shape != (n,):
        raise _checks.fail("sample_weight", f"shape ({n},)", w.shape)
    return w.astype(dtype)


def _safe_divide(num: Array, den: Array) -> Array:
    """Returns num / den, and 0 where den == 0 (scikit-learn's zero_division=0)."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def _labels(name: str, y: Array, threshold: float | None) -> Array:
    """Returns integer class labels of shape (batch,) from labels or scores.

    ``threshold`` is used for a single float column (``y_pred``); None rounds it
    instead (``y_true``, whose float labels are exact integers).
    """
    if y.ndim == 2 and y.shape[1] > 1:
        return jnp.argmax(y, axis=-1).astype(jnp.int32)
    if y.ndim == 2:
        y = y[:, 0]
    if y.ndim != 1:
        raise _checks.fail(
            name,
            "labels of shape (batch,) or (batch, 1), or scores (batch, k)",
            y.shape,
        )
    if jnp.issubdtype(y.dtype, jnp.floating):
        y = jnp.round(y) if threshold is None else y >= threshold
    return y.astype(jnp.int32)


def _label_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array, int]:
    """Returns (true labels, predicted labels, number of score columns or 0)."""
    t, p = jnp.asarray(y_true), jnp.asarray(y_pred)
    _num_examples(t, p)
    k_true = t.shape[1] if t.ndim == 2 and t.shape[1] > 1 else 0
    k_pred = p.shape[1] if p.ndim == 2 and p.shape[1] > 1 else 0
    if k_true and k_pred and k_true != k_pred:
        raise _checks.fail(
            "y_pred",
            f"shape ({p.shape[0]}, {k_true}) to match the one-hot y_true",
            p.shape,
        )
    return _labels("y_true", t, None), _labels("y_pred", p, 0.5), k_pred or k_true


def _paired_floats(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array]:
    """Returns same-shaped y_true and y_pred as floats of shape (batch, outputs)."""
    t, p = jnp.asarray(y_true), jnp.asarray(y_pred)
    n = _num_examples(t, p)
    if t.shape != p.shape and {t.shape, p.shape} != {(n,), (n, 1)}:
        raise _checks.fail("y_pred", f"shape {t.shape} to match y_true", p.shape)
    dtype = _float_dtype(t, p)
    return t.reshape(n, -1).astype(dtype), p.reshape(n, -1).astype(dtype)


# --- classification ---------------------------------------------------------


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
    t, p, _ = _label_pair(y_true, y_pred)
    dtype = jnp.dtype(jnp.result_type(float))
    w = _weights(sample_weight, t.shape[0], dtype)
    return _safe_divide(jnp.sum(w * (t == p).astype(dtype)), jnp.sum(w))


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
    t, p = _paired_floats(y_true, y_pred)
    dtype = jnp.dtype(jnp.result_type(float))
    correct = ((p >= threshold) == (t >= 0.5)).astype(dtype)
    w = _weights(sample_weight, t.shape[0], dtype)
    return _safe_divide(jnp.sum(w[:, None] * correct), jnp.sum(w) * correct.shape[1])


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
        w = _weights(sample_weight, t.shape[0], jnp.dtype(jnp.result_type(float)))
        w = jnp.where(valid, w, 0)
    cell = jnp.where(valid, t * k + p, 0)
    return jnp.zeros((k * k,), w.dtype).at[cell].add(w).reshape(k, k)


def _class_counts(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    average: str,
    num_classes: int | None,
    pos_label: int,
    sample_weight: ArrayLike | None,
) -> tuple[Array, Array, Array]:
    """Returns per-class (true positives, predicted count, true count).

    For ``average="binary"`` they are vectors of one entry, for ``pos_label``.
    """
    _checks.one_of("average", average, ("binary", "macro"))
    t, p, k_scores = _label_pair(y_true, y_pred)
    dtype = jnp.dtype(jnp.result_type(float))
    w = _weights(sample_weight, t.shape[0], dtype)
    if average == "binary":
        if k_scores > 2:
            raise _checks.fail(
                "average",
                "'macro' for scores of more than 2 classes",
                average,
                "Binary precision/recall/F1 need 2 classes.",
            )
        is_t, is_p = (t == pos_label).astype(dtype), (p == pos_label).astype(dtype)
        return (
            jnp.sum(w * is_t * is_p)[None],
            jnp.sum(w * is_p)[None],
            jnp.sum(w * is_t)[None],
        )
    k = num_classes if num_classes is not None else k_scores
    if not k:
        raise _checks.fail(
            "num_classes",
            "an integer >= 2 for average='macro' on integer labels",
            num_classes,
        )
    _checks.integer("num_classes", k, minimum=2)
    cm = confusion_matrix(t, p, k, w)
    return jnp.diagonal(cm), jnp.sum(cm, axis=0), jnp.sum(cm, axis=1)


def _average(per_class: Array, n_pred: Array, n_true: Array) -> Array:
    """Returns the mean over classes that occur in y_true or y_pred.

    scikit-learn averages over ``unique_labels(y_true, y_pred)``; a class seen
    in neither (or only with weight 0) is left out rather than counted as 0.
    """
    present = (n_pred + n_true > 0).astype(per_class.dtype)
    return _safe_divide(jnp.sum(per_class * present), jnp.sum(present))


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
      y_true: true labels (see the module docstring for the accepted forms).
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
    tp, n_pred, n_true = _class_counts(
        y_true, y_pred, average, num_classes, pos_label, sample_weight
    )
    return _average(_safe_divide(tp, n_pred), n_pred, n_true)


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
    tp, n_pred, n_true = _class_counts(
        y_true, y_pred, average, num_classes, pos_label, sample_weight
    )
    return _average(_safe_divide(tp, n_true), n_pred, n_true)


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
    tp, n_pred, n_true = _class_counts(
        y_true, y_pred, average, num_classes, pos_label, sample_weight
    )
    return _average(_safe_divide(2 * tp, n_pred + n_true), n_pred, n_true)


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


# --- regression -------------------------------------------------------------


def _column_means(values: Array, sample_weight: ArrayLike | None) -> Array:
    """Returns the (weighted) mean over the batch of each column of ``values``."""
    w = _weights(sample_weight, values.shape[0], values.dtype)
    return _safe_divide(w @ values, jnp.sum(w))


@jax.jit
def mse(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    r"""Returns the mean squared error, averaged uniformly over outputs.

    .. math:: \text{MSE} = \frac{1}{m}\sum_j \frac{\sum_i w_i (y_{ij} - \hat y_{ij})^2}
              {\sum_i w_i}
    """
    t, p = _paired_floats(y_true, y_pred)
    return jnp.mean(_column_means((t - p) ** 2, sample_weight))


@jax.jit
def rmse(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    r"""Returns the root mean squared error, in the units of y.

    .. math:: \text{RMSE} = \frac{1}{m}\sum_j \sqrt{\text{MSE}_j}

    The root is taken per output before averaging, as scikit-learn's
    ``root_mean_squared_error``; for one output it is √MSE.
    """
    t, p = _paired_floats(y_true, y_pred)
    return jnp.mean(jnp.sqrt(_column_means((t - p) ** 2, sample_weight)))


@jax.jit
def mae(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    r"""Returns the mean absolute error, averaged uniformly over outputs.

    .. math:: \text{MAE} = \frac{1}{m}\sum_j \frac{\sum_i w_i |y_{ij} - \hat y_{ij}|}
              {\sum_i w_i}
    """
    t, p = _paired_floats(y_true, y_pred)
    return jnp.mean(_column_means(jnp.abs(t - p), sample_weight))


@jax.jit
def r2(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    r"""Returns the coefficient of determination R², averaged uniformly over outputs.

    .. math:: R^2_j = 1 - \frac{\sum_i w_i (y_{ij} - \hat y_{ij})^2}
              {\sum_i w_i (y_{ij} - \bar y_j)^2}

    1 is a perfect fit, 0 the constant prediction ȳ, and it is negative for
    anything worse. For a constant y_j (zero denominator) R²_j is 1 if the fit
    is exact and 0 otherwise, as scikit-learn's ``force_finite=True``.
    """
    t, p = _paired_floats(y_true, y_pred)
    w = _weights(sample_weight, t.shape[0], t.dtype)
    ss_res = w @ (t - p) ** 2
    ss_tot = w @ (t - _column_means(t, w)) ** 2
    fallback = jnp.where(ss_res == 0, 1.0, 0.0).astype(t.dtype)
    score = jnp.where(ss_tot != 0, 1 - _safe_divide(ss_res, ss_tot), fallback)
    return jnp.mean(score)


# --- registry ---------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., Array]] = {
    "accuracy": accuracy,
    "binary_accuracy": binary_accuracy,
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "precision_macro": precision_macro,
    "recall_macro": recall_macro,
    "f1_macro": f1_macro,
    "mse": mse,
    "rmse": rmse,
    "mae": mae,
    "r2": r2,
}

#: For each registered metric, True if a higher value is better (early stopping
#: maximises it), False if lower is better.
GREATER_IS_BETTER: types.MappingProxyType[str, bool] = types.MappingProxyType(
    {name: name not in ("mse", "rmse", "mae") for name in _REGISTRY}
)


def names() -> tuple[str, ...]:
    """Returns the names :func:`get` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def get(name: str | Callable[..., Array]) -> Callable[..., Array]:
    """Returns the metric called ``name`` (a callable passes through).

    :func:`confusion_matrix` is not registered: it is not a scalar.

    Raises:
      ValueError: for an unknown name; the message lists the valid ones.
      TypeError: for anything that is neither a string nor a callable.
    """
    return _checks.lookup("metric", _REGISTRY, name)


def mode(name: str | Callable[..., Array]) -> Literal["max", "min"]:
    """Returns ``"max"`` if a higher value of the metric is better, else ``"min"``.

    ``name`` is a registered name or a registered function (as :func:`get`
    returns it). Early stopping uses it to know which way is an improvement.

    Raises:
      ValueError: for an unknown name or a callable that is not registered
        (say the direction explicitly for your own metrics).
    """
    if callable(name):
        found = [key for key, fn in _REGISTRY.items() if fn is name]
        if not found:
            raise _checks.fail(
                "metric",
                "a registered metric",
                getattr(name, "__name__", name),
                "Give the direction ('max' or 'min') for your own metric.",
            )
        name = found[0]
    get(name)
    return "max" if GREATER_IS_BETTER[name.lower()] else "min"
