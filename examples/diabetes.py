"""Pima diabetes: logistic regression vs MLP for a binary diagnosis.

Lecture exercise: "binary classification" (sigmoid output, cross-entropy).
Eight clinical measurements predict diabetes (label 1). In five columns a 0
means "not measured" (Glucose, BloodPressure, SkinThickness, Insulin, BMI):
the zeros become missing values and are imputed with the TRAINING means, and
the features are standardised with training statistics, so nothing about the
validation or test patients leaks into training.

Both models output one logit z and minimise ``sigmoid_binary_cross_entropy``
(the numerically stable form of −[y log σ(z) + (1 − y) log(1 − σ(z))]), with
early stopping on the validation loss:

* logistic regression, ``dense(1)``: p = σ(wᵀx + b);
* an MLP with one ReLU hidden layer and dropout.

Accuracy, precision, recall and F1 (class 1 = diabetes) are computed on the
test set from p = σ(z) ≥ 0.5 (``ann.metrics`` reads one float column as a
probability, so the logits go through the sigmoid first).

Without ``diabetes.csv`` (in ``--data-dir`` or ``$ANNJAX_DATA_DIR``) the script
says so and falls back to scikit-learn's bundled breast-cancer set.

Run:
  ANNJAX_DATA_DIR=shared/datasets python examples/diabetes.py
  python examples/diabetes.py --quick
"""

from __future__ import annotations

import time

import _common
import jax
import numpy as np

import annjax as ann

METRICS = ("accuracy", "precision", "recall", "f1")


def load(data_dir: str | None) -> tuple[ann.datasets.Dataset, str]:
    """Returns the data set and a line naming it (the fallback said loudly)."""
    try:
        d = ann.datasets.load_pima_diabetes(data_dir, zeros_as_missing=True)
        missing = int(np.isnan(d.X).sum())
        return d, (
            f"Pima diabetes: {len(d.y)} patients, {int(d.y.sum())} with diabetes; "
            f"{missing} zeros in {', '.join(ann.datasets.PIMA_ZERO_MEANS_MISSING)} "
            "treated as missing"
        )
    except FileNotFoundError:
        d = ann.datasets.load_breast_cancer()
        return d, (
            "diabetes.csv NOT FOUND (pass --data-dir or set ANNJAX_DATA_DIR); using "
            f"scikit-learn's breast-cancer set instead: {len(d.y)} x {d.X.shape[1]}, "
            f"class 1 = {d.target_names[1]}"
        )


def main(argv: list[str] | None = None) -> dict:
    """Trains both classifiers; returns their test accuracy, precision, recall, F1."""
    args = _common.parser(__doc__, "diabetes.png").parse_args(argv)
    data, note = load(args.data_dir)
    print(f"data: {note}")
    data_key, train_key = jax.random.split(jax.random.key(args.seed))
    splits = _common.prepare(
        data.X, data.y, key=data_key, val=0.2, test=0.2, stratify=True
    )
    X_te, y_te = splits.test
    epochs = 15 if args.quick else 300
    print(
        f"train {len(splits.train[1])}, val {len(splits.val[1])}, test "
        f"{len(y_te)} (stratified); up to {epochs} epochs, Adam(3e-3), batch 32\n"
    )

    models = {
        "logistic regression": ann.dense(1),
        "MLP 16 ReLU + dropout": ann.mlp([16, 1], dropout=0.2),
    }
    rows, histories = [], {}
    for name, model in models.items():
        start = time.perf_counter()
        result = ann.fit(
            model,
            splits.train,
            val_data=splits.val,
            loss="sigmoid_binary_cross_entropy",
            optimizer=ann.adam(3e-3),
            epochs=epochs,
            batch_size=32,
            early_stopping=ann.EarlyStopping("val_loss", patience=20),
            key=train_key,
            progress=False,
        )
        seconds = time.perf_counter() - start
        prob = jax.nn.sigmoid(ann.predict(model, result.params, result.state, X_te))
        scores = {m: float(ann.metrics.get(m)(y_te, prob)) for m in METRICS}
        rows.append(
            {
                "model": name,
                "params": _common.num_params(result.params),
                "epochs": result.epochs,
                **scores,
                "seconds": seconds,
            }
        )
        histories[name] = result.history

    _common.print_table(
        rows,
        {
            "model": "",
            "params": "d",
            "epochs": "d",
            **dict.fromkeys(METRICS, ".4f"),
            "seconds": ".1f",
        },
    )
    print("\nmetrics on the test set, class 1 positive, threshold p = 0.5")
    figure = _common.plot_curves(
        histories,
        [("binary cross-entropy (solid: val, dashed: train)", ["val_loss", "loss"])],
        _common.figure_path(args.out, "diabetes.png"),
        note.split(":")[0],
    )
    print(f"learning curves: {figure}")
    return {
        "data": note,
        "results": {r["model"]: r for r in rows},
        "figure": str(figure),
    }


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
