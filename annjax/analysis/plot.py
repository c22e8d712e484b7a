"""Figures of the lecture: learning curves, gradient flow, activation functions.

matplotlib is an optional dependency (``pip install "annjax[examples]"``),
imported only when a function here is called; on a machine without a display
the non-interactive Agg backend is chosen. Every function returns the
``matplotlib.figure.Figure`` and, given ``path=``, also writes it as an image
(PNG for a ``.png`` path), creating the parent directories.

Examples:
  Usually of ``ann.fit(..., track_gradients=True).history``, with ``path=`` to
  write the image; here a history written by hand:

  >>> import numpy as np
  >>> import annjax as ann
  >>> history = {
  ...     "loss": np.array([1.0, 0.6, 0.4]),
  ...     "val_loss": np.array([1.1, 0.8, 0.7]),
  ...     "grad_norm/dense_0": np.array([1e-3, 2e-3, 2e-3]),
  ...     "grad_norm/dense_2": np.array([0.5, 0.4, 0.4]),
  ... }
  >>> fig = ann.plot.history(history, title="MLP 64-10")
  >>> fig.get_suptitle(), [ax.get_title() for ax in fig.axes]
  ('learning curves: MLP 64-10', ['loss'])
  >>> fig = ann.plot.gradient_flow(history, title="MLP 64-10")
  >>> [t.get_text() for t in fig.axes[1].get_yticklabels()]
  ['dense_0', 'dense_2']
  >>> len(ann.plot.activations().axes)
  8
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from annjax import activations as _activations
from annjax import metrics as _metrics
from annjax.analysis.findings import per_layer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "activations",
    "bias_variance",
    "gradient_flow",
    "history",
    "landscape",
    "learning_curve",
    "spectrum",
]

_Target = str | os.PathLike | None  # where to write a figure


def _pyplot():
    """Returns ``matplotlib.pyplot``, with the Agg backend when there is no display."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "annjax.plot needs matplotlib, which is not installed. Install it "
            'with: pip install "annjax[examples]"'
        ) from error
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if (
        headless
        and "MPLBACKEND" not in os.environ
        and "matplotlib.pyplot" not in sys.modules
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig: Figure, path: _Target) -> Figure:
    """Returns ``fig`` after writing it to ``path`` (parents created), if given."""
    if path is not None:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _grid(plt, n: int, width: float = 4.2, height: float = 3.2, ncols: int = 3):
    """Returns a figure and its first ``n`` axes, ``ncols`` to a row."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False
    )
    axes = list(axes.ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _curves(history: Mapping[str, Any]) -> list[str]:
    """Returns the loss and metric names of a history: ``loss`` first, no ``val_``
    and no ``train_eval_`` (drawn in their name's panel)."""
    names = []
    for name in history:
        base = name.removeprefix("val_").removeprefix("train_eval_")
        if "/" not in name and base not in names:
            names.append(base)
    return sorted(names, key=lambda name: name != "loss")


def _lower_is_better(name: str) -> bool:
    try:
        return name == "loss" or _metrics.mode(name) == "min"
    except ValueError:  # a metric annjax does not know
        return True


def _epoch_axis(ax, epochs: int) -> None:
    from matplotlib.ticker import MaxNLocator

    if epochs <= 12:
        ax.set_xticks(range(epochs))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def history(
    history: Mapping[str, Any],
    log: bool = False,
    path: _Target = None,
    *,
    title: str | None = None,
) -> Figure:
    """Returns the learning curves: training against validation, one panel each.

    One panel for the loss and one per metric, each with the training curve
    and, where the history has it, the validation curve (``val_<name>``)
    over epochs (and, for models with state, ``train_eval_<name>``: the
    training data in evaluation mode, dotted); the loss panel also marks the
    epoch of the lowest validation loss (the model early stopping would keep). Profiler
    measurements are left out (see :func:`gradient_flow`).

    Args:
      history: ``FitResult.history`` (or the FitResult).
      log: a logarithmic y axis for the loss and the error metrics (those
        where lower is better, such as ``mse``), which span decades;
        accuracy-like metrics in [0, 1] keep a linear axis.
      path: where to write the figure (e.g. ``"out/curves.png"``), or None.
      title: the model (or run) the curves are of, put in the figure's title
        ("learning curves: <title>").

    Returns:
      The ``matplotlib.figure.Figure``, one axes per loss/metric; each
      panel's legend lies below its axes, never over the curves.

    Raises:
      ValueError: if the history holds no loss or metric.
    """
    history = getattr(history, "history", history)
    names = _curves(history)
    if not names:
        raise ValueError(
            "plot.history: expected a history with a loss or metric (FitResult."
            f"history), got the keys {sorted(history)}."
        )
    plt = _pyplot()
    fig, axes = _grid(plt, len(names), height=3.8)
    for ax, name in zip(axes, names, strict=True):
        for key, label, style in (
            (name, "training", "-"),
            (f"val_{name}", "validation", "--"),
            (f"train_eval_{name}", "training data, evaluation mode", ":"),
        ):
            if key in history:
                values = np.asarray(history[key], np.float64)
                ax.plot(np.arange(len(values)), values, style, marker=".", label=label)
        val = np.asarray(history.get(f"val_{name}", []), np.float64)
        if name == "loss" and np.isfinite(val).any():
            best = int(np.nanargmin(np.where(np.isfinite(val), val, np.nan)))
            ax.axvline(
                best, color="grey", ls=":", label=f"best validation (epoch {best})"
            )
        ax.set(title=name, ylabel=name)
        _epoch_axis(
            ax, max(len(history[k]) for k in (name, f"val_{name}") if k in history)
        )
        if log and _lower_is_better(name):
            ax.set_yscale("log")
        # Below the axes, so that it hides no curve.
        ax.legend(
            fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2
        )
    fig.suptitle(f"learning curves: {title}" if title else "learning curves")
    fig.tight_layout()
    return _finish(fig, path)


def gradient_flow(
    history: Mapping[str, Any], path: _Target = None, *, title: str | None = None
) -> Figure:
    """Returns the per-layer gradient norms over epochs, as lines and as a heat map.

    Left, one line per layer (log y axis, colour from the first layer, dark,
    to the last, light): vanishing gradients show as the first layers' lines
    far below the last ones', exploding as lines climbing over epochs.
    Up to 12 layers a legend below the axes names every line; past that, a
    colour bar of the layers (one colour per layer, each named) does.
    Right, the same numbers as a heat map, layers (in network order, the
    first at the top) × epochs, on a logarithmic colour scale; zero norms
    are left blank, non-finite ones crossed out in red. Layers that
    ``fit(trainable=...)`` froze are labelled "(frozen)".

    Args:
      history: a history with ``grad_norm/<layer>`` entries, from
        ``fit(..., track_gradients=True)`` (or the FitResult).
      path: where to write the figure, or None.
      title: the model the history is of, put in the figure's title
        ("gradient flow: <title>").

    Returns:
      The ``matplotlib.figure.Figure``: the line axes, the heat-map axes and
      its colour bar, then (past 12 layers) the colour bar of the lines.

    Raises:
      ValueError: if the history has no gradient norms.
    """
    history = getattr(history, "history", history)
    grads = per_layer(history, "grad_norm")
    if not grads:
        raise ValueError(
            "plot.gradient_flow: the history has no grad_norm/<layer> entries; "
            "fit with track_gradients=True."
        )
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    frozen = set(per_layer(history, "frozen"))  # fit(trainable=...)'s marks
    layers = [f"{k} (frozen)" if k in frozen else k for k in grads]
    epochs = max(len(v) for v in grads.values())
    table = np.full((len(layers), epochs), np.nan)
    for i, values in enumerate(grads.values()):
        table[i, : len(values)] = values
    broken = np.isnan(table) | np.isinf(table)
    broken[np.arange(epochs) >= np.array([[len(v)] for v in grads.values()])] = False
    table[broken | ~(table > 0)] = np.nan
    height = max(3.5, 0.25 * len(layers) + 1.5)
    fig, (lines, heat) = plt.subplots(1, 2, figsize=(13, height))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(layers)))
    for i, (layer, row) in enumerate(zip(layers, table, strict=True)):
        lines.plot(np.arange(epochs), row, marker=".", color=colours[i], label=layer)
    lines.set(yscale="log", ylabel="‖∂L/∂θ‖ (mean over steps)")
    lines.set_title("gradient norm per layer (dark: first, light: last)")
    _epoch_axis(lines, epochs)
    lines.grid(alpha=0.3, which="both")
    if len(layers) <= 12:  # below the axes, so that it hides no line
        lines.legend(
            fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=6
        )
    finite = table[np.isfinite(table)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.1, 10.0)
    norm = LogNorm(low, high) if low < high else LogNorm(low / 10, high * 10)
    image = heat.imshow(
        np.ma.masked_invalid(table),
        aspect="auto",
        norm=norm,
        cmap="magma",
        interpolation="nearest",
    )
    heat.set(yticks=range(len(layers)), yticklabels=layers)
    heat.set_title("gradient norm (layers in network order)")
    _epoch_axis(heat, epochs)
    heat.grid(False)
    rows, cols = np.nonzero(broken)
    if rows.size:  # NaN/inf norms, as fit records them in the epoch that broke
        heat.scatter(cols, rows, marker="x", color="red", label="non-finite")
        heat.legend(fontsize="x-small", loc="upper right")
    heat.tick_params(axis="y", labelsize="small")
    fig.colorbar(image, ax=heat, label="gradient norm (log scale)")
    if len(layers) > 12:  # a legend of every line would hide them: a colour bar
        _layer_colour_bar(fig, lines, colours, layers)
    fig.suptitle(f"gradient flow: {title}" if title else "gradient flow")
    fig.tight_layout()
    return _finish(fig, path)


