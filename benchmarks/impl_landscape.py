"""The ``landscape`` workload: a 2-D loss slice and the top Hessian eigenvalue.

Both implementations get the same problem from :func:`problem`: an MLP's
weights (He-initialised, ``W`` stored (out, in) as both annjax and
``torch.nn.Linear`` do), two filter-normalised directions (Li et al. 2018;
biases 0) and the data, all made with NumPy from one seed. Each factory
returns ``{"slice": f, "top_eigenvalue": g}``:

* ``slice()`` returns the (resolution, resolution) grid of the mean softmax
  cross-entropy at ``θ + a_i δ + b_j η``, ``a, b`` from ``-span`` to ``span``;
* ``top_eigenvalue()`` returns λ_max of the loss's Hessian on all the data by
  ``iterations`` steps of power iteration (PyHessian's method).

``annjax``: ``ann.analysis.loss_landscape`` (one compiled program for the
grid) and ``ann.analysis.hessian(method="power")``. ``torch``: the
``loss-landscapes`` package's ``planar_interpolation`` (it evaluates the grid
point by point from Python) and PyHessian's ``hessian(...).eigenvalues``
with ``tol=0`` (so it runs every iteration).

``loss-landscapes`` steps before its first evaluation in every even column,
so its column ``i`` holds the points ``j + 1`` when ``i`` is even, ``j`` when
odd; :func:`torch_grid_as_annjax` maps its grid onto annjax's.
"""

from __future__ import annotations

import itertools
import os

import numpy as np


def problem(config: dict) -> dict:
    """Returns the weights, directions and data both implementations use."""
    from worker import make_data

    x, y, source = make_data(config)
    rng = np.random.default_rng(1)
    sizes = config["sizes"]
    layers, dirs = [], ([], [])
    for n_in, n_out in itertools.pairwise(sizes):
        w = rng.normal(0, np.sqrt(2 / n_in), (n_out, n_in)).astype(np.float32)
        b = rng.normal(0, 0.1, n_out).astype(np.float32)
        layers.append((w, b))
        for d in dirs:
            r = rng.normal(size=w.shape).astype(np.float32)
            r *= np.linalg.norm(w, axis=1, keepdims=True) / np.linalg.norm(
                r, axis=1, keepdims=True
            )
            d.append((r, np.zeros_like(b)))
    return {"x": x, "y": y, "source": source, "layers": layers, "dirs": dirs}


def _coords(config: dict) -> np.ndarray:
    return np.linspace(-config["span"], config["span"], config["resolution"])


def make_annjax(config: dict, prob: dict) -> dict:
    """Returns the annjax runners (see the module's docstring)."""
    import jax

    import annjax as ann

    model = ann.mlp(list(config["sizes"][1:]), activation="relu")
    _, params, state = model.init(jax.random.key(0), (config["sizes"][0],))
    names = sorted((k for k in params if k.startswith("dense_")), key=_index)

    def tree(layers):
        return {
            **params,
            **{n: {"w": w, "b": b} for n, (w, b) in zip(names, layers, strict=True)},
        }

    theta = tree(prob["layers"])
    plane = ann.analysis.Landscape(None, {}, None, tuple(map(tree, prob["dirs"])))
    data = (prob["x"], prob["y"])

    def slice_() -> np.ndarray:
        ls = ann.analysis.loss_landscape(
            model,
            theta,
            state,
            data,
            directions=plane,
            span=config["span"],
            resolution=config["resolution"],
            chunk=config["chunk"],
        )
        return np.asarray(ls.loss)

    def top() -> float:
        s = ann.analysis.hessian(
            model,
            theta,
            state,
            data,
            method="power",
            iterations=config["iterations"],
            key=jax.random.key(0),
        )
        return float(s.eigenvalues[0])

    return {"slice": slice_, "top_eigenvalue": top}


def _index(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def make_torch(config: dict, prob: dict) -> dict:
    """Returns the PyTorch runners: loss-landscapes and PyHessian."""
    import loss_landscapes
    import loss_landscapes.metrics
    import torch
    from pyhessian import hessian

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    x, y = torch.from_numpy(prob["x"]), torch.from_numpy(prob["y"]).long()
    criterion = torch.nn.CrossEntropyLoss()

    def mlp(layers, scale=None):
        mods = []
        for i, (w, b) in enumerate(layers):
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
                lin.bias.copy_(torch.from_numpy(b))
            mods += [lin] if i == len(layers) - 1 else [lin, torch.nn.ReLU()]
        return torch.nn.Sequential(*mods)

    def moved(*terms):
        return [
            tuple(sum(c * p[i][k] for c, p in terms) for k in (0, 1))
            for i in range(len(prob["layers"]))
        ]

    res, c = config["resolution"], _coords(config)
    h = c[1] - c[0]
    theta, (d1, d2) = prob["layers"], prob["dirs"]
    start = moved((1.0, theta), (c[0], d1), (c[0], d2))
    ends = [moved((1.0, start), (res * h, d)) for d in (d1, d2)]
    metric = loss_landscapes.metrics.Loss(criterion, x, y)

    def slice_() -> np.ndarray:
        grid = loss_landscapes.planar_interpolation(
            mlp(start),
            mlp(ends[0]),
            mlp(ends[1]),
            metric,
            steps=res,
            deepcopy_model=True,
        )
        return np.asarray(grid, np.float64)

    def top() -> float:
        torch.manual_seed(0)
        model = mlp(theta)
        h = hessian(model, criterion, data=(x, y), cuda=False)
        return float(h.eigenvalues(maxIter=config["iterations"], tol=0.0)[0][0])

    return {"slice": slice_, "top_eigenvalue": top}


def torch_grid_as_annjax(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(annjax indices mask, values)``: loss-landscapes' grid placed
    at annjax's (i, j), NaN where it has no point (the even columns' j = 0)."""
    out = np.full(grid.shape, np.nan)
    out[1::2] = grid[1::2]
    out[0::2, 1:] = grid[0::2, :-1]
    return ~np.isnan(out), out
