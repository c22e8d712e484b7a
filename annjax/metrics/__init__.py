"""Metrics m(y_true, y_pred): classification and regression, streaming statistics.

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

Every registered metric is the ``finish`` of statistics that combine over
batches (:func:`streaming`): correct counts, confusion counts, error sums,
moments. ``fit`` accumulates them over an epoch inside the compiled call, so
the history's precision, F1, RMSE or R² are those of the epoch's predictions,
equal to the metric on all of them at once, never a mean of per-batch values.

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

import types
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from annjax import _checks
from annjax.metrics import classification as _c
from annjax.metrics import regression as _r
from annjax.metrics._common import Array
from annjax.metrics.classification import (
    accuracy,
    binary_accuracy,
    confusion_matrix,
    f1,
    f1_macro,
    precision,
    precision_macro,
    recall,
    recall_macro,
)
from annjax.metrics.regression import mae, mse, r2, rmse

__all__ = [
    "GREATER_IS_BETTER",
    "Streaming",
    "accuracy",
    "binary_accuracy",
    "confusion_matrix",
    "f1",
    "f1_macro",
    "get",
    "mae",
    "mode",
    "mse",
    "name_of",
    "names",
    "precision",
    "precision_macro",
    "r2",
    "recall",
    "recall_macro",
    "rmse",
    "streaming",
]


def _sum(stacked: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: jnp.sum(a, axis=0), stacked)


class Streaming(NamedTuple):
    """A metric as statistics that combine over batches, and their finish.

    Attributes:
      stats: ``stats(y_true, y_pred, sample_weight) -> statistics`` of a batch.
      finish: ``finish(statistics) -> value``; the metric is
        ``finish(stats(y_true, y_pred, w))``.
      reduce: the statistics of batches stacked on axis 0 → the statistics of
        their union (a sum, except R²'s moments).
    """

    stats: Callable[..., Any]
    finish: Callable[[Any], Array]
    reduce: Callable[[Any], Any] = _sum


def _macro(fn: Callable[[dict], Array]) -> Streaming:
    def stats(y_true, y_pred, sample_weight=None):
        return _c.class_counts(y_true, y_pred, sample_weight, "macro")

    return Streaming(stats, fn)


_STREAMING: dict[str, Streaming] = {
    "accuracy": Streaming(_c.accuracy_stats, _c.ratio),
    "binary_accuracy": Streaming(_c.binary_accuracy_stats, _c.ratio),
    "precision": Streaming(_c.class_counts, _c.precision_of),
    "recall": Streaming(_c.class_counts, _c.recall_of),
    "f1": Streaming(_c.class_counts, _c.f1_of),
    "precision_macro": _macro(_c.precision_of),
    "recall_macro": _macro(_c.recall_of),
    "f1_macro": _macro(_c.f1_of),
    "mse": Streaming(_r.error_sums, _r.mse_of),
    "rmse": Streaming(_r.error_sums, _r.rmse_of),
    "mae": Streaming(_r.error_sums, _r.mae_of),
    "r2": Streaming(_r.moments, _r.r2_of, _r.combine_moments),
}

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

#: What each registered metric reads: class labels or scores, or real values.
REGRESSION = frozenset({"mse", "rmse", "mae", "r2"})


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


def _registered_name(fn: Callable) -> str | None:
    """Returns the registry name of a registered metric function, or None."""
    return next((key for key, reg in _REGISTRY.items() if reg is fn), None)


def name_of(metric: str | Callable[..., Array]) -> str:
    """Returns the history name of a metric: its registry name or ``__name__``.

    Raises:
      ValueError, TypeError: as :func:`get`; ValueError for a callable without
        a usable ``__name__`` (a lambda: give it a name with ``def``).
    """
    fn = get(metric)
    if isinstance(metric, str):
        return metric.lower()
    if (registered := _registered_name(fn)) is not None:
        return registered
    name = getattr(fn, "__name__", "")
    if not name.isidentifier():
        raise _checks.fail(
            "metrics",
            "a named function (its __name__ keys the history)",
            fn,
            "Define it with def, or use functools.wraps.",
        )
    return name


def streaming(name: str) -> Streaming | None:
    """Returns the streaming form of a registered metric; None for a custom one."""
    return _STREAMING.get(name)


def streaming_of(metric: str | Callable[..., Array]) -> Streaming | None:
    """Returns the streaming form of ``metric`` itself, or None.

    Keyed by the object, never by its name: a user function that happens to
    be called ``accuracy`` is not the registered one and gets None (it is
    called as given), while ``"accuracy"`` and ``ann.metrics.accuracy`` get
    the registered metric's statistics.

    Examples:
      >>> import annjax as ann
      >>> ann.metrics.streaming_of("accuracy") is not None
      True
      >>> def accuracy(y_true, y_pred):
      ...     return 0.0
      >>> ann.metrics.streaming_of(accuracy) is None
      True
    """
    registered = registered_name(metric)
    return None if registered is None else _STREAMING.get(registered)


def registered_name(metric: str | Callable[..., Array]) -> str | None:
    """Returns the registry name of ``metric`` (a name or a registered
    function), or None for a user's own function, whatever its ``__name__``.

    Examples:
      >>> import annjax as ann
      >>> ann.metrics.registered_name(ann.metrics.accuracy)
      'accuracy'
      >>> def f1(y_true, y_pred):
      ...     return 0.0
      >>> ann.metrics.registered_name(f1) is None
      True
    """
    fn = get(metric)
    return metric.lower() if isinstance(metric, str) else _registered_name(fn)


def mode(name: str | Callable[..., Array]) -> Literal["max", "min"]:
    """Returns ``"max"`` if a higher value of the metric is better, else ``"min"``.

    ``name`` is a registered name or a registered function (as :func:`get`
    returns it). Early stopping uses it to know which way is an improvement.

    Raises:
      ValueError: for an unknown name or a callable that is not registered
        (say the direction explicitly for your own metrics).
    """
    if callable(name):
        registered = _registered_name(name)
        if registered is None:
            raise _checks.fail(
                "metric",
                "a registered metric",
                getattr(name, "__name__", name),
                "Give the direction ('max' or 'min') for your own metric.",
            )
        name = registered
    get(name)
    return "max" if GREATER_IS_BETTER[name.lower()] else "min"