def _layer_colour_bar(fig, ax, colours, layers: list[str]) -> None:
    """A colour bar beside ``ax`` with one band per layer, each named."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap

    bands = ScalarMappable(
        norm=BoundaryNorm(np.arange(len(layers) + 1) - 0.5, len(layers)),
        cmap=ListedColormap(colours),
    )
    bar = fig.colorbar(bands, ax=ax, ticks=range(len(layers)), label="layer")
    bar.ax.set_yticklabels(layers, fontsize="x-small")
    bar.ax.invert_yaxis()  # the first layer at the top, as in the heat map


#: The lecture's activation functions, as (title, function of a scalar z).
_GALLERY = (
    ("Heaviside step", _activations.heaviside),
    ("sign (bipolar step)", _activations.sign),
    ("identity", _activations.identity),
    ("sigmoid σ", _activations.sigmoid),
    ("tanh", _activations.tanh),
    ("ReLU", _activations.relu),
    ("leaky ReLU (α = 0.1)", functools.partial(_activations.leaky_relu, alpha=0.1)),
    ("softmax([z, 0])₀ = σ(z)", lambda z: _activations.softmax(jnp.stack([z, 0.0]))[0]),
)


@jax.jit
def _curves_of(z: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    """Returns (f(z), f'(z)) for each function of the gallery, in one compilation."""
    return [(jax.vmap(f)(z), jax.vmap(jax.grad(f))(z)) for _, f in _GALLERY]


def activations(path: _Target = None) -> Figure:
    """Returns the lecture's activation functions with their derivatives.

    One panel per function f (Heaviside, sign, identity, sigmoid, tanh, ReLU,
    leaky ReLU, and softmax of (z, 0), the two-class softmax, which is the
    sigmoid), each with f (solid) and f' (dashed) on z ∈ [−4, 4]. The
    derivatives are ``jax.vmap(jax.grad(f))``, so the panels show what
    backpropagation sees: 0 almost everywhere for the steps (no gradient to
    learn from), σ' ≤ 1/4 (vanishing through deep sigmoid stacks), tanh' ≤ 1,
    ReLU' = 1 for z > 0 (and 0 below: dead units), α below for leaky ReLU.

    Args:
      path: where to write the figure, or None.

    Returns:
      The ``matplotlib.figure.Figure``, eight axes with two lines each.
    """
    plt = _pyplot()
    z = jnp.linspace(-4.0, 4.0, 401)
    fig, axes = _grid(plt, len(_GALLERY), width=3.4, height=2.8, ncols=4)
    for ax, (title, _), (f, df) in zip(axes, _GALLERY, _curves_of(z), strict=True):
        ax.plot(z, f, "-", lw=2, label="f(z)")
        ax.plot(z, df, "--", lw=1.5, label="f′(z)")
        ax.set(title=title, xlabel="z")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    fig.suptitle("activation functions f (solid) and their derivatives f′ (dashed)")
    fig.tight_layout()
    return _finish(fig, path)


def landscape(results: Any, path: _Target = None, log: bool = False) -> Figure:
    """Returns loss-landscape slices: 1-D as curves, 2-D as contour and surface.

    Args:
      results: one ``ann.analysis.Landscape`` or a mapping ``name ->
        Landscape`` (drawn side by side, e.g. a plain network and its residual
        twin). 1-D slices share one axes; each 2-D slice gets a filled contour
        of the loss (left) and a 3-D surface (right), its row titled by name.
      path: where to write the figure, or None.
      log: draw log10 of the loss (deep nets' slices span decades).

    Returns:
      The ``matplotlib.figure.Figure``.
    """
    named = dict(results) if isinstance(results, Mapping) else {"": results}
    plt = _pyplot()

    def values(r):
        z = np.asarray(r.loss, np.float64)
        return np.log10(np.maximum(z, 1e-12)) if log else z

    label = "log10 loss" if log else "loss"
    if all(np.ndim(r.loss) == 1 for r in named.values()):
        fig, (ax,) = _grid(plt, 1, width=5.5, height=3.8)
        for name, r in named.items():
            ax.plot(np.asarray(r.coords), values(r), marker=".", label=name or None)
        ax.set(xlabel="α (along the direction)", ylabel=label)
        ax.grid(alpha=0.3)
        if len(named) > 1 or "" not in named:
            ax.legend(fontsize="small")
    else:
        fig = plt.figure(figsize=(9.5, 4.0 * len(named)))
        for row, (name, r) in enumerate(named.items()):
            c, z = np.asarray(r.coords), values(r)
            a, b = np.meshgrid(c, c, indexing="ij")
            ax = fig.add_subplot(len(named), 2, 2 * row + 1)
            filled = ax.contourf(a, b, z, levels=30, cmap="viridis")
            ax.contour(a, b, z, 15, colors="white", linewidths=0.4, linestyles="solid")
            fig.colorbar(filled, ax=ax, label=label)
            ax.plot([0], [0], "r+", ms=10)
            ax.set(title=f"{name} (contour)".strip(), xlabel="α", ylabel="β")
            ax3 = fig.add_subplot(len(named), 2, 2 * row + 2, projection="3d")
            ax3.plot_surface(a, b, z, cmap="viridis", linewidth=0)
            ax3.set(title=f"{name} (surface)".strip(), xlabel="α", ylabel="β")
            ax3.set_zlabel(label)
    fig.tight_layout()
    return _finish(fig, path)


def spectrum(result: Any, path: _Target = None, sigma: float | None = None) -> Figure:
    """Returns the Hessian's eigenvalue density (stochastic Lanczos quadrature).

    The density of ``ann.analysis.hessian(..., density=True)`` (or its
    ``Density``) smoothed by a Gaussian of width ``sigma`` (default: 1 % of
    the range), on a log y axis as Ghorbani et al. (2019) draw it: the bulk
    near 0 and the few outliers both show. A Spectrum's top eigenvalues are
    marked by dashed lines.

    Returns:
      The ``matplotlib.figure.Figure``, one axes.
    """
    density = getattr(result, "density", result)
    if not hasattr(density, "smooth"):
        raise ValueError(
            "plot.spectrum: expected hessian(..., density=True) or its Density, "
            f"got {type(result).__name__} without a density."
        )
    nodes = np.asarray(density.nodes)
    pad = 0.05 * max(float(np.ptp(nodes)), 1e-12)
    grid = np.linspace(nodes.min() - pad, nodes.max() + pad, 1000)
    plt = _pyplot()
    fig, (ax,) = _grid(plt, 1, width=5.5, height=3.8)
    ax.semilogy(grid, np.maximum(density.smooth(grid, sigma), 1e-12), lw=1.5)
    for value in np.atleast_1d(np.asarray(getattr(result, "eigenvalues", []))):
        ax.axvline(float(value), color="red", ls="--", lw=0.8)
    ax.set(xlabel="eigenvalue λ", ylabel="density", title="Hessian spectrum")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def _log_axis(ax, values: np.ndarray, base: int = 10) -> None:
    """Sets a log x axis when positive ``values`` span over a decade (widths, λ)."""
    values = np.asarray(values, np.float64)
    if np.all(values > 0) and values.max() / values.min() > 10:
        ax.set_xscale("log", base=base)


def bias_variance(curve: Any, path: _Target = None) -> Figure:
    """Returns the lecture's Figure 8, measured: bias², variance and total error.

    Draws ``curve``, a :class:`annjax.analysis.ComplexityCurve` (``name``,
    ``values``, ``bias``, ``variance``, ``expected_loss``, each (v,)): bias
    falling, variance rising, the expected loss (for MSE their sum) against
    the complexity parameter, its lowest value marked, written to ``path``
    if given; a log x axis when the values span over a decade.

    Returns:
      The ``matplotlib.figure.Figure``: one axes, three curves and the mark;
      ValueError if the curve's arrays do not have one value per point.
    """
    values, total = np.asarray(curve.values), "total error (expected loss)"
    terms = dict(
        zip(
            ("bias²", "variance", total),
            (curve.bias, curve.variance, curve.expected_loss),
            strict=True,
        )
    )
    terms = {k: np.asarray(v, np.float64) for k, v in terms.items()}
    if values.ndim != 1 or any(t.shape != values.shape for t in terms.values()):
        shapes = [np.shape(v) for v in (values, *terms.values())]
        raise ValueError(
            "plot.bias_variance: expected values, bias, variance and "
            f"expected_loss of one shape (v,), got {shapes}."
        )
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.2))
    for (label, term), style in zip(terms.items(), ("--", ":", "-"), strict=True):
        ax.plot(values, term, style, marker="o", ms=4, lw=2, label=label)
    best = values[int(np.nanargmin(terms[total]))]
    ax.axvline(best, color="grey", ls="-.", label=f"best {curve.name} = {best}")
    _log_axis(ax, values, 2 if np.issubdtype(values.dtype, np.integer) else 10)
    ax.set(xlabel=f"{curve.name} (model complexity)", ylabel="test error")
    ax.set_title("bias–variance trade-off, measured")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _finish(fig, path)


