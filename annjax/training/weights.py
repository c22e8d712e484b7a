"""Example weights: ``(X, y, w)``, ``class_weight=`` and ``fit_many(sample_weight=)``.

Each example i of the training set gets one weight per model,

.. math:: w_{mi} = s_{mi} \\cdot w_i \\cdot c_{y_i}

(``sample_weight`` row m, the data's own ``w``, ``class_weight`` of its
label; each 1 when absent). The loss is the weighted mean Σ wᵢ ℓᵢ / Σ wᵢ
over every batch and the metrics are scikit-learn's ``sample_weight``
results, so an integer weight counts an example that many times and weight 0
leaves it out (the plan never draws it: see
:func:`annjax.training.epoch.plan_batches`). A bootstrap sample is a row of
counts, a cross-validation fold a 0/1 mask (:mod:`annjax.analysis.resampling`).
Validation data weighs its examples the same way: ``(X_val, y_val, w_val)``
and, per model, ``fit_many(val_weight=)``.

Examples:
  >>> import numpy as np
  >>> from annjax.training.weights import example_weights
  >>> y = np.array([0, 1, 1, 0])
  >>> example_weights("w", [1.0, 2.0, 1.0, 1.0], y, class_weight={1: 3.0}).tolist()
  [1.0, 6.0, 3.0, 1.0]
  >>> example_weights("w", np.ones((2, 4)), y, models=2).shape
  (2, 4)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from annjax import _checks

__all__ = ["example_weights", "split_data"]


def split_data(name: str, data: Any) -> tuple[Any, Any]:
    """Returns ``((X, y), w)`` from ``(X, y)`` (w None) or ``(X, y, w)``.

    A sequence of three batches (tuples themselves, a stream's source) is
    not ``(X, y, w)``: it is returned as it is.
    """
    if (
        isinstance(data, tuple | list)
        and len(data) == 3
        and not any(isinstance(part, tuple | list) for part in data)
    ):
        return tuple(data[:2]), data[2]
    return data, None


def _labels(y: Any) -> np.ndarray:
    """Returns integer labels (n,) from labels (n,)/(n, 1) or one-hot rows."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return y.reshape(len(y), -1)[:, 0]


def _class_factor(class_weight: Mapping, y: Any) -> np.ndarray:
    """Returns c_{y_i} per example (1 for a label the mapping does not name)."""
    if not isinstance(class_weight, Mapping):
        raise _checks.fail(
            "class_weight",
            "a mapping {label: weight}",
            type(class_weight).__name__,
            "E.g. class_weight={0: 1.0, 1: 5.0}.",
        )
    labels = _labels(y)
    factor = np.ones(len(labels), np.float32)
    for label, weight in class_weight.items():
        weight = _checks.non_negative(f"class_weight[{label!r}]", weight)
        factor[labels == label] = weight
    return factor


def _checked(name: str, w: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Returns ``w`` as float32 of ``shape`` (a (n,) row broadcast), checked."""
    w = np.asarray(_checks.numeric_array(name, w), np.float32)
    n = shape[-1]
    if w.shape not in (shape, (n,)):
        want = f"shape ({n},)" + (f" or {shape}" if len(shape) == 2 else "")
        raise _checks.fail(name, want, w.shape, "One weight per example (per model).")
    if not np.isfinite(w).all() or (w < 0).any():
        raise _checks.fail(name, "finite weights >= 0", "negative or non-finite ones")
    return np.broadcast_to(w, shape)


def example_weights(
    name: str,
    w: Any,
    y: Any,
    *,
    class_weight: Mapping | None = None,
    sample_weight: Any = None,
    models: int | None = None,
    sample_name: str = "sample_weight",
) -> np.ndarray | None:
    """Returns the examples' weights, (n,) or (models, n), or None if all are 1.

    Args:
      name: the argument's name in errors (``"train_data w"``).
      w: the data's own weights (n,), or None.
      y: the targets (labels for ``class_weight``).
      class_weight: {label: weight}, or None.
      sample_weight: per model (models, n) or for all (n,), or None.
      models: fit_many's number of models; None for ``fit``.
      sample_name: ``sample_weight``'s name in errors (``"val_weight"``).

    Raises:
      ValueError: a weight of the wrong shape, negative or not finite, or a
        model whose weights are all 0.
    """
    n = len(y)
    shape = (n,) if models is None else (models, n)
    out = None
    for label, part in ((name, w), (sample_name, sample_weight)):
        if part is not None:
            part = _checked(label, part, shape)
            out = part if out is None else out * part
    if class_weight is not None:
        factor = np.broadcast_to(_class_factor(class_weight, y), shape)
        out = factor if out is None else out * factor
    if out is None:
        return None
    empty = np.flatnonzero(np.reshape(out, (-1, n)).sum(axis=1) == 0)
    if empty.size:
        raise _checks.fail(
            name if sample_weight is None else sample_name,
            "a positive weight for at least one example of every model",
            f"all weights 0 for model(s) {empty.tolist()}",
        )
    return np.ascontiguousarray(out, np.float32)
