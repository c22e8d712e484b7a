"""The lecture's loss functions L(y, ŷ), jit-compiled, with a registry.

Every loss takes ``(y_true, y_pred, reduction="mean")``: the targets first, as
in the lecture's notebooks, scikit-learn and Keras. A loss is computed in two
steps:

1. one value per example: the pointwise losses (MSE, MAE, binary
   cross-entropy, Huber) average over the feature axes, the categorical
   cross-entropies sum over the class axis (the last one) and average over any
   other feature axes;
2. a reduction over the batch: ``"mean"`` (the default), ``"sum"``, or
   ``"none"``, which returns the per-example values, shape ``(batch,)``.

Shapes are checked when the function is traced (they are static): ``y_true``
must have the shape of ``y_pred``, except that the categorical cross-entropies
also take integer class labels of shape ``y_pred.shape[:-1]``. A ``(batch,)``
target never broadcasts silently against a ``(batch, 1)`` prediction.

Where optax has the loss, annjax wraps it; the losses on logits are stable for
logits of any size, and the losses on probabilities clip ŷ to
[ε, 1 − ε] (ε the machine epsilon of ŷ's dtype), so log 0 never occurs.

Examples:
  >>> import jax.numpy as jnp
  >>> import annjax as ann
  >>> ann.losses.get("mse")(jnp.array([1.0, 2.0]), jnp.array([1.5, 2.0]))
  Array(0.125, dtype=float32)
  >>> logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
  >>> ann.losses.softmax_cross_entropy(jnp.array([0, 1]), logits, reduction="none")
  Array([0.12692809, 0.12692809], dtype=float32)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from annjax import _checks
from annjax import hyperparams as _hyperparams

Array = jax.Array
Loss = Callable[..., Array]

__all__ = [
    "BINARY",
    "CLASSIFICATION",
    "LOGITS_LOSS",
    "REDUCTIONS",
    "binary_cross_entropy",
    "check_custom",
    "check_label_smoothing",
    "cross_entropy",
    "get",
    "huber",
    "mae",
    "mse",
    "name_of",
    "names",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
]


# -- the steps every loss shares: dtypes, shape checks, per-example values,
# the reduction over the batch, clipping, and the contract of a custom loss

#: The values ``reduction=`` accepts.
REDUCTIONS = ("mean", "sum", "none")


def _float_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[Array, Array]:
    """Returns both arrays in ŷ's float dtype (integer targets are cast)."""
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    dtype = y_pred.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)  # float32, or float64 under x64
    # An explicit cast, not promotion, so that the losses also run under
    # jax.numpy_dtype_promotion("strict").
    return y_true.astype(dtype), y_pred.astype(dtype)


def _same_shape(loss: str, y_true: Array, y_pred: Array) -> None:
    """Raises ValueError naming both shapes unless they are equal."""
    if y_true.shape != y_pred.shape:
        raise _checks.fail(
            f"{loss}: y_true",
            f"the shape of y_pred {y_pred.shape}",
            y_true.shape,
            "Reshape one of them: a (batch,) target does not broadcast against a "
            "(batch, 1) prediction here.",
        )


def _is_sparse(loss: str, y_true: Array, y_pred: Array) -> bool:
    """Returns True for integer class labels, False for one-hot targets.

    Raises ValueError unless ``y_true`` has ŷ's shape (one-hot or
    probabilities) or is integer labels of shape ``y_pred.shape[:-1]``.
    """
    if y_pred.ndim == 0:
        raise _checks.fail(f"{loss}: y_pred", "a class axis (at least 1-D)", ())
    if y_true.shape == y_pred.shape:
        return False
    if y_true.shape == y_pred.shape[:-1]:
        if jnp.issubdtype(y_true.dtype, jnp.integer):
            return True
        raise _checks.fail(
            f"{loss}: y_true",
            f"integer class labels for the shape {y_true.shape}",
            y_true.dtype,
            "Cast the labels with y.astype(int).",
        )
    raise _checks.fail(
        f"{loss}: y_true",
        f"integer labels of shape {y_pred.shape[:-1]} or one-hot targets of "
        f"y_pred's shape {y_pred.shape}",
        y_true.shape,
    )


def _per_example(values: Array) -> Array:
    """Returns the mean of ``values`` over every axis but the first (batch)."""
    return jnp.mean(values, axis=tuple(range(1, values.ndim)))


