r"""The single neuron and the single layer as pure functions, and how they learn.

The lecture writes a neuron in scalar form and a layer in vector form:

.. math:: y = f\Big(\sum_{i=1}^{n} w_i x_i + b\Big), \qquad
          \mathbf y = f(W \mathbf x + \mathbf b),

with W of shape (m outputs × n inputs): row j of W holds the weights of
neuron j, so :func:`layer` is :func:`neuron` applied to each row. Both take one
input ``x`` of shape ``(n,)`` or a batch of shape ``(batch, n)``.

Two learning rules train a layer of threshold units without any derivative of
f: :func:`delta_rule` (one update per batch) and :func:`train`, Rosenblatt's
perceptron (one update per example, in order), compiled with ``lax.scan``.

Examples:
  >>> import itertools
  >>> import jax, jax.numpy as jnp
  >>> import annjax as ann
  >>> X = jnp.array(list(itertools.product([0, 1], repeat=2)), jnp.float32)
  >>> y = jnp.array([0, 0, 0, 1])  # AND
  >>> result = ann.perceptron.train(X, y, epochs=20, lr=0.1, key=jax.random.key(0))
  >>> float(result.accuracy[-1])
  1.0
  >>> ann.perceptron.layer(result.W, X, "heaviside", result.b)[:, 0]
  Array([0., 0., 0., 1.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from annjax import _checks, activations, initializers

Array = jax.Array
Activation = str | Callable[..., Array]

__all__ = [
    "PerceptronResult",
    "delta_rule",
    "layer",
    "neuron",
    "train",
]

#: The label values each threshold activation can produce.
#: ``sign`` returns 0 at z = 0, which is no label: such an output counts as an
#: error and is corrected, so it trains too; ``bipolar_step`` is the textbook
#: ±1 unit that never returns 0.
_LABELS = {"heaviside": (0, 1), "bipolar_step": (-1, 1), "sign": (-1, 1)}


class PerceptronResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
      W: the weights, shape ``(m, n)`` (``m = 1`` for labels of shape ``(batch,)``).
      b: the biases, shape ``(m,)``.
      accuracy: shape ``(epochs,)``: after each epoch, the fraction of examples
        whose every output equals its label.
    """

    W: Array
    b: Array
    accuracy: Array


# --------------------------------------------------------------------------- #
# Validation shared by every function here.
# --------------------------------------------------------------------------- #


