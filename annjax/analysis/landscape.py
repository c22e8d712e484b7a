r"""The loss on a line or a plane through the params: loss-landscape slices.

Around params :math:`\theta` the slice along directions :math:`\delta, \eta` is

.. math:: f(\alpha, \beta) = L(\theta + \alpha\,\delta + \beta\,\eta),

evaluated on a ``resolution``-point grid of :math:`(\alpha, \beta)`.

**Filter normalisation** (Li et al. 2018). A random Gaussian direction has
the same size in every layer, so a layer of small weights is perturbed far
more than one of large weights, and scale-invariant networks (ReLU, batch
norm) would look sharp or flat at will. Li et al. rescale each *filter* of
the direction to the norm of the same filter of :math:`\theta`:

.. math:: \delta_{i,j} \leftarrow \frac{\delta_{i,j}}{\lVert \delta_{i,j}
   \rVert} \lVert \theta_{i,j} \rVert

for filter j of layer i. A dense layer's filter is one output unit's
weights, a row of annjax's ``W`` (out, in); a conv filter is one output
channel, the last axis of an HWIO kernel (and of flax's ``kernel``).
``normalization="layer"`` rescales each whole weight array instead, ``None``
keeps the raw Gaussian. Biases and normalisation parameters
(:func:`annjax.regularizers.default_mask`) get a zero direction unless
``include_biases=True`` (then they are normalised as a whole).

**Linear interpolation** (Goodfellow, Vinyals & Saxe 2015) between two
solutions :math:`\theta_a, \theta_b`: the single direction
:math:`\theta_b - \theta_a` (with ``params = θ_a`` and ``span=(-0.5, 1.5)``,
:math:`\alpha = 1` is :math:`\theta_b`).

References:
  Li, Xu, Taylor, Studer & Goldstein (2018), "Visualizing the Loss Landscape
  of Neural Nets", NeurIPS.
  Goodfellow, Vinyals & Saxe (2015), "Qualitatively characterizing neural
  network optimization problems", ICLR.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from annjax import _checks
from annjax import losses as _losses
from annjax import metrics as _metrics
from annjax import regularizers as _regularizers
from annjax._types import Array, Layer
from annjax.analysis._objective import prepare

__all__ = ["Landscape", "loss_landscape", "random_direction"]

NORMALIZATIONS = ("filter", "layer", None)


class Landscape(NamedTuple):
    """What :func:`loss_landscape` returns.

    ``loss[i]`` (1-D) is at ``θ + coords[i] δ``; ``loss[i, j]`` (2-D) at
    ``θ + coords[i] δ + coords[j] η``, with ``directions = (δ,)`` or ``(δ, η)``
    params-shaped pytrees. Pass a Landscape as ``directions=`` to evaluate the
    same slice again (other params, other data).
    """

    loss: Array
    metrics: dict[str, Array]
    coords: Array
    directions: tuple


def _filter_axes(name: str, leaf) -> tuple[int, ...]:
    """Returns the axes one filter spans: all but the output axis (annjax's W
    is (out, in); conv kernels, annjax's and flax's, and flax's dense
    ``kernel`` (in, out) have the output last)."""
    out = 0 if leaf.ndim == 2 and name != "kernel" else leaf.ndim - 1
    return tuple(a for a in range(leaf.ndim) if a != out)


def random_direction(
    params, key: Array, normalization: str | None = "filter", include_biases=False
):
    """Returns a Gaussian direction shaped as ``params``, normalised as Li et al.

    See the module's docstring for ``normalization`` and ``include_biases``.
    """
    _checks.random_key("key", key)
    if normalization not in NORMALIZATIONS:
        raise _checks.fail("normalization", '"filter", "layer" or None', normalization)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    weights = jax.tree.leaves(_regularizers.default_mask(params))
    keys = jax.random.split(key, max(len(leaves), 1))
    out = []
    for (path, leaf), weight, k in zip(leaves, weights, keys, strict=True):
        leaf = jnp.asarray(leaf)
        d = jax.random.normal(k, leaf.shape, leaf.dtype)
        if not (weight or include_biases):
            d = jnp.zeros_like(leaf)
        elif normalization is not None:
            name = jax.tree_util.keystr(path[-1:], simple=True) if path else ""
            filters = normalization == "filter" and weight and leaf.ndim >= 2
            axes = _filter_axes(name, leaf) if filters else tuple(range(leaf.ndim))
            size = jnp.sqrt(jnp.sum(d**2, axis=axes, keepdims=True))
            target = jnp.sqrt(jnp.sum(leaf**2, axis=axes, keepdims=True))
            d = d * target / jnp.maximum(size, jnp.finfo(leaf.dtype).tiny)
        out.append(d)
    return jax.tree_util.tree_unflatten(treedef, out)


def _predictions(model: Layer, params, state, x, batch_size: int) -> Array:
    """Returns the evaluation-mode outputs on all of ``x``, a batch at a time."""
    n = x.shape[0]
    full, rest = divmod(n, batch_size)

    def run(xb):
        return model.apply(params, state, xb, train=False)[0]

    parts = []
    if full:
        xs = x[: full * batch_size].reshape(full, batch_size, *x.shape[1:])
        out = jax.lax.map(run, xs)
        parts.append(out.reshape(-1, *out.shape[2:]))
    if rest:
        parts.append(run(x[n - rest :]))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def _grid(model, loss, metrics, batch_size, chunk, params, state, x, y, dirs, points):
    """The compiled body: the loss and metrics at every row of ``points``."""

    def at(point):
        def move(t, *ds):
            return t + sum(
                c.astype(t.dtype) * d for c, d in zip(point, ds, strict=True)
            )

        pred = _predictions(
            model, jax.tree.map(move, params, *dirs), state, x, batch_size
        )
        # what the metrics read, as training.step.metric_input: σ(z) for logits
        m_pred = (
            jax.nn.sigmoid(pred)
            if _losses.name_of(loss) == "sigmoid_binary_cross_entropy"
            else pred
        )
        out = {"loss": _losses.get(loss)(y, pred)}
        for m in metrics:
            out[_metrics.name_of(m)] = _metrics.get(m)(y, m_pred)
        return out

    n = points.shape[0]
    padded = jnp.concatenate([points, jnp.zeros((-n % chunk, points.shape[1]))])
    out = jax.lax.map(jax.vmap(at), padded.reshape(-1, chunk, points.shape[1]))
    return jax.tree.map(lambda a: a.reshape(-1)[:n], out)


_compiled_grid = jax.jit(_grid, static_argnums=(0, 1, 2, 3, 4))


def _directions(params, directions, key, normalization, include_biases) -> tuple:
    """Returns the tuple of direction pytrees that ``directions=`` asks for."""
    if isinstance(directions, Landscape):
        return tuple(directions.directions)
    if isinstance(directions, tuple | list) and len(directions) == 2:
        a, b = directions
        for what, tree in (("directions[0]", a), ("directions[1]", b)):
            if jax.tree.structure(tree) != jax.tree.structure(params):
                raise _checks.fail(what, "params of the same model", "another tree")
        return (jax.tree.map(lambda u, v: jnp.asarray(v) - jnp.asarray(u), a, b),)
    if directions not in (1, 2) or isinstance(directions, bool):
        raise _checks.fail(
            "directions", "1, 2, a pair (params_a, params_b) or a Landscape", directions
        )
    keys = jax.random.split(_checks.random_key("key", key), directions)
    return tuple(
        random_direction(params, k, normalization, include_biases) for k in keys
    )


def _coords(span, resolution: int) -> np.ndarray:
    """Returns ``resolution`` coordinates from ``-span`` to ``span`` (or lo to hi)."""
    if isinstance(span, tuple | list) and len(span) == 2:
        lo, hi = (_checks.number("span", s) for s in span)
    else:
        hi = _checks.positive("span", span)
        lo = -hi
    if not lo < hi:
        raise _checks.fail("span", "lo < hi", span)
    return np.linspace(lo, hi, resolution)


def loss_landscape(
    model: Layer,
    params,
    state,
    data: tuple[Any, Any],
    *,
    loss: str | Callable = "softmax_cross_entropy",
    directions: int | tuple | Landscape = 2,
    span: float | tuple[float, float] = 1.0,
    resolution: int = 41,
    normalization: str | None = "filter",
    include_biases: bool = False,
    metrics: Sequence[str | Callable] = (),
    key: Array | None = None,
    chunk: int = 64,
    batch_size: int | None = None,
) -> Landscape:
    r"""Returns the loss (and ``metrics``) on a line or plane through ``params``.

    :math:`f(\alpha, \beta) = L(\theta + \alpha\delta + \beta\eta)` for
    :math:`\alpha, \beta` in ``resolution`` equally spaced ``coords`` from
    ``-span`` to ``span`` (or ``span = (lo, hi)``); the loss and metrics are
    those of ``ann.evaluate`` on ``data`` (evaluation mode, the given batch
    norm ``state``), so with an odd ``resolution`` the centre is the loss at
    ``params``. All points run in ONE compiled program: ``chunk`` points at a
    time under ``vmap`` (memory grows with ``chunk``), the data ``batch_size``
    examples at a time (default: all).

    Args:
      model, params, state: an annjax Layer and its params and state.
      data: ``(X, y)``.
      loss: a loss name or function ``(y_true, y_pred) -> scalar``.
      directions: ``1`` or ``2`` random directions normalised by
        ``normalization`` (``"filter"``, Li et al.; ``"layer"``; ``None``);
        a pair ``(params_a, params_b)`` for the line along ``params_b -
        params_a`` (Goodfellow et al.); or a :class:`Landscape` to reuse its
        directions.
      include_biases: give biases and normalisation params a direction too.
      key: a ``jax.random.key`` for random directions.

    Returns:
      A :class:`Landscape`: ``loss`` of shape ``(resolution,)`` or
      ``(resolution, resolution)``, ``metrics`` likewise, ``coords`` and
      ``directions``.

    Raises:
      ValueError: for an argument out of range, a missing key, data or
        params that do not fit the model.

    Examples:
      >>> import jax, numpy as np
      >>> import annjax as ann
      >>> model = ann.mlp([8, 2], activation="relu")
      >>> _, params, state = model.init(jax.random.key(0), (4,))
      >>> x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
      >>> y = (x[:, 0] > 0).astype("int32")
      >>> ls = ann.analysis.loss_landscape(model, params, state, (x, y),
      ...                                  resolution=5, key=jax.random.key(1))
      >>> ls.loss.shape, ls.coords.tolist()
      ((5, 5), [-1.0, -0.5, 0.0, 0.5, 1.0])
      >>> ref = ann.evaluate(model, params, state, (x, y))["loss"]
      >>> bool(np.isclose(ls.loss[2, 2], ref, rtol=1e-5))
      True
    """
    x, y, batch_size = prepare(model, params, state, data, loss, batch_size)
    resolution = _checks.integer("resolution", resolution, minimum=2)
    chunk = _checks.integer("chunk", chunk, minimum=1)
    coords = _coords(span, resolution)
    metrics = tuple(metrics) if not isinstance(metrics, str) else (metrics,)
    for m in metrics:
        _metrics.get(m)
    dirs = _directions(params, directions, key, normalization, include_biases)
    grids = np.meshgrid(*[coords] * len(dirs), indexing="ij")
    points = np.stack([g.ravel() for g in grids], axis=1).astype(np.float32)
    chunk = min(chunk, points.shape[0])
    out = _compiled_grid(
        model, loss, metrics, batch_size, chunk, params, state, x, y, dirs, points
    )
    shape = (resolution,) * len(dirs)
    out = {k: v.reshape(shape) for k, v in out.items()}
    loss_values = out.pop("loss")
    return Landscape(loss_values, out, jnp.asarray(coords, jnp.float32), dirs)
