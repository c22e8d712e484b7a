"""Regression metrics, each the ``finish`` of statistics that combine over batches.

MSE, RMSE and MAE finish sums of (weighted) errors; R² finishes the weighted
moments of y (count, mean, sum of squared deviations) and the sum of squared
errors, which :func:`combine_moments` merges over batches exactly and without
the cancellation of Σy² − (Σy)²/n (Chan, Golub and LeVeque's pairwise update).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from annjax.metrics._common import Array, _paired_floats, _safe_divide, _weights


def error_sums(y_true, y_pred, sample_weight=None) -> dict[str, Array]:
    """Returns per output Σ wᵢ(yᵢ − ŷᵢ)², Σ wᵢ|yᵢ − ŷᵢ|, and Σ wᵢ."""
    t, p = _paired_floats(y_true, y_pred)
    w = _weights(sample_weight, t.shape[0], t.dtype)
    return {"sq": w @ (t - p) ** 2, "abs": w @ jnp.abs(t - p), "weight": jnp.sum(w)}


def mse_of(s: dict[str, Array]) -> Array:
    """Returns the MSE of :func:`error_sums`, averaged uniformly over outputs."""
    return jnp.mean(_safe_divide(s["sq"], s["weight"]))


def rmse_of(s: dict[str, Array]) -> Array:
    """Returns the RMSE of :func:`error_sums`: the root per output, then the mean."""
    return jnp.mean(jnp.sqrt(_safe_divide(s["sq"], s["weight"])))


def mae_of(s: dict[str, Array]) -> Array:
    """Returns the MAE of :func:`error_sums`, averaged uniformly over outputs."""
    return jnp.mean(_safe_divide(s["abs"], s["weight"]))


@jax.jit
def mse(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    r"""Returns the mean squared error, averaged uniformly over outputs.

    .. math:: \text{MSE} = \frac{1}{m}\sum_j \frac{\sum_i w_i (y_{ij} - \hat y_{ij})^2}
              {\sum_i w_i}
    """
    return mse_of(error_sums(y_true, y_pred, sample_weight))


@jax.jit
def rmse(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    r"""Returns the root mean squared error, in the units of y.

    .. math:: \text{RMSE} = \frac{1}{m}\sum_j \sqrt{\text{MSE}_j}

    The root is taken per output before averaging, as scikit-learn's
    ``root_mean_squared_error``; for one output it is √MSE.
    """
    return rmse_of(error_sums(y_true, y_pred, sample_weight))


@jax.jit
def mae(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    r"""Returns the mean absolute error, averaged uniformly over outputs.

    .. math:: \text{MAE} = \frac{1}{m}\sum_j \frac{\sum_i w_i |y_{ij} - \hat y_{ij}|}
              {\sum_i w_i}
    """
    return mae_of(error_sums(y_true, y_pred, sample_weight))


def moments(y_true, y_pred, sample_weight=None) -> dict[str, Array]:
    """Returns per output the weight, the mean of y, Σ wᵢ(yᵢ − ȳ)² and the SSE."""
    t, p = _paired_floats(y_true, y_pred)
    w = _weights(sample_weight, t.shape[0], t.dtype)
    weight = jnp.sum(w)
    mean = _safe_divide(w @ t, weight)
    return {
        "weight": weight,
        "mean": mean,
        "m2": w @ (t - mean) ** 2,
        "sse": w @ (t - p) ** 2,
    }


def combine_moments(stacked: dict[str, Array]) -> dict[str, Array]:
    r"""Returns the :func:`moments` of the union of batches stacked on axis 0.

    .. math:: W = \sum_b W_b,\quad \bar y = \frac{\sum_b W_b \bar y_b}{W},\quad
              M_2 = \sum_b M_{2,b} + \sum_b W_b (\bar y_b - \bar y)^2
    """
    w_b = stacked["weight"]
    weight = jnp.sum(w_b)
    mean = _safe_divide(w_b @ stacked["mean"], weight)
    spread = w_b @ (stacked["mean"] - mean) ** 2
    return {
        "weight": weight,
        "mean": mean,
        "m2": jnp.sum(stacked["m2"], axis=0) + spread,
        "sse": jnp.sum(stacked["sse"], axis=0),
    }


def r2_of(s: dict[str, Array]) -> Array:
    """Returns R² = 1 − SSE / M₂ of :func:`moments`, averaged over outputs.

    An output whose y is constant has M₂ = 0 in exact arithmetic, but the
    rounded mean of a constant leaves M₂ ≈ W·(ε·|ȳ|)² (about 1e-14 in
    float32), and 1 − SSE / M₂ would be −1e13. So, as
    :class:`annjax.data.Standardizer` does, y counts as constant when its
    standard deviation √(M₂ / W) is at most 10·ε·|ȳ| (ε: the dtype's machine
    epsilon); R² is then 1 for an exact fit and 0 otherwise.
    """
    ss_res, ss_tot = s["sse"], s["m2"]
    eps = jnp.finfo(ss_tot.dtype).eps
    rounding = s["weight"] * jnp.square(10 * eps * jnp.abs(s["mean"]))
    constant = ss_tot <= rounding
    fallback = jnp.where(ss_res == 0, 1.0, 0.0).astype(ss_res.dtype)
    ratio = _safe_divide(ss_res, jnp.where(constant, 1.0, ss_tot))
    return jnp.mean(jnp.where(constant, fallback, 1 - ratio))


@jax.jit
def r2(
    y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None
) -> Array:
    r"""Returns the coefficient of determination R², averaged uniformly over outputs.

    .. math:: R^2_j = 1 - \frac{\sum_i w_i (y_{ij} - \hat y_{ij})^2}
              {\sum_i w_i (y_{ij} - \bar y_j)^2}

    1 is a perfect fit, 0 the constant prediction ȳ, and it is negative for
    anything worse. For a constant y_j (zero denominator) R²_j is 1 if the fit
    is exact and 0 otherwise, as scikit-learn's ``force_finite=True``; a y_j
    whose spread is only float rounding counts as constant (see
    :func:`r2_of`).

    Examples:
      >>> import numpy as np
      >>> import annjax as ann
      >>> y = np.full(60, 0.1, "f4")
      >>> float(ann.metrics.r2(y, y + 0.01))   # constant target: 0, not -1e13
      0.0
      >>> float(ann.metrics.r2(np.arange(4.0), np.arange(4.0)))
      1.0
    """
    return r2_of(moments(y_true, y_pred, sample_weight))