def _reduce(per_example: Array, reduction: str) -> Array:
    """Returns the per-example losses reduced over the batch."""
    _checks.one_of("reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return jnp.mean(per_example)
    if reduction == "sum":
        return jnp.sum(per_example)
    return per_example


def _clip(p: Array) -> Array:
    """Returns probabilities clipped into [ε, 1 − ε], so log p and log(1 − p)
    stay finite (their gradient is 0 outside that range)."""
    eps = jnp.finfo(p.dtype).eps
    return jnp.clip(p, eps, 1 - eps)


_CONTRACT = "loss(y_true, y_pred, *, reduction='mean')"


def _takes_reduction(fn: Callable) -> bool | None:
    """Returns whether ``fn(y_true, y_pred)`` and ``fn(…, reduction=…)`` both
    bind; None when ``fn`` has no signature to read (a builtin)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(0, 0)
        sig.bind(0, 0, reduction="none")
    except TypeError:
        return False
    return True


def check_contract(fn, y_true, y_pred) -> None:
    """Raises unless the loss ``fn`` keeps the contract of annjax's losses.

    The contract is ``loss(y_true, y_pred, *, reduction="mean")``: targets
    first, a scalar for ``"mean"`` and one value per example, shape
    ``(batch,)``, for ``reduction="none"`` (``fit`` weights and averages
    those itself). Checked with ``jax.eval_shape`` on ``y_true`` and
    ``y_pred`` (arrays or ``jax.ShapeDtypeStruct``, batch of 2 or more),
    so nothing is computed.

    Raises:
      TypeError: for a loss without a ``reduction`` keyword (an optax loss
        ``(logits, labels)`` among them).
      ValueError: for a loss that ignores ``reduction`` (a scalar asked for
        per-example values) or returns another shape.
    """
    name = getattr(fn, "__name__", repr(fn))
    if _takes_reduction(fn) is False:
        raise TypeError(
            f"loss {name}: expected a function {_CONTRACT} (targets first, a "
            "keyword reduction of 'mean', 'sum' or 'none'), got the signature "
            f"{inspect.signature(fn)}. Wrap it, e.g. for an optax loss "
            "(logits, labels): def loss(y_true, y_pred, *, reduction='mean'): "
            "v = optax.softmax_cross_entropy_with_integer_labels(y_pred, y_true); "
            "return v if reduction == 'none' else v.mean()."
        )
    batch = y_pred.shape[0]
    for reduction, want in (("none", (batch,)), (None, ())):
        kwargs = {} if reduction is None else {"reduction": reduction}
        with _hyperparams.recording():  # an ann.hyper read takes a stand-in
            out = jax.eval_shape(functools.partial(fn, **kwargs), y_true, y_pred)
        shape = tuple(getattr(out, "shape", ()))
        if shape != want:
            asked = "the default reduction" if reduction is None else "reduction='none'"
            what = "one value per example" if want else "a scalar"
            raise ValueError(
                f"loss {name}: expected {what}, shape {want}, for {asked} on a "
                f"batch of {batch}, got shape {shape}. fit asks for the "
                "per-example values (reduction='none') to weight them: return v "
                "if reduction == 'none' else v.mean() (or v.sum() for 'sum')."
            )


# --------------------------------------------------------------------------- #
# Regression losses.
# --------------------------------------------------------------------------- #


@jax.jit(static_argnames="reduction")
def mse(y_true: ArrayLike, y_pred: ArrayLike, reduction: str = "mean") -> Array:
    r"""Returns the mean squared error, the lecture's loss for regression.

    .. math:: L = \frac{1}{N} \sum_{i=1}^{N} \frac{1}{K}
              \sum_{k=1}^{K} (y_{ik} - \hat y_{ik})^2

    Note that ``optax.l2_loss`` is half of this; ``optax.squared_error`` is the
    summand.

    Args:
      y_true: targets, the shape of ``y_pred``.
      y_pred: predictions, shape ``(batch, ...)``.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one value per example).

    Raises:
      ValueError: for mismatched shapes or an unknown ``reduction``.
    """
    y_true, y_pred = _float_pair(y_true, y_pred)
    _same_shape("mse", y_true, y_pred)
    return _reduce(_per_example(optax.squared_error(y_pred, y_true)), reduction)


@jax.jit(static_argnames="reduction")
def mae(y_true: ArrayLike, y_pred: ArrayLike, reduction: str = "mean") -> Array:
    r"""Returns the mean absolute error, less sensitive to outliers than MSE.

    .. math:: L = \frac{1}{N} \sum_{i=1}^{N} \frac{1}{K}
              \sum_{k=1}^{K} |y_{ik} - \hat y_{ik}|

    Args and Raises: as :func:`mse`.
    """
    y_true, y_pred = _float_pair(y_true, y_pred)
    _same_shape("mae", y_true, y_pred)
    return _reduce(_per_example(jnp.abs(y_pred - y_true)), reduction)


@jax.jit(static_argnames=("reduction", "delta"))
def huber(
    y_true: ArrayLike, y_pred: ArrayLike, reduction: str = "mean", delta: float = 1.0
) -> Array:
    r"""Returns the Huber loss: quadratic for small errors, linear for large ones.

    .. math:: \ell(r) = \begin{cases} \tfrac12 r^2 & |r| \le \delta \\
              \delta\,(|r| - \tfrac12 \delta) & |r| > \delta \end{cases},
              \qquad r = y - \hat y

    averaged over the feature axes, then reduced over the batch
    (``optax.huber_loss`` per element).

    Args:
      y_true, y_pred, reduction: as :func:`mse`.
      delta: the error size (> 0) where the loss turns from quadratic to linear.

    Raises:
      ValueError: for mismatched shapes, an unknown ``reduction`` or a
        ``delta`` that is not > 0.
    """
    delta = _checks.positive("delta", delta)
    y_true, y_pred = _float_pair(y_true, y_pred)
    _same_shape("huber", y_true, y_pred)
    values = optax.huber_loss(y_pred, y_true, delta=delta)
    return _reduce(_per_example(values), reduction)


# --------------------------------------------------------------------------- #
# Classification losses.
# --------------------------------------------------------------------------- #


@jax.jit(static_argnames="reduction")
def cross_entropy(
    y_true: ArrayLike, y_pred: ArrayLike, reduction: str = "mean"
) -> Array:
    r"""Returns the categorical cross-entropy of predicted probabilities.

    .. math:: L = -\frac{1}{N} \sum_{i=1}^{N} \sum_{k=1}^{K}
              y_{ik} \log \hat y_{ik}

    ŷ is clipped into [ε, 1 − ε] first, so a zero probability gives a large,
    finite loss instead of ``inf``. For a network that outputs logits, use
    :func:`softmax_cross_entropy`: it is exact and stable for any logit.

    Args:
      y_true: one-hot targets (or probabilities) of ``y_pred``'s shape, or
        integer class labels of shape ``y_pred.shape[:-1]``.
      y_pred: probabilities, shape ``(batch, ..., K)``, classes last.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one value per example).

    Raises:
      ValueError: for shapes that fit neither form, float labels of the sparse
        shape, or an unknown ``reduction``.
    """
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    sparse = _is_sparse("cross_entropy", y_true, y_pred)
    labels, p = _float_pair(y_true, y_pred)
    log_p = jnp.log(_clip(p))
    if sparse:
        log_p_true = jnp.take_along_axis(log_p, y_true[..., None], axis=-1)
        values = -log_p_true[..., 0]
    else:
        values = -jnp.sum(labels * log_p, axis=-1)
    return _reduce(_per_example(values), reduction)


def softmax_cross_entropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    reduction: str = "mean",
    *,
    label_smoothing: float = 0.0,
) -> Array:
    r"""Returns the cross-entropy of softmax(logits): softmax and loss in one.

    .. math:: L = -\frac{1}{N} \sum_{i=1}^{N} \sum_{k=1}^{K} \tilde y_{ik}
              \log \frac{e^{z_{ik}}}{\sum_j e^{z_{ij}}}, \qquad
              \tilde y = (1 - \alpha)\, y + \alpha / K

    Computed with log-softmax (``optax.softmax_cross_entropy`` and
    ``optax.softmax_cross_entropy_with_integer_labels``), so it and its
    gradient softmax(z) − ỹ stay finite for logits of any size. Label
    smoothing α (Szegedy et al., 2016) mixes the targets with the uniform
    distribution over the K classes, as ``optax.smooth_labels`` does; integer
    labels are made one-hot first.

    Args:
      y_true: integer class labels of shape ``y_pred.shape[:-1]``, or one-hot
        targets (or probabilities) of ``y_pred``'s shape.
      y_pred: logits z, shape ``(batch, ..., K)``, classes last.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one value per example).
      label_smoothing: α in [0, 1]; 0 (the default) leaves the targets as
        they are. A ``jax.Array`` (a traced value: one per model of a
        sweep) is used as it is, unchecked; ``ann.hyper(name)`` takes its
        value from the run (``fit(label_smoothing=ann.hyper(name))`` is the
        usual way to sweep it).

    Raises:
      ValueError: as :func:`cross_entropy`; for α outside [0, 1].

    Examples:
      >>> import annjax as ann
      >>> import jax.numpy as jnp
      >>> z, y = jnp.array([[2.0, 0.0, -1.0]]), jnp.array([0])
      >>> loss = ann.losses.softmax_cross_entropy(y, z, label_smoothing=0.1)
      >>> round(float(loss), 4)
      0.3365
      >>> traced = ann.losses.softmax_cross_entropy(
      ...     y, z, label_smoothing=jnp.float32(0.1))   # as inside a sweep
      >>> round(float(traced), 4)
      0.3365
    """
    alpha = _hyperparams.value(label_smoothing, check_label_smoothing)
    if isinstance(alpha, jax.Array):
        return _smoothed_softmax_cross_entropy(y_true, y_pred, reduction, alpha)
    alpha = check_label_smoothing(alpha)
    return _softmax_cross_entropy(y_true, y_pred, reduction, alpha)


def check_label_smoothing(
    alpha, name: str = "softmax_cross_entropy label_smoothing"
) -> float:
    """Returns a label smoothing α, checked: a number in [0, 1].

    Raises:
      ValueError: for α outside [0, 1] (``name`` names it in the message).

    Examples:
      >>> import annjax as ann
      >>> ann.losses.check_label_smoothing(0.1)
      0.1
    """
    alpha = _checks.number(name, alpha)
    if not 0.0 <= alpha <= 1.0:
        raise _checks.fail(name, "a probability α in [0, 1] (0.1 is common)", alpha)
    return alpha


@jax.jit(static_argnames=("reduction", "alpha"))
def _softmax_cross_entropy(y_true, y_pred, reduction: str, alpha: float) -> Array:
    return _smoothed_targets_loss(y_true, y_pred, reduction, alpha, alpha != 0.0)


@jax.jit(static_argnames=("reduction",))
def _smoothed_softmax_cross_entropy(y_true, y_pred, reduction: str, alpha) -> Array:
    return _smoothed_targets_loss(y_true, y_pred, reduction, alpha, True)


def _smoothed_targets_loss(y_true, y_pred, reduction, alpha, smooth: bool) -> Array:
    """Returns the cross-entropy against targets smoothed by α (when the static
    ``smooth`` says; α may be a traced value)."""
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    if _is_sparse("softmax_cross_entropy", y_true, y_pred):
        _, logits = _float_pair(y_true, y_pred)
        if not smooth:
            values = optax.softmax_cross_entropy_with_integer_labels(logits, y_true)
            return _reduce(_per_example(values), reduction)
        labels = jax.nn.one_hot(y_true, logits.shape[-1], dtype=logits.dtype)
    else:
        labels, logits = _float_pair(y_true, y_pred)
    if smooth:
        if isinstance(alpha, jax.Array):  # a traced α: in the targets' dtype
            alpha = alpha.astype(labels.dtype)
        labels = (1.0 - alpha) * labels + alpha / logits.shape[-1]
    values = optax.softmax_cross_entropy(logits, labels)
    return _reduce(_per_example(values), reduction)


@jax.jit(static_argnames="reduction")
def binary_cross_entropy(
    y_true: ArrayLike, y_pred: ArrayLike, reduction: str = "mean"
) -> Array:
    r"""Returns the binary cross-entropy of predicted probabilities.

    .. math:: L = -\frac{1}{N} \sum_{i=1}^{N} \frac{1}{K} \sum_{k=1}^{K}
              \left[ y_{ik} \log \hat y_{ik}
              + (1 - y_{ik}) \log (1 - \hat y_{ik}) \right]

    ŷ is clipped into [ε, 1 − ε]; for logits use
    :func:`sigmoid_binary_cross_entropy`.

    Args:
      y_true: 0/1 targets (or probabilities), the shape of ``y_pred``.
      y_pred: probabilities σ(z), shape ``(batch, ...)``.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one value per example).

    Raises:
      ValueError: for mismatched shapes or an unknown ``reduction``.
    """
    y_true, y_pred = _float_pair(y_true, y_pred)
    _same_shape("binary_cross_entropy", y_true, y_pred)
    p = _clip(y_pred)
    values = -(y_true * jnp.log(p) + (1 - y_true) * jnp.log1p(-p))
    return _reduce(_per_example(values), reduction)


@jax.jit(static_argnames="reduction")
def sigmoid_binary_cross_entropy(
    y_true: ArrayLike, y_pred: ArrayLike, reduction: str = "mean"
) -> Array:
    r"""Returns the binary cross-entropy of σ(logits): sigmoid and loss in one.

    .. math:: L = -\frac{1}{N} \sum_{i=1}^{N} \frac{1}{K} \sum_{k=1}^{K}
              \left[ y_{ik} \log \sigma(z_{ik})
              + (1 - y_{ik}) \log (1 - \sigma(z_{ik})) \right]

    Computed with log-sigmoid (``optax.sigmoid_binary_cross_entropy``), so it
    and its gradient σ(z) − y stay finite for logits of any size.

    Args:
      y_true: 0/1 targets (or probabilities), the shape of ``y_pred``.
      y_pred: logits z, shape ``(batch, ...)``.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one value per example).

    Raises:
      ValueError: for mismatched shapes or an unknown ``reduction``.
    """
    y_true, y_pred = _float_pair(y_true, y_pred)
    _same_shape("sigmoid_binary_cross_entropy", y_true, y_pred)
    values = optax.sigmoid_binary_cross_entropy(y_pred, y_true)
    return _reduce(_per_example(values), reduction)


# --------------------------------------------------------------------------- #
# Registry.
# --------------------------------------------------------------------------- #

_REGISTRY: dict[str, Loss] = {
    "mse": mse,
    "mean_squared_error": mse,
    "mae": mae,
    "mean_absolute_error": mae,
    "huber": huber,
    "huber_loss": huber,
    "cross_entropy": cross_entropy,
    "categorical_cross_entropy": cross_entropy,
    "categorical_crossentropy": cross_entropy,
    "sparse_categorical_crossentropy": cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
    "softmax_crossentropy": softmax_cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "binary_crossentropy": binary_cross_entropy,
    "bce": binary_cross_entropy,
    "log_loss": binary_cross_entropy,
    "sigmoid_binary_cross_entropy": sigmoid_binary_cross_entropy,
    "sigmoid_bce": sigmoid_binary_cross_entropy,
}

_CANONICAL = (
    "mse",
    "mae",
    "huber",
    "cross_entropy",
    "softmax_cross_entropy",
    "binary_cross_entropy",
    "sigmoid_binary_cross_entropy",
)

#: Names (aliases included) of the losses whose ``y_true`` may be integer class
#: labels of shape ``y_pred.shape[:-1]``, with ``y_pred`` of shape
#: ``(batch, ..., K)``: labels must be integers in [0, K). They also take
#: one-hot targets of ``y_pred``'s shape. A training engine validates labels
#: with ``name in CLASSIFICATION``.
CLASSIFICATION = frozenset(
    name
    for name, fn in _REGISTRY.items()
    if fn in (cross_entropy, softmax_cross_entropy)
)

#: Names (aliases included) of the binary losses, whose ``y_true`` holds 0/1 targets
#: (or probabilities) of ``y_pred``'s shape, one independent class per unit.
BINARY = frozenset(
    name
    for name, fn in _REGISTRY.items()
    if fn in (binary_cross_entropy, sigmoid_binary_cross_entropy)
)


#: For each loss on probabilities, the loss on logits that applies the link
#: (softmax or sigmoid) itself: what a model ending without one must use.
LOGITS_LOSS = {
    "cross_entropy": "softmax_cross_entropy",
    "binary_cross_entropy": "sigmoid_binary_cross_entropy",
}


def check_custom(loss: str | Loss, y_true, y_pred) -> None:
    """Raises unless a user's loss keeps the contract of the registered ones,
    ``loss(y_true, y_pred, *, reduction="mean")``; a registered loss passes.

    See :func:`check_contract` (abstract: nothing runs).

    Raises:
      TypeError: for a loss without a ``reduction`` keyword (an optax loss
        ``(logits, labels)`` among them).
      ValueError: for a loss that ignores ``reduction`` (a scalar asked for
        per-example values) or returns another shape.
    """
    fn = get(loss)
    if fn not in _REGISTRY.values():
        check_contract(fn, y_true, y_pred)


def names() -> tuple[str, ...]:
    """Returns the names :func:`get` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def get(name: str | Loss) -> Loss:
    """Returns the loss called ``name`` (case-insensitive; a callable passes through).

    Raises:
      ValueError: for an unknown name; the message lists the valid ones.
      TypeError: for anything that is neither a string nor a callable.
    """
    return _checks.lookup("loss", _REGISTRY, name)


def name_of(loss: str | Loss) -> str:
    """Returns the canonical name of a loss (``"mean_squared_error"`` gives
    ``"mse"``), or a user's function's ``__name__``."""
    fn = get(loss)
    for key in _CANONICAL:
        if _REGISTRY[key] is fn:
            return key
    return getattr(fn, "__name__", "loss")
