"""Tests of the figures: each returns a Figure with the expected axes and lines
and writes a non-empty PNG when given a path."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib.pyplot as plt

from annjax import plot

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def history(epochs: int = 6) -> dict[str, np.ndarray]:
    t = np.arange(epochs, dtype=np.float64)
    return {
        "loss": np.exp(-t),
        "accuracy": 1 - 0.5 * np.exp(-t),
        "val_loss": np.exp(-t / 2) + 0.1 * t,
        "val_accuracy": 0.9 - 0.5 * np.exp(-t),
        "mse": np.exp(-2 * t),
        "grad_norm/dense_10": np.full(epochs, 1.0),
        "grad_norm/dense_2": np.full(epochs, 1e-4),
        "grad_norm/residual_3/dense_0": np.full(epochs, 1e-2),
        "grad_norm_max/dense_2": np.full(epochs, 1e-3),
        "dead_fraction/relu_1": np.zeros(epochs),
    }


def assert_png(path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG


def labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_history_one_panel_per_loss_and_metric(tmp_path):
    path = tmp_path / "new" / "dir" / "curves.png"
    fig = plot.history(history(), path=path)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "mse"]
    loss, accuracy, mse = fig.axes
    assert labels(loss) == ["training", "validation", "best validation (epoch 3)"]
    assert labels(accuracy) == ["training", "validation"]
    assert labels(mse) == ["training"]  # no val_mse in the history
    np.testing.assert_allclose(loss.get_lines()[0].get_ydata(), np.exp(-np.arange(6)))
    assert all(ax.get_yscale() == "linear" for ax in fig.axes)
    assert_png(path)


def test_history_draws_the_eval_mode_training_curve_in_its_panel():
    h = history()
    h["train_eval_loss"] = 2 * h["loss"]
    h["train_eval_accuracy"] = h["accuracy"] - 0.1
    fig = plot.history(h)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "mse"]
    loss, accuracy, _ = fig.axes
    eval_mode = "training data, evaluation mode"
    assert labels(accuracy) == ["training", "validation", eval_mode]
    assert labels(loss)[2] == eval_mode
    np.testing.assert_allclose(loss.get_lines()[2].get_ydata(), h["train_eval_loss"])


def test_history_log_scale_for_losses_and_errors_only():
    fig = plot.history(history(), log=True)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "linear", "log"]


def test_history_accepts_a_fit_result_and_short_runs():
    result = types.SimpleNamespace(history={"loss": np.array([1.0])})
    fig = plot.history(result)
    assert len(fig.axes) == 1 and labels(fig.axes[0]) == ["training"]


def test_history_without_curves_raises():
    with pytest.raises(ValueError, match="loss or metric"):
        plot.history({"grad_norm/dense_0": [1.0]})


def test_gradient_flow_lines_and_heat_map_in_network_order(tmp_path):
    path = tmp_path / "flow.png"
    fig = plot.gradient_flow(history(), path=path)
    lines, heat, colour_bar = fig.axes
    order = ["dense_2", "residual_3/dense_0", "dense_10"]
    assert labels(lines) == order
    assert lines.get_yscale() == "log"
    np.testing.assert_allclose(lines.get_lines()[0].get_ydata(), 1e-4)
    assert [t.get_text() for t in heat.get_yticklabels()] == order
    image = heat.get_images()[0]
    assert image.get_array().shape == (3, 6)
    assert type(image.norm).__name__ == "LogNorm"
    assert "gradient norm" in colour_bar.get_ylabel()
    assert not heat.collections  # nothing non-finite to cross out
    assert_png(path)


def test_gradient_flow_crosses_out_non_finite_norms():
    h = history(3)
    h["grad_norm/dense_2"][2] = np.nan
    h["grad_norm/dense_10"][2] = np.inf
    heat = plot.gradient_flow(h).axes[1]
    (crosses,) = heat.collections
    assert sorted(map(tuple, crosses.get_offsets())) == [(2, 0), (2, 2)]


def test_gradient_flow_names_every_layer_of_a_deep_network_in_a_colour_bar():
    h = {f"grad_norm/dense_{2 * i}": np.ones(2) * (i + 1) for i in range(20)}
    fig = plot.gradient_flow(h)
    lines, _, _, layer_bar = fig.axes
    assert len(lines.get_lines()) == 20 and lines.get_legend() is None
    names = [f"dense_{2 * i}" for i in range(20)]
    assert [t.get_text() for t in layer_bar.get_yticklabels()] == names
    # each line's colour is its layer's band in the bar
    mappable = layer_bar._colorbar.mappable  # the bar's colour of layer i
    bands = [mappable.to_rgba(i) for i in range(20)]
    colours = [line.get_color() for line in lines.get_lines()]
    np.testing.assert_allclose(np.asarray(colours), bands)


def test_gradient_flow_legend_lies_below_the_lines(tmp_path):
    fig = plot.gradient_flow(history())
    fig.savefig(tmp_path / "flow.png")  # lays the figure out
    lines = fig.axes[0]
    legend = lines.get_legend().get_window_extent()
    assert legend.y1 < lines.get_window_extent().y0


def test_history_legends_lie_below_the_curves(tmp_path):
    fig = plot.history(history())
    fig.savefig(tmp_path / "curves.png")
    for ax in fig.axes:
        assert ax.get_legend().get_window_extent().y1 < ax.get_window_extent().y0


@pytest.mark.parametrize("epochs", [3, 7, 40])
def test_epoch_ticks_are_integers(epochs, tmp_path):
    h = history(epochs)
    for fig in (plot.history(h), plot.gradient_flow(h)):
        fig.savefig(tmp_path / "f.png")
        for ax in fig.axes[:2]:
            ticks = [t for t in ax.get_xticks() if 0 <= t <= epochs - 1]
            assert ticks and all(float(t).is_integer() for t in ticks)


def test_figures_name_the_model_in_the_title():
    fig = plot.gradient_flow(history(), title="ResNet + batch norm")
    assert fig.get_suptitle() == "gradient flow: ResNet + batch norm"
    fig = plot.history(history(), title="3 x ReLU")
    assert fig.get_suptitle() == "learning curves: 3 x ReLU"
    assert plot.history(history()).get_suptitle() == "learning curves"


def test_gradient_flow_without_gradients_raises():
    with pytest.raises(ValueError, match="track_gradients=True"):
        plot.gradient_flow({"loss": [1.0, 0.5]})


def test_activations_gallery_with_derivatives(tmp_path):
    path = tmp_path / "activations.png"
    fig = plot.activations(path=path)
    assert len(fig.axes) == 8
    assert all(labels(ax) == ["f(z)", "f′(z)"] for ax in fig.axes)
    curves = {
        ax.get_title(): [ln.get_ydata() for ln in ax.get_lines()] for ax in fig.axes
    }
    f, df = curves["sigmoid σ"]
    assert df.max() == pytest.approx(0.25, abs=1e-4)  # σ' ≤ 1/4
    np.testing.assert_allclose(curves["softmax([z, 0])₀ = σ(z)"][0], f, atol=1e-6)
    assert set(np.unique(curves["ReLU"][1])) <= {0.0, 1.0}
    assert not np.any(curves["Heaviside step"][1])  # no gradient to learn from
    np.testing.assert_allclose(np.unique(curves["leaky ReLU (α = 0.1)"][1]), [0.1, 1])
    assert_png(path)


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install \"annjax\[examples\]\""):
        plot.activations()
