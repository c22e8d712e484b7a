"""Dropout against over-fitting: one large MLP, dropout rates 0, 0.2 and 0.5.

Lecture exercise: "regularisation: dropout". A 2 × 512 ReLU MLP is far too
large for the small training subset it gets (1,000 MNIST images, 300 when it
falls back to the 8 × 8 digits), so without dropout it memorises the training
set: the training loss goes to 0 while the validation loss turns back up.
Dropout (``rate`` = probability of dropping a unit, inverted scaling in
training, identity at evaluation) narrows that gap.

Every rate trains for the same number of epochs without early stopping, so
the curves show the whole story. The table reports, in evaluation mode (no
dropout) after the last epoch, the training and validation loss, their gap,
and the accuracies; the figure shows training vs validation loss per rate
(the training curve is measured with dropout on, as the optimizer sees it).

Data: MNIST from ``--data-dir`` / ``$ANNJAX_DATA_DIR`` (when only its 10,000
test images are there, those are split into train/val/test); without MNIST
it says so and uses scikit-learn's digits.

Run:
  ANNJAX_DATA_DIR=shared/datasets python examples/dropout_mnist.py
  python examples/dropout_mnist.py --quick
"""

from __future__ import annotations

import time

import _common
import jax

import annjax as ann
from annjax.analysis.diagnose import diagnose

RATES = (0.0, 0.2, 0.5)


@_common.writes_report("dropout_mnist")
def main(argv: list[str] | None = None) -> dict:
    """Trains the MLP once per dropout rate; returns each rate's loss gap."""
    p = _common.parser(__doc__, "dropout_mnist.png")
    p.add_argument("--download", action="store_true", help="download MNIST")
    args = p.parse_args(argv)
    data_key, train_key = jax.random.split(jax.random.key(args.seed))
    try:
        splits, note = _common.image_splits(
            "mnist",
            key=data_key,
            data_dir=args.data_dir,
            val=0.2,
            test=0.2,
            download=args.download,
        )
        n_train = 1000
    except FileNotFoundError:
        splits, note = _common.image_splits(
            "digits", key=data_key, data_dir=None, val=0.2, test=0.2
        )
        note = "MNIST NOT FOUND (pass --data-dir or set ANNJAX_DATA_DIR); using " + note
        n_train = 300
    # The split is already shuffled: the first n_train examples are a random subset.
    train = tuple(a[:n_train] for a in splits.train)
    X_va, y_va = splits.val
    # --quick (the tests): a 128-wide MLP, still far larger than its subset needs
    width, epochs = (128, 10) if args.quick else (512, 40)
    print(f"data: {note}")
    print(
        f"training subset {n_train}, validation {len(y_va)}; MLP {width}-{width} ReLU, "
        f"Adam(3e-4), batch 50, {epochs} epochs\n"
    )

    rows, histories, findings = [], {}, {}
    for rate in RATES:
        model = ann.mlp([width, width, 10], dropout=rate)
        start = time.perf_counter()
        result = ann.fit(
            model,
            train,
            val_data=splits.val,
            optimizer=ann.adam(3e-4),
            epochs=epochs,
            batch_size=50,
            metrics=("accuracy",),
            key=train_key,
            progress=False,
        )
        seconds = time.perf_counter() - start
        logits = _common.predict_parts(
            model, result.params, result.state, {"train": train[0], "val": X_va}
        )
        row = {"dropout rate": f"{rate:g}"}
        for part, y in (("train", train[1]), ("val", y_va)):
            row[f"{part} loss"] = float(
                ann.losses.softmax_cross_entropy(y, logits[part])
            )
            row[f"{part} acc"] = float(ann.metrics.accuracy(y, logits[part]))
        row["gap"] = row["val loss"] - row["train loss"]
        row["best val loss"] = float(result.history["val_loss"].min())
        row["seconds"] = seconds
        rows.append(row)
        histories[f"rate {rate:g}"] = result.history
        findings[rate] = diagnose(result.history)

    _common.print_table(
        rows,
        {
            "dropout rate": "",
            "train loss": ".4f",
            "val loss": ".4f",
            "gap": ".4f",
            "train acc": ".4f",
            "val acc": ".4f",
            "best val loss": ".4f",
            "seconds": ".1f",
        },
    )
    print(
        "\ngap = validation loss - training loss after the last epoch (no dropout "
        "at evaluation); a large gap is over-fitting"
    )
    print("\ndiagnosis of each history (ann.diagnose):")
    for rate, found in findings.items():
        for f in found or ["healthy: no finding"]:
            text = f if isinstance(f, str) else f"{f.kind}: {f.message}"
            print(f"  rate {rate:g}: {text}")
    figure = _common.plot_curves(
        histories,
        [
            ("loss (solid: validation, dashed: training)", ["val_loss", "loss"]),
            ("validation accuracy", ["val_accuracy"]),
        ],
        _common.figure_path(args.out, "dropout_mnist.png"),
        f"Dropout on a {n_train}-example training set",
    )
    print(f"learning curves: {figure}")
    return {
        "data": note,
        "gaps": {float(r["dropout rate"]): r["gap"] for r in rows},
        "results": {float(r["dropout rate"]): r for r in rows},
        "findings": {rate: [f.kind for f in found] for rate, found in findings.items()},
        "figure": str(figure),
    }


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
