"""Compare the lecture's architectures on handwritten digits, each over 5 seeds.

Lecture exercise: "train/validation/test sets", "why depth needs a
non-linearity" and "the remedies for deep networks". The same data, split
once into train/validation/test, trains

* no hidden layer: the lecture's perceptron layer, softmax of y = Wx + b,
* 3 hidden layers with tanh,
* 3 hidden layers with ReLU (He init),
* 3 hidden layers with LINEAR activations: a product of linear maps is one
  linear map, so it can do no better than the model without hidden layers,
* the ReLU network with dropout, and with batch normalisation (the remedies),

each over 5 seeds at once with ``ann.fit_many`` (one compiled, vmapped
epoch per architecture), with Adam and early stopping on the validation
loss (each seed keeps the params of its best epoch). The table shows test
accuracy as mean ± std over the seeds; the best architecture is chosen on
the VALIDATION accuracy, and its test accuracy is the honest estimate.

Run:
  python examples/compare_models.py                # scikit-learn digits, 8x8
  python examples/compare_models.py --data mnist   # MNIST from $ANNJAX_DATA_DIR
  python examples/compare_models.py --quick        # a few epochs, 2 seeds (tests)
"""

from __future__ import annotations

import time

import _common
import jax
import numpy as np

import annjax as ann


def models(hidden: int) -> dict[str, ann.Layer]:
    """Returns the six models, by name, for 10 classes.

    ``mlp`` initialises ReLU layers with He and the others with Xavier; the
    three ReLU models differ only in dropout or batch norm.
    """
    deep = [hidden, hidden, hidden, 10]
    return {
        "no hidden layer": ann.dense(10),  # logits Wx + b; softmax is in the loss
        "3 x tanh": ann.mlp(deep, activation="tanh"),
        "3 x ReLU": ann.mlp(deep, activation="relu"),
        "3 x linear": ann.mlp(deep, activation="linear"),
        "ReLU+dropout": ann.mlp(deep, dropout=0.2),
        "ReLU+batchnorm": ann.mlp(deep, batch_norm=True),
    }


def accuracies(model: ann.Layer, many: ann.ManyResult, x, y) -> np.ndarray:
    """Returns each seed's accuracy on ``(x, y)``: shape (seeds,).

    The models' forward passes run op by op (no ``jit``): each small
    operation compiles once for its shapes and is shared by every
    architecture, which is cheaper than one compiled program per model.
    """

    def logits(params, state):
        return model.apply(params, state, x, train=False)[0]

    out = np.asarray(jax.vmap(logits)(many.params, many.state))
    return (out.argmax(-1) == np.asarray(y)[None]).mean(axis=1)


def train(name: str, model: ann.Layer, splits, keys, epochs: int):
    """Returns the table row and the mean history of ``model`` over the seeds."""
    seeds = len(keys)
    X_te, y_te = splits.test
    start = time.perf_counter()
    many = ann.fit_many(
        model,
        splits.train,
        val_data=splits.val,
        keys=keys,
        loss="softmax_cross_entropy",
        optimizer=ann.adam(1e-3),
        epochs=epochs,
        batch_size=32,
        metrics=("accuracy",),
        early_stopping=ann.EarlyStopping("val_loss", patience=5),
        progress=False,
    )
    test = accuracies(model, many, X_te, y_te)
    # each seed's validation accuracy at its best epoch (its params')
    val = many.history["val_accuracy"][many.best_epoch, np.arange(seeds)]
    row = {
        "model": name,
        "params": _common.num_params(many.params) // seeds,
        "epochs": int(np.max(many.model_epochs)),
        "val acc": float(val.mean()),
        "test acc": float(test.mean()),
        "± std": float(test.std()),
        "seconds": time.perf_counter() - start,
    }
    return row, {k: np.nanmean(v, axis=1) for k, v in many.history.items()}


def report(rows, seeds: int) -> dict:
    """Prints the table, the best model and the linear comparison; returns the best."""
    _common.print_table(
        rows,
        {
            "model": "",
            "params": ",d",
            "epochs": "d",
            "val acc": ".4f",
            "test acc": ".4f",
            "± std": ".4f",
            "seconds": ".1f",
        },
    )
    best = max(rows, key=lambda r: r["val acc"])
    print(
        f"\nbest model (highest mean validation accuracy): {best['model']}, test "
        f"accuracy {best['test acc']:.4f} ± {best['± std']:.4f} over {seeds} seeds"
    )
    linear, shallow = (
        next(r for r in rows if r["model"] == m)
        for m in ("3 x linear", "no hidden layer")
    )
    print(
        f"3 linear hidden layers: {linear['test acc']:.4f}, no hidden layer: "
        f"{shallow['test acc']:.4f} (the same family of functions: a product "
        "of linear maps is one linear map; any gap is the optimiser's)"
    )
    return best


def main(argv: list[str] | None = None) -> dict:
    """Runs the comparison; returns the per-model figures and the best model."""
    p = _common.parser(__doc__, "compare_models.png")
    p.add_argument("--data", choices=("digits", "mnist"), default="digits")
    p.add_argument("--download", action="store_true", help="download MNIST")
    p.add_argument("--seeds", type=int, default=5, help="seeds per model")
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
    (_, y_tr), (_, y_va), (_, y_te) = splits
    epochs, seeds = (4, 2) if args.quick else (30, args.seeds)
    print(f"data: {note}")
    print(
        f"train {len(y_tr)}, val {len(y_va)}, test {len(y_te)}; {seeds} seeds, up "
        f"to {epochs} epochs, Adam(1e-3), batch 32, early stopping on val_loss "
        "(patience 5)\n"
    )
    keys = jax.random.split(train_key, seeds)
    rows, histories = zip(
        *(train(name, m, splits, keys, epochs) for name, m in models(64).items()),
        strict=True,
    )
    histories = {r["model"]: h for r, h in zip(rows, histories, strict=True)}
    best = report(rows, seeds)
    figure = _common.plot_curves(
        histories,
        [
            ("validation accuracy (mean over seeds)", ["val_accuracy"]),
            ("loss (solid: validation, dashed: training)", ["val_loss", "loss"]),
        ],
        _common.figure_path(args.out, "compare_models.png"),
        f"Learning curves: {args.data}, best: {best['model']}",
    )
    print(f"learning curves: {figure}")
    return {
        "data": note,
        "seeds": seeds,
        "results": {r["model"]: r for r in rows},
        "best": best["model"],
        "best_test_accuracy": best["test acc"],
        "figure": str(figure),
    }


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
