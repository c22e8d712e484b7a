"""The lecture's Figure 8, measured: bias², variance and test error against width.

Lecture: "bias–variance trade-off". On California housing, MLPs with one
hidden layer of 1 to 512 ReLU units are each trained on 20 bootstrap samples
of the same small training set (the replicas of ONE ``fit_many`` per width,
the bootstrap counts as example weights). Their predictions on the test set
split the expected test MSE into

  E_r (ŷ_r − y)² = (ȳ − y)² + E_r (ŷ_r − ȳ)²     (ȳ = mean_r ŷ_r)
  expected loss  =  bias²   +   variance

(Geman et al. 1992; the definitions of mlxtend's ``bias_variance_decomp``).
The script prints the table per width (its report,
examples/out/bias_variance.md, is what the docs include) and draws into
docs/images/ (``--out``) the figure: bias falling, variance rising, the total
error and its best width. At the best width it then draws the learning curve
(training and validation MSE against the training set size: more data, less
variance) and prints what the ensemble of the 20 replicas gains over one of
them (the ensemble's MSE is the bias² term: averaging removes the variance).

Without the data file (``california_housing.csv`` in ``--data-dir`` or
``$ANNJAX_DATA_DIR``) it falls back to scikit-learn's diabetes set.

Run:
  ANNJAX_DATA_DIR=shared/datasets python examples/bias_variance.py
  python examples/bias_variance.py --quick
"""

from __future__ import annotations

import time
from pathlib import Path

import _common
import jax
from california_housing import load

import annjax as ann

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def splits(args) -> tuple[ann.data.Splits, str, int]:
    """Returns standardised splits whose training part keeps only its first n
    examples (a small training set shows the variance), the data's line, n."""
    data, note = load(args.data_dir)
    key = jax.random.key(args.seed)
    s = _common.prepare(data.X, data.y, key=key, val=0.2, test=0.2)
    n = min(200 if args.quick else 1000, len(s.train[1]))
    return ann.data.Splits((s.train[0][:n], s.train[1][:n]), s.val, s.test), note, n


def settings(quick: bool) -> dict:
    """Returns the fit_many arguments every replica shares."""
    return dict(
        loss="mse",
        optimizer=ann.adam(3e-3),
        epochs=2 if quick else 100,
        batch_size=64,
    )


def width_model(width: int) -> ann.Layer:
    """Returns the MLP with one hidden layer of ``width`` ReLU units."""
    return ann.mlp([width, 1])


def print_curve(curve: ann.analysis.ComplexityCurve) -> None:
    """Prints one line per width, then the table of the narrowest, the best and
    the widest network.

    The per-width lines have no rule under their header: their rows depend on
    ``--quick``, while the table's rows are the same in every run (the shape
    that tests/test_examples.py compares with the committed report).
    """
    columns = {"bias²": curve.bias, "variance": curve.variance}
    columns["expected test MSE"] = curve.expected_loss
    values = list(curve.values)
    print("width  " + "  ".join(columns))
    for i, v in enumerate(values):
        cells = [format(c[i], ".4f").rjust(len(n)) for n, c in columns.items()]
        print(str(v).rjust(5) + "  " + "  ".join(cells))
    print()
    picks = {"narrowest": 0, "best": values.index(curve.best), "widest": -1}
    rows = [
        {"network": name, "width": values[i]} | {n: c[i] for n, c in columns.items()}
        for name, i in picks.items()
    ]
    formats = {"network": "", "width": "d"} | {n: ".4f" for n in columns}
    _common.print_table(rows, formats)


@_common.writes_report("bias_variance")
def main(argv: list[str] | None = None) -> dict:
    """Measures the curve, the learning curve and the ensemble; returns them."""
    p = _common.parser(__doc__, "bias_variance.png")
    p.set_defaults(out=DOCS_IMAGES)
    args = p.parse_args(argv)
    s, note, n = splits(args)
    print(f"data: {note}; {n} training examples, {len(s.test[1])} test")
    widths = [1, 8] if args.quick else [2**i for i in range(10)]
    rounds = 2 if args.quick else 20
    fit_kwargs = settings(args.quick)
    key = jax.random.key(args.seed)
    start = time.perf_counter()
    curve = ann.analysis.complexity_curve(
        width_model,
        widths,
        s.train,
        s.test,
        rounds=rounds,
        key=key,
        name="width",
        **fit_kwargs,
    )
    seconds = time.perf_counter() - start
    figure = _common.figure_path(args.out, "bias_variance.png")
    ann.plot.bias_variance(curve, path=figure)
    best = curve.best
    at_best = curve.results[list(curve.values).index(best)]
    ensemble = ann.metrics.mse(s.test[1], at_best.models.ensemble(s.test[0])[:, 0])
    single = float(at_best.expected_loss)
    lc = ann.analysis.learning_curve(
        width_model(best),
        s.train,
        val_data=s.val,
        sizes=(0.5, 1.0) if args.quick else (0.1, 0.325, 0.55, 0.775, 1.0),
        rounds=2 if args.quick else 5,
        key=key,
        **fit_kwargs,
    )
    lc_figure = figure.with_name("bias_variance_learning_curve.png")
    ann.plot.learning_curve(lc, path=lc_figure)
    extra = [
        f"{len(widths)} widths x {rounds} bootstrap rounds in {seconds:.1f} s "
        f"({len(widths)} fit_many calls, one per width)",
        f"best width {best}: one replica's expected test MSE {single:.4f}, "
        f"the ensemble of its {rounds} replicas {float(ensemble):.4f} "
        f"(gain {single - float(ensemble):.4f} = the variance term "
        f"{float(at_best.variance):.4f})",
        "learning curve at the best width (validation MSE, mean over rounds): "
        + ", ".join(
            f"{m}: {v:.4f}"
            for m, v in zip(lc.sizes, lc.val["loss"].mean(1), strict=True)
        ),
    ]
    print_curve(curve)
    print("\n" + "\n".join(extra))
    print(f"figure: {figure}\nlearning curve: {lc_figure}")
    return {
        "data": note,
        "curve": curve,
        "best": best,
        "ensemble_mse": float(ensemble),
        "single_mse": single,
        "learning_curve": lc,
        "seconds": seconds,
        "figure": str(figure),
    }


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