def learning_curve(curve: Any, path: _Target = None) -> Figure:
    """Returns training and validation scores against the training-set size.

    Draws ``curve``, a :class:`annjax.analysis.LearningCurve` (``sizes``;
    ``train``, ``val``: name → (sizes, rounds)), one panel per loss/metric,
    written to ``path`` if given: the mean over rounds as a line, ± one
    standard deviation as a band, training solid, validation dashed. A gap
    that closes with more data is variance; curves that meet high are bias.

    Returns:
      The ``matplotlib.figure.Figure``, one axes per loss/metric; ValueError
      if the curve holds no values.
    """
    sizes = np.asarray(curve.sizes)
    names = sorted(curve.train, key=lambda name: name != "loss")
    if not names:
        raise ValueError("plot.learning_curve: expected a curve with values, got none.")
    fig, axes = _grid(_pyplot(), len(names))
    for ax, name in zip(axes, names, strict=True):
        for part, label, style in (
            (curve.train, "training", "-"),
            (curve.val, "validation", "--"),
        ):
            if name in part:
                values = np.asarray(part[name], np.float64).reshape(len(sizes), -1)
                mean, std = values.mean(axis=1), values.std(axis=1)
                (line,) = ax.plot(sizes, mean, style, marker="o", ms=4, label=label)
                ax.fill_between(
                    sizes, mean - std, mean + std, alpha=0.2, color=line.get_color()
                )
        _log_axis(ax, sizes)
        ax.set(title=name, xlabel="training examples", ylabel=name)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    fig.suptitle("learning curve (mean ± std over rounds)")
    fig.tight_layout()
    return _finish(fig, path)
