"""The lecture's two curves as measurements: error against complexity, against data.

:class:`ComplexityCurve` is Figure 8 measured: for each value of a complexity
parameter (a width, a depth, λ of L2, a number of epochs), the bias–variance
decomposition of replicas trained at that value; the total error is U-shaped
where bias falls and variance rises. :class:`LearningCurve` is the training
and validation loss against the training-set size ("more data reduces
variance"). ``ann.plot.bias_variance`` and ``ann.plot.learning_curve`` draw
them.

Examples:
  >>> import numpy as np
  >>> import annjax as ann
  >>> curve = ann.analysis.ComplexityCurve(
  ...     "width", np.array([1, 8, 64]), np.array([0.9, 0.5, 0.7]),
  ...     np.array([0.8, 0.3, 0.2]), np.array([0.1, 0.2, 0.5]))
  >>> curve.best
  8
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["ComplexityCurve", "LearningCurve"]


class ComplexityCurve(NamedTuple):
    """Bias², variance and expected loss against a complexity parameter.

    Attributes:
      name: the parameter's name (the plot's x label), e.g. ``"width"``.
      values: the parameter's values, shape (v,).
      expected_loss: the decomposition's expected loss at each value, shape
        (v,) (see :class:`annjax.analysis.BiasVariance`; for ``"mse"``
        expected_loss = bias + variance).
      bias: its bias term at each value, shape (v,).
      variance: its variance term at each value, shape (v,).
      results: the full :class:`annjax.analysis.BiasVariance` per value (with
        the per-point terms and the replicas' predictions), or ().
    """

    name: str
    values: np.ndarray
    expected_loss: np.ndarray
    bias: np.ndarray
    variance: np.ndarray
    results: Sequence[Any] = ()

    @property
    def best(self) -> Any:
        """Returns the value with the lowest expected loss (the U's bottom)."""
        return self.values[int(np.nanargmin(np.asarray(self.expected_loss)))].item()


class LearningCurve(NamedTuple):
    """Training and validation scores against the training-set size.

    Attributes:
      sizes: the training-set sizes in examples, shape (s,).
      train: name → final training value per size and round, shape (s, rounds)
        (``"loss"`` and each metric).
      val: name → validation value, shape (s, rounds) (same names).
      weights: the models' 0/1 training masks (s·rounds, n), row s·rounds + r
        for size s, round r; or None.
      models: the ``ManyResult`` of those models, or None.
    """

    sizes: np.ndarray
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    weights: Any = None
    models: Any = None