def _floats(**named: ArrayLike) -> list[Array]:
    """Returns the arrays in one float dtype; TypeError names a non-numeric one."""
    arrays = [
        jnp.asarray(_checks.numeric_array(name, value)) for name, value in named.items()
    ]
    floats = [a.dtype for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    # The cast below is explicit, so choosing the widest float is too (this also
    # runs under jax.numpy_dtype_promotion("strict"), which refuses to choose).
    with jax.numpy_dtype_promotion("standard"):
        dtype = jnp.result_type(*floats) if floats else jnp.result_type(float)
    return [a.astype(dtype) for a in arrays]


def _check_weights(W: Array) -> tuple[int, int]:
    """Returns (m, n) for a weight matrix of shape (m outputs, n inputs)."""
    if W.ndim != 2:
        raise _checks.fail("W", "a matrix of shape (m outputs, n inputs)", W.shape)
    return W.shape


def _check_inputs(name: str, x: Array, n: int, w_name: str, w_shape: tuple) -> None:
    """Raises ValueError, naming both shapes, unless x has shape (n,) or (batch, n)."""
    if x.ndim not in (1, 2) or x.shape[-1] != n:
        raise _checks.fail(
            name,
            f"shape ({n},) or (batch, {n}) to match {w_name} of shape {w_shape}",
            x.shape,
        )


def _check_bias(b: Array, m: int) -> None:
    """Raises ValueError unless b is a scalar or has shape (m,)."""
    if b.shape not in ((), (m,)):
        raise _checks.fail(
            "b", f"a scalar or shape ({m},), one bias per output", b.shape
        )


# --------------------------------------------------------------------------- #
# The neuron and the layer.
# --------------------------------------------------------------------------- #


def neuron(w: ArrayLike, x: ArrayLike, f: Activation, b: ArrayLike = 0.0) -> Array:
    r"""Returns the output of one neuron, in the lecture's scalar form.

    .. math:: y = f\Big(\sum_{i=1}^{n} w_i x_i + b\Big)

    Args:
      w: the weights, shape ``(n,)``.
      x: one input of shape ``(n,)``, or a batch of shape ``(batch, n)``.
      f: the activation, a name from :mod:`annjax.activations` or a callable.
      b: the bias, a scalar.

    Returns:
      A scalar for one input, shape ``(batch,)`` for a batch.

    Raises:
      ValueError: if x's last axis is not w's length (the message names both
        shapes), or for an unknown activation name.
      TypeError: for non-numeric input.
    """
    fn = activations.get(f)
    w, x, b = _floats(w=w, x=x, b=b)
    if w.ndim != 1:
        raise _checks.fail("w", "a weight vector of shape (n,)", w.shape)
    _check_inputs("x", x, w.shape[0], "w", w.shape)
    if b.ndim != 0:
        raise _checks.fail("b", "a scalar bias", b.shape)
    return fn(jnp.sum(w * x, axis=-1) + b)  # Σᵢ wᵢ xᵢ, one sum per row of x


def layer(
    W: ArrayLike, x: ArrayLike, f: Activation, b: ArrayLike | None = None
) -> Array:
    r"""Returns the outputs of a layer of m neurons, in the lecture's vector form.

    .. math:: \mathbf y = f(W \mathbf x + \mathbf b), \qquad
              W \in \mathbb R^{m \times n}

    For a batch X of shape ``(batch, n)`` (one example per row) this is
    f(X Wᵀ + b): row i of the result is f(W xᵢ + b).

    Args:
      W: the weights, shape ``(m outputs, n inputs)``.
      x: one input of shape ``(n,)``, or a batch of shape ``(batch, n)``.
      f: the activation, a name from :mod:`annjax.activations` or a callable.
      b: the biases, shape ``(m,)`` or a scalar; None for no bias.

    Returns:
      Shape ``(m,)`` for one input, ``(batch, m)`` for a batch.

    Raises:
      ValueError: if x's last axis is not W's number of columns n (the message
        names both shapes), for a bias of the wrong shape, or for an unknown
        activation name.
      TypeError: for non-numeric input.
    """
    fn = activations.get(f)
    W, x = _floats(W=W, x=x)
    m, n = _check_weights(W)
    _check_inputs("x", x, n, "W", W.shape)
    z = W @ x if x.ndim == 1 else x @ W.T  # Wx, or (W xᵢ)ᵀ for each row xᵢ of X
    if b is not None:
        (b,) = _floats(b=b)
        _check_bias(b, m)
        z = z + b.astype(z.dtype)
    return fn(z)


# --------------------------------------------------------------------------- #
# Learning rules.
# --------------------------------------------------------------------------- #


@jax.jit(static_argnames="f")
def _delta_update(
    W: Array, b: Array, X: Array, Y: Array, lr: ArrayLike, f: Callable[..., Array]
) -> tuple[Array, Array]:
    """Returns (W + ΔW, b + Δb) for a batch X (batch, n) and targets Y (batch, m)."""
    error = Y - f(X @ W.T + b)  # y − ŷ, shape (batch, m)
    return W + lr * error.T @ X, b + lr * jnp.sum(error, axis=0)


def delta_rule(
    W: ArrayLike,
    b: ArrayLike,
    X: ArrayLike,
    y: ArrayLike,
    lr: ArrayLike,
    *,
    activation: Activation = "heaviside",
) -> tuple[Array, Array]:
    r"""Returns the weights and biases after one delta-rule update on a batch.

    .. math:: \hat Y = f(X W^\top + \mathbf b), \qquad
              \Delta W = \alpha\,(Y - \hat Y)^\top X, \qquad
              \Delta \mathbf b = \alpha \sum_{i=1}^{N} (\mathbf y_i - \hat{\mathbf y}_i)

    Sign convention: the error is target minus output, y − ŷ, and it is
    *added*: an output that is too low (ŷ = 0, y = 1) moves each weight by
    +α xᵢ, towards the input. Summed over the batch, ΔW is the sum of the
    per-example updates α (yᵢ − ŷᵢ) xᵢᵀ that :func:`train` applies one by one.
    With ``activation="identity"`` it is the Widrow–Hoff (LMS) rule.

    Args:
      W: weights, shape ``(m, n)``.
      b: biases, shape ``(m,)``.
      X: inputs, shape ``(batch, n)``.
      y: targets, shape ``(batch, m)``, or ``(batch,)`` when m = 1.
      lr: the learning rate α > 0.
      activation: f, heaviside (0/1 targets) by default; ``"bipolar_step"``
        for ±1.

    Returns:
      ``(W + ΔW, b + Δb)``, of the shapes of W and b.

    Raises:
      ValueError: for shapes that do not fit together (the message names
        them), or a learning rate that is not > 0.
      TypeError: for non-numeric input.
    """
    fn = activations.get(activation)
    W, b, X, y = _floats(W=W, b=b, X=X, y=y)
    m, n = _check_weights(W)
    if X.ndim != 2:
        raise _checks.fail("X", f"a batch of shape (batch, {n})", X.shape)
    _check_inputs("X", X, n, "W", W.shape)
    if b.shape != (m,):
        raise _checks.fail("b", f"shape ({m},) to match W of shape {W.shape}", b.shape)
    Y = _targets(y, X.shape[0], m)
    if not hasattr(lr, "shape"):  # a traced or array rate is the caller's choice
        lr = _checks.positive("lr", lr)
    return _delta_update(W, b, X, Y, lr, fn)


def _targets(y: Array, batch: int, m: int) -> Array:
    """Returns y as (batch, m); (batch,) is accepted when m = 1."""
    if y.shape == (batch,) and m == 1:
        return y[:, None]
    if y.shape != (batch, m):
        expected = f"shape ({batch}, {m})" + (f" or ({batch},)" if m == 1 else "")
        raise _checks.fail(
            "y", f"{expected}, one target per example and output", y.shape
        )
    return y


def _check_labels(y: Array, activation: str) -> None:
    """Raises ValueError if concrete labels lie outside the activation's range."""
    if isinstance(y, jax.core.Tracer):
        return  # values unknown while tracing
    allowed = _LABELS[activation]
    found = np.unique(np.asarray(y))
    if not np.isin(found, allowed).all():
        raise _checks.fail(
            "y",
            f"labels {allowed[0]} or {allowed[1]} for activation={activation!r}",
            found.tolist(),
            "Use heaviside with 0/1 labels, bipolar_step with -1/+1 labels.",
        )


@jax.jit(static_argnames=("epochs", "f"))
def _rosenblatt(
    W: Array, b: Array, X: Array, Y: Array, lr: Array, epochs: int, f: Callable
) -> PerceptronResult:
    """Returns the result of ``epochs`` passes of per-example perceptron updates."""

    def example(params: tuple[Array, Array], xy: tuple[Array, Array]):
        x, t = xy
        # W ← W + α (y − ŷ) xᵀ: the delta rule on a batch of one example.
        return _delta_update(*params, x[None, :], t[None, :], lr, f), None

    def epoch(params: tuple[Array, Array], _):
        params, _ = lax.scan(example, params, (X, Y))
        correct = jnp.all(f(X @ params[0].T + params[1]) == Y, axis=-1)
        return params, jnp.mean(correct)

    (W, b), accuracy = lax.scan(epoch, (W, b), length=epochs)
    return PerceptronResult(W, b, accuracy)


def train(
    X: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int = 20,
    lr: float = 0.1,
    key: jax.Array | None = None,
    activation: Activation = "heaviside",
    w_init: str | initializers.Initializer = "lecture_uniform",
) -> PerceptronResult:
    r"""Returns the weights, bias and per-epoch accuracy of Rosenblatt's perceptron.

    Each epoch visits the examples in order and, after each one, moves the
    weights by the error:

    .. math:: \hat{\mathbf y} = f(W \mathbf x + \mathbf b), \qquad
              W \leftarrow W + \alpha\,(\mathbf y - \hat{\mathbf y})
              \,\mathbf x^\top, \qquad
              \mathbf b \leftarrow \mathbf b + \alpha\,(\mathbf y - \hat{\mathbf y})

    It converges when the classes are linearly separable (AND, OR) and never
    does otherwise (XOR): the accuracy then stays below 1 in every epoch.
    The whole run is one compiled call (``lax.scan`` over epochs and, inside,
    over examples).

    Args:
      X: inputs, shape ``(batch, n)``.
      y: labels, shape ``(batch,)`` (one output) or ``(batch, m)``: 0/1 for
        ``activation="heaviside"``, −1/+1 for ``activation="bipolar_step"``.
      epochs: the number of passes over the data (≥ 1).
      lr: the learning rate α > 0.
      key: draws the initial weights; not needed with ``w_init="zeros"``.
      activation: ``"heaviside"`` (alias ``"step"``), ``"bipolar_step"`` (the
        ±1 unit) or ``"sign"`` (which gives 0 at z = 0, counted as an error).
      w_init: the initializer of W (an :mod:`annjax.initializers` name or
        function), by default the lecture's U(−0.5, 0.5); b starts at 0.

    Returns:
      ``PerceptronResult(W, b, accuracy)``, W of shape ``(m, n)`` (m = 1 for
      labels of shape ``(batch,)``), b of shape ``(m,)``, accuracy of shape
      ``(epochs,)``.

    Raises:
      ValueError: for bad shapes, labels outside the activation's range,
        another activation, a missing key, or invalid epochs or lr.
      TypeError: for non-numeric input.
    """
    fn = activations.get(activation)
    name = _checks.one_of("activation", activations.name_of(activation), tuple(_LABELS))
    epochs = _checks.integer("epochs", epochs, minimum=1)
    lr = _checks.positive("lr", lr)
    init = initializers.get(w_init)
    X, y = _floats(X=X, y=y)
    if X.ndim != 2:
        raise _checks.fail("X", "a batch of shape (batch, n)", X.shape)
    batch, n = X.shape
    m = 1 if y.ndim == 1 else y.shape[-1]
    Y = _targets(y, batch, m)
    _check_labels(Y, name)
    if key is None:
        if init is not initializers.zeros:
            raise _checks.fail(
                "key",
                "a jax.random.key to draw the initial weights",
                key,
                "Pass key=jax.random.key(0), or w_init='zeros' for the textbook "
                "start W = 0.",
            )
        key = jax.random.key(0)  # zeros ignores it
    W = init(key, (m, n), X.dtype)
    b = jnp.zeros((m,), X.dtype)
    return _rosenblatt(W, b, X, Y, jnp.asarray(lr, X.dtype), epochs, fn)
