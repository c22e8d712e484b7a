"""Compare five classifiers on handwritten digits: perceptron layer to batch norm.

Lecture exercise: "train/validation/test sets" and "the remedies for deep
networks". The same data, split once into train/validation/test, trains

* a single-layer softmax classifier, the lecture's perceptron layer y = f(Wx + b),
* an MLP with sigmoid hidden units (Xavier init),
* an MLP with ReLU hidden units and He init,
* the ReLU MLP with dropout,
* the ReLU MLP with batch normalisation,

each with Adam and early stopping on the validation loss (the params of the
best epoch are kept). The table shows size, epochs run, train/validation/test
accuracy and wall time (compilation included); the best model is chosen on
the VALIDATION accuracy, and its test accuracy is the honest estimate.

Run:
  python examples/compare_models.py                # scikit-learn digits, 8x8
  python examples/compare_models.py --data mnist   # MNIST from $ANNJAX_DATA_DIR
  python examples/compare_models.py --quick        # a few epochs (tests)
"""

from __future__ import annotations

import time

import _common
import jax

import annjax as ann


def models(hidden: int) -> dict[str, ann.Layer]:
    """Returns the five models, by name, for 10 classes.

    ``mlp`` initialises ReLU layers with He and sigmoid layers with Xavier; the
    three ReLU models differ only in dropout or batch norm.
    """
    return {
        "softmax layer": ann.dense(10),  # logits Wx + b; softmax is in the loss
        "MLP sigmoid": ann.mlp([hidden, 10], activation="sigmoid"),
        "MLP ReLU+He": ann.mlp([hidden, 10], activation="relu"),
        "ReLU+dropout": ann.mlp([hidden, 10], dropout=0.2),
        "ReLU+batchnorm": ann.mlp([hidden, 10], batch_norm=True),
    }


def main(argv: list[str] | None = None) -> dict:
    """Runs the comparison; returns the per-model figures and the best model."""
    p = _common.parser(__doc__, "compare_models.png")
    p.add_argument("--data", choices=("digits", "mnist"), default="digits")
    p.add_argument("--download", action="store_true", help="download MNIST")
    args = p.parse_args(argv)
    key = jax.random.key(args.seed)
    data_key, train_key = jax.random.split(key)
    try:
        splits, note = _common.image_splits(
            args.data,
            key=data_key,
            data_dir=args.data_dir,
            val=0.15,
            test=0.15,
            download=args.download,
        )
    except FileNotFoundError as error:  # the loader's message lists where it looked
        p.error(str(error))
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = splits
    epochs = 6 if args.quick else 60
    print(f"data: {note}")
    print(
        f"train {len(y_tr)}, val {len(y_va)}, test {len(y_te)}; up to {epochs} "
        "epochs, Adam(1e-3), batch 32, early stopping on val_loss (patience 5)\n"
    )

    rows, histories = [], {}
    for name, model in models(128).items():
        start = time.perf_counter()
        result = ann.fit(
            model,
            splits.train,
            val_data=splits.val,
            loss="softmax_cross_entropy",
            optimizer=ann.adam(1e-3),
            epochs=epochs,
            batch_size=32,
            metrics=("accuracy",),
            early_stopping=ann.EarlyStopping("val_loss", patience=5),
            key=train_key,
            progress=False,
        )
        logits = _common.predict_parts(
            model,
            result.params,
            result.state,
            {"train": X_tr, "val": X_va, "test": X_te},
        )
        seconds = time.perf_counter() - start
        acc = {
            part: float(ann.metrics.accuracy(y, logits[part]))
            for part, y in (("train", y_tr), ("val", y_va), ("test", y_te))
        }
        rows.append(
            {
                "model": name,
                "params": _common.num_params(result.params),
                "epochs": result.epochs,
                "train acc": acc["train"],
                "val acc": acc["val"],
                "test acc": acc["test"],
                "seconds": seconds,
            }
        )
        histories[name] = result.history

    _common.print_table(
        rows,
        {
            "model": "",
            "params": ",d",
            "epochs": "d",
            "train acc": ".4f",
            "val acc": ".4f",
            "test acc": ".4f",
            "seconds": ".1f",
        },
    )
    best = max(rows, key=lambda r: r["val acc"])
    print(
        f"\nbest model (highest validation accuracy): {best['model']}, "
        f"test accuracy {best['test acc']:.4f}"
    )
    figure = _common.plot_curves(
        histories,
        [
            ("validation accuracy", ["val_accuracy"]),
            ("loss (solid: validation, dashed: training)", ["val_loss", "loss"]),
        ],
        _common.figure_path(args.out, "compare_models.png"),
        f"Learning curves: {args.data}",
    )
    print(f"learning curves: {figure}")
    return {
        "data": note,
        "results": {r["model"]: r for r in rows},
        "best": best["model"],
        "best_test_accuracy": best["test acc"],
        "figure": str(figure),
    }


if __name__ == "__main__":
    main()
