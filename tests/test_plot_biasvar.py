"""Tests of the bias–variance figures: Figure 8 (bias², variance, total error,
best complexity marked) and the learning curve (mean ± std bands)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib.pyplot as plt

import annjax as ann
from annjax import plot

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def complexity() -> ann.analysis.ComplexityCurve:
    widths = np.array([1, 4, 16, 64, 256])
    bias = np.array([1.0, 0.5, 0.25, 0.2, 0.19])
    variance = np.array([0.01, 0.05, 0.1, 0.3, 0.6])
    return ann.analysis.ComplexityCurve(
        "width", widths, bias + variance, bias, variance
    )


def test_bias_variance_draws_figure_8(tmp_path):
    curve = complexity()
    path = tmp_path / "fig8" / "bias_variance.png"
    fig = plot.bias_variance(curve, path=path)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == [
        "bias²",
        "variance",
        "total error (expected loss)",
        "best width = 16",
    ]
    np.testing.assert_allclose(lines["bias²"].get_ydata(), curve.bias)
    np.testing.assert_allclose(lines["variance"].get_xdata(), curve.values)
    assert lines["best width = 16"].get_xdata()[0] == 16 == curve.best
    assert ax.get_xscale() == "log"  # widths span two decades
    assert ax.get_xlabel() == "width (model complexity)"
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def test_bias_variance_linear_axis_for_a_narrow_range():
    curve = complexity()._replace(values=np.array([1.0, 2, 3, 4, 5]))
    assert plot.bias_variance(curve).axes[0].get_xscale() == "linear"


def test_bias_variance_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match=r"plot\.bias_variance: expected values"):
        plot.bias_variance(complexity()._replace(bias=np.zeros(3)))


def test_learning_curve_mean_and_band(tmp_path):
    sizes = np.array([10, 20, 40, 80])
    rng = np.random.default_rng(0)
    train = {"loss": 0.1 + 0.01 * rng.random((4, 3)), "mae": rng.random((4, 3))}
    val = {"loss": 1 / np.sqrt(sizes)[:, None] + 0.01 * rng.random((4, 3))}
    curve = ann.analysis.LearningCurve(sizes, train, val)
    path = tmp_path / "lc.png"
    fig = ann.plot.learning_curve(curve, path=path)
    loss, mae = fig.axes
    assert (loss.get_title(), mae.get_title()) == ("loss", "mae")
    assert [line.get_label() for line in loss.get_lines()] == [
        "training",
        "validation",
    ]
    assert [line.get_label() for line in mae.get_lines()] == ["training"]
    np.testing.assert_allclose(loss.get_lines()[1].get_ydata(), val["loss"].mean(1))
    assert len(loss.collections) == 2  # one ± std band per curve
    assert path.read_bytes()[:8] == PNG


def test_learning_curve_rejects_an_empty_curve():
    with pytest.raises(ValueError, match=r"plot\.learning_curve: expected a curve"):
        plot.learning_curve(ann.analysis.LearningCurve(np.array([1]), {}, {}))
