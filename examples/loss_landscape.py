"""Loss landscapes and curvature: why residual connections make deep nets trainable.

The deep plain ReLU MLP of ``gradient_problems.py`` (10 hidden layers of 32,
He initialisation) and its residual twin (the same layers, each hidden block
wrapped in ``x + block(x)``) learn the digits by full-batch gradient descent with
learning rate η. Then:

1. ``ann.analysis.loss_landscape``: the training loss on a 2-D plane through
   each solution along two filter-normalised random directions (Li et al.
   2018), side by side (``ann.plot.landscape``);
2. ``ann.analysis.hessian``: the top Hessian eigenvalues, the trace
   (Hutchinson) and the eigenvalue density (stochastic Lanczos quadrature);
3. ``ann.analysis.top_eigenvalue`` every few steps of the run on the training
   batch: the sharpness λ_max against the stability limit 2/η of gradient
   descent (Cohen et al. 2021, "edge of stability").

Figures go to docs/images/ (``--out``), what it prints to
examples/out/loss_landscape.md (the report the docs include).

Run:
  python examples/loss_landscape.py            # a few minutes
  python examples/loss_landscape.py --quick    # about a minute
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import _common
import gradient_problems
import jax
import numpy as np

import annjax as ann

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
LR = 0.1
HIDDEN = [gradient_problems.WIDTH] * gradient_problems.DEPTH + [10]
# The residual twin adds x + block(x) around each hidden block of the same
# layers. Its weights start with variance 2 / (depth · fan_in) instead of He's
# 2 / fan_in, so the sum of `depth` blocks keeps the activations' scale at
# initialisation (as Fixup and SkipInit do); with He's variance each block
# doubles it, and gradient descent at this η diverges from the first step.
# No batch norm in either: evaluation-mode curvature would then depend on
# how far the running statistics have caught up.
MODELS = {
    "plain": gradient_problems.MODELS["ReLU, He"],
    "residual": ann.mlp(
        HIDDEN,
        activation="relu",
        residual=True,
        w_init=jax.nn.initializers.variance_scaling(
            2 / gradient_problems.DEPTH,
            "fan_in",
            "truncated_normal",
            in_axis=-1,
            out_axis=-2,
        ),
    ),
}


@_common.writes_report("loss_landscape")
def main(argv: list[str] | None = None) -> dict:
    """Trains both MLPs; returns their landscapes, spectra, sharpness and figures."""
    p = _common.parser(__doc__, "loss_landscape.png", data=False)
    p.set_defaults(out=DOCS_IMAGES)
    args = p.parse_args(argv)
    steps, every, resolution, iters = (
        (120, 20, 21, 20) if args.quick else (1000, 100, 41, 50)
    )
    data_key, init_key, dir_key, h_key = jax.random.split(jax.random.key(args.seed), 4)
    splits, note = _common.image_splits(
        "digits", key=data_key, data_dir=None, val=0.2, test=0.2
    )
    train = tuple(jax.numpy.asarray(a) for a in splits.train)
    print(f"data: {note}; full-batch gradient descent, η = {LR}, {steps} steps\n")
    rows, sharp, slices, spectra = [], {}, {}, {}
    for name, model in MODELS.items():
        ts, sharp[name] = _train(model, train, init_key, steps, every, iters)
        params, state = ts.params, ts.state
        slices[name] = ann.analysis.loss_landscape(
            model,
            params,
            state,
            splits.train,
            resolution=resolution,
            key=dir_key,
        )
        spectra[name] = ann.analysis.hessian(
            model,
            params,
            state,
            splits.train,
            top_k=3,
            trace=True,
            density=True,
            iterations=iters,
            key=h_key,
        )
        rows.append(_row(name, model, ts, splits, slices[name], spectra[name]))
    figures = _figures(args.out, slices, spectra, sharp, every)
    table = _report(rows, sharp, every)
    return {
        "results": {r["model"]: r for r in rows},
        "sharpness": sharp,
        "figure": figures[0],
        "figures": figures,
        "table": table,
    }


def _train(model, train, key, steps: int, every: int, iters: int):
    """Full-batch gradient descent; returns the final train state and λ_max
    on the training batch every ``every`` steps (and at the end)."""
    step = jax.jit(ann.training.make_train_step(model, optimizer=ann.sgd(LR)))
    ts, _ = ann.training.init_train_state(model, ann.sgd(LR), key, train[0].shape[1:])
    sharpness = []
    for i in range(steps + 1):
        if i % every == 0 or i == steps:
            lam = ann.analysis.top_eigenvalue(
                model,
                ts.params,
                ts.state,
                train,
                "softmax_cross_entropy",
                iterations=iters,
                key=jax.random.key(i),
            )
            sharpness.append(float(lam))
        if i < steps:
            ts, _ = step(ts, train, jax.random.key(i))
    return ts, np.asarray(sharpness)


def _row(name, model, ts, splits, ls, spectrum) -> dict:
    """Returns the table's row for one trained model."""
    metrics = ("accuracy",)
    tr = ann.evaluate(model, ts.params, ts.state, splits.train, metrics=metrics)
    va = ann.evaluate(model, ts.params, ts.state, splits.val, metrics=metrics)
    loss = np.asarray(ls.loss)
    centre = loss[tuple(s // 2 for s in loss.shape)]
    eig = np.asarray(spectrum.eigenvalues)
    return {
        "model": name,
        "params": _common.num_params(ts.params),
        "train loss": tr["loss"],
        "val acc": va["accuracy"],
        "λ1": eig[0],
        "λ2": eig[1],
        "λ3": eig[2],
        "trace": float(spectrum.trace),
        "λ1·η/2": eig[0] * LR / 2,
        "plane: max loss": float(loss.max()),
        "plane: basin %": 100 * float((loss < 2 * centre + 0.1).mean()),
    }


def _figures(out, slices, spectra, sharp, every) -> list[str]:
    """Writes the landscapes (the script's figure), spectra and sharpness."""
    import matplotlib.pyplot as plt

    path = _common.figure_path(out, "loss_landscape.png")
    ann.plot.landscape(slices, path=path, log=True)
    paths = [path]
    for name, spectrum in spectra.items():
        paths.append(path.with_name(f"loss_landscape_spectrum_{name}.png"))
        ann.plot.spectrum(spectrum, path=paths[-1])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, values in sharp.items():
        steps = np.minimum(np.arange(len(values)) * every, (len(values) - 1) * every)
        ax.plot(steps, values, marker=".", label=f"{name}: λ_max")
    ax.axhline(2 / LR, color="red", ls="--", label="2/η")
    ax.set(xlabel="gradient-descent step", ylabel="sharpness λ_max", yscale="log")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(path.with_name("loss_landscape_sharpness.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close("all")
    print("figures:", ", ".join(str(p) for p in paths))
    return [str(p) for p in paths]


def _report(rows, sharp, every) -> str:
    """Prints the tables (the report includes them) and returns them as text."""
    formats = {
        "model": "",
        "params": "d",
        "train loss": ".3f",
        "val acc": ".3f",
        "λ1": ".3g",
        "λ2": ".3g",
        "λ3": ".3g",
        "trace": ".3g",
        "λ1·η/2": ".2f",
        "plane: max loss": ".3g",
        "plane: basin %": ".0f",
    }
    summary = []
    for name, values in sharp.items():
        steps = np.minimum(np.arange(len(values)) * every, (len(values) - 1) * every)
        peak = int(np.argmax(values))
        summary.append(
            {
                "model": name,
                "λ_max at start": values[0],
                "peak λ_max": values[peak],
                "at step": int(steps[peak]),
                "λ_max at end": values[-1],
                "checks above 2/η": f"{int((values > 2 / LR).sum())}/{len(values)}",
            }
        )
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        _common.print_table(rows, formats)
        print(
            '\n("plane: basin %" is the share of the plane whose loss is below '
            "twice the centre's plus 0.1.)\n"
        )
        print(
            f"sharpness λ_max on the training batch every {every} steps, "
            f"against the stability limit 2/η = {2 / LR:.3g}:"
        )
        _common.print_table(
            summary,
            {
                "model": "",
                "λ_max at start": ".3g",
                "peak λ_max": ".3g",
                "at step": "d",
                "λ_max at end": ".3g",
                "checks above 2/η": "",
            },
        )
        for name, values in sharp.items():
            print(
                f"{name}, λ_max every {every} steps: "
                + " ".join(f"{v:.3g}" for v in values)
            )
    table = buffer.getvalue()
    print(table, end="")
    return table


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
