"""The training loss as a function of the params: what the landscape and the
Hessian study.

:func:`prepare` checks ``(model, params, state, data, loss)`` once, as
``ann.evaluate`` does, and returns the data on the device in ``fit``'s target
form. :func:`over_batches` averages a per-batch quantity (the loss, a
Hessian-vector product) over the data,

.. math:: \\bar f(\\theta) = \\sum_b \\frac{n_b}{n} f_b(\\theta),

one batch after another inside the compiled function, so memory is bounded
by the batch, not the data set. The model runs in evaluation mode with the
given ``state`` (batch norm uses its running statistics, dropout is off).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from annjax import _checks
from annjax import losses as _losses
from annjax._types import Array, Layer

# Not annjax.training's checks: training.step imports annjax.analysis (the
# profiler), so an import of annjax.training from here would close a cycle.


def _shapes(tree) -> dict[str, tuple]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(k, simple=True, separator="/"): jnp.shape(v)
        for k, v in leaves
    }


def _check_tree(what: str, expected, got) -> None:
    if _shapes(expected) != _shapes(got):
        raise _checks.fail(
            what,
            f"the {what} of this model, {_shapes(expected)}",
            _shapes(got),
            f"Pass the {what} that fit (or this model's init) returned.",
        )


def prepare(model: Layer, params, state, data, loss, batch_size) -> tuple:
    """Returns ``(x, y, batch_size)`` checked for ``model`` and ``loss``.

    Raises TypeError for a model that is not a Layer, ValueError for data that
    is not a pair ``(X, y)`` of equal length, for params or state of another
    model, for an unknown loss or a bad ``batch_size``. ``y`` of shape (n,)
    for a model of one output becomes (n, 1), as in ``fit``.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"model: expected an annjax Layer, got {model!r}.")
    _losses.get(loss)
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise _checks.fail("data", "a pair (X, y)", type(data).__name__)
    x, y = (
        jnp.asarray(_checks.numeric_array(f"data {p}", a))
        for p, a in zip("Xy", data, strict=True)
    )
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0] or not x.shape[0]:
        raise _checks.fail(
            "data",
            "X and y with the same number (> 0) of examples",
            f"X {x.shape}, y {y.shape}",
        )
    shape = {}

    def init(key):
        shape["out"], p, s = model.init(key, x.shape[1:])
        return p, s

    want_params, want_state = jax.eval_shape(init, jax.random.key(0))
    _check_tree("params", want_params, params)
    _check_tree("state", want_state, state)
    if y.ndim == 1 and tuple(shape["out"]) == (1,):
        y = y.reshape(-1, 1)
    if batch_size is None:
        batch_size = x.shape[0]
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    return x, y, min(batch_size, x.shape[0])


def batch_loss(model: Layer, loss, params, state, x: Array, y: Array) -> Array:
    """Returns the mean ``loss`` of the model's evaluation-mode outputs on a batch."""
    return _losses.get(loss)(y, model.apply(params, state, x, train=False)[0])


def over_batches(f: Callable[[Array, Array], Any], x, y, batch_size: int) -> Any:
    """Returns Σ_b (n_b / n) f(x_b, y_b) over consecutive batches; traceable.

    The full batches run in one ``lax.scan``, the remainder (if any) as one
    smaller batch, so every example counts once and with its own weight.
    """
    n = x.shape[0]
    full, rest = divmod(n, batch_size)
    parts = []
    if full:
        cut = full * batch_size
        xs = x[:cut].reshape(full, batch_size, *x.shape[1:])
        ys = y[:cut].reshape(full, batch_size, *y.shape[1:])

        def body(total, batch):
            return jax.tree.map(jnp.add, total, f(*batch)), None

        first = f(xs[0], ys[0])
        total = jax.lax.scan(body, first, (xs[1:], ys[1:]))[0]
        parts.append(jax.tree.map(lambda t: t * (batch_size / n), total))
    if rest:
        last = f(x[n - rest :], y[n - rest :])
        parts.append(jax.tree.map(lambda t: t * (rest / n), last))
    return parts[0] if len(parts) == 1 else jax.tree.map(jnp.add, *parts)
