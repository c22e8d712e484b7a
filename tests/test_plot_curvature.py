"""Tests of plot.landscape and plot.spectrum, as tests/test_plot.py: each returns
a Figure with the expected axes and data and writes a non-empty PNG.

(A file of its own so that it merges apart from the other figures' tests.)
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib.pyplot as plt

from annjax import plot
from annjax.analysis import Density, Landscape, Spectrum

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def assert_png(path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG


def _bowl(resolution=9, dims=2, scale=1.0) -> Landscape:
    c = np.linspace(-1, 1, resolution)
    grids = np.meshgrid(*[c] * dims, indexing="ij")
    return Landscape(scale * sum(g**2 for g in grids) + 0.1, {}, c, ())


def test_landscape_1d_draws_one_curve_per_slice(tmp_path):
    path = tmp_path / "line.png"
    fig = plot.landscape(
        {"plain": _bowl(dims=1), "residual": _bowl(dims=1, scale=2)}, path=path
    )
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["plain", "residual"]
    np.testing.assert_allclose(
        ax.get_lines()[1].get_ydata(), _bowl(dims=1, scale=2).loss
    )
    assert_png(path)


def test_landscape_2d_draws_contour_and_surface_per_slice(tmp_path):
    path = tmp_path / "plane.png"
    fig = plot.landscape(
        {"plain": _bowl(), "residual": _bowl(scale=3)}, path=path, log=True
    )
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "plain (contour)",
        "plain (surface)",
        "residual (contour)",
        "residual (surface)",
    ]
    assert sum(ax.name == "3d" for ax in fig.axes) == 2
    assert_png(path)


def test_landscape_of_one_result(tmp_path):
    fig = plot.landscape(_bowl())
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [
        "(contour)",
        "(surface)",
    ]


def test_spectrum_draws_the_density_and_marks_the_top_eigenvalues(tmp_path):
    path = tmp_path / "spectrum.png"
    nodes = np.array([[0.0, 1.0, 10.0]])
    density = Density(nodes, np.array([[0.5, 0.4, 0.1]]))
    result = Spectrum(np.array([10.0]), None, None, None, density)
    fig = plot.spectrum(result, path=path, sigma=0.2)
    (ax,) = fig.axes
    curve, marker = ax.get_lines()
    x, y = curve.get_xdata(), curve.get_ydata()
    assert x.min() < 0 and x.max() > 10
    assert (
        y[np.argmin(abs(x - 0))] > y[np.argmin(abs(x - 10))] > y[np.argmin(abs(x - 5))]
    )
    np.testing.assert_allclose(marker.get_xdata(), [10.0, 10.0])
    assert ax.get_yscale() == "log"
    assert_png(path)


def test_spectrum_without_density_is_refused():
    with pytest.raises(ValueError, match="density=True"):
        plot.spectrum(Spectrum(np.array([1.0]), None, None, None, None))
