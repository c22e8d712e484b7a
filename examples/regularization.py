"""The lecture's regularization section as one study, on 1,000 MNIST images.

Lecture exercise: "regularisation". One MLP (784-256-256-10, ReLU, He init,
Adam 1e-3, batch 50) is far too large for its 1,000 training images, so
unregularised it memorises them. The same protocol then trains it with each
of the lecture's remedies, and with all of them at once:

- nothing; L1 and L2 penalties (``fit(l1=…)``, ``fit(l2=…)``), three
  strengths each, picked on the validation accuracy: these seven share one
  architecture and train together in ONE ``ann.fit_many`` call;
- weight decay (AdamW, ``ann.adam(weight_decay=…)``); dropout (rate 0.5);
  batch normalisation; data augmentation (shifts of up to 2 pixels and
  rotations of up to 10°, ``ann.augment``, new in every step); early stopping
  (patience 5 on the validation loss, best epoch restored);
- all combined: dropout, batch norm, the chosen L1 and L2, weight decay,
  augmentation and early stopping.

The table gives the training accuracy (evaluation mode, on the 1,000
training images), validation and test accuracy, the generalisation gap
(train − test accuracy) and ``ann.diagnose``'s verdict of each history; the
figure shows the learning curves.

Data: MNIST from ``--data-dir`` / ``$ANNJAX_DATA_DIR`` (with only its 10,000
test images there, those are split: 1,000 of the 60% training part to train,
20% validation, 20% test); without MNIST it says so and uses scikit-learn's
8 × 8 digits (300 training images).

Run:
  ANNJAX_DATA_DIR=shared/datasets python examples/regularization.py
  python examples/regularization.py --quick
"""

from __future__ import annotations

import time

import _common
import jax
import numpy as np

import annjax as ann

L1S, L2S = (1e-5, 1e-4, 1e-3), (1e-4, 1e-3, 1e-2)
WEIGHT_DECAY, DROPOUT = 0.1, 0.5


def _data(args) -> tuple[ann.data.Splits, str, int, int]:
    key = jax.random.key(args.seed)
    try:
        splits, note = _common.image_splits(
            "mnist", key=key, data_dir=args.data_dir, val=0.2, test=0.2
        )
        n_train, side = 1000, 28
    except FileNotFoundError:
        splits, note = _common.image_splits(
            "digits", key=key, data_dir=None, val=0.2, test=0.2
        )
        note = "MNIST NOT FOUND (pass --data-dir or set ANNJAX_DATA_DIR); using " + note
        n_train, side = 300, 8
    # The split is already shuffled: the first n_train examples are a random subset.
    train = tuple(a[:n_train] for a in splits.train)
    return ann.data.Splits(train, splits.val, splits.test), note, n_train, side


def _augmentation(side: int):
    """Returns ``fn(key, x)`` on flat pixels: shift and rotate as images."""
    images = ann.augment.compose(
        ann.augment.random_crop(side, padding=2), ann.augment.random_rotation(10.0)
    )

    def fn(key, x):
        return images(key, x.reshape(-1, side, side)).reshape(x.shape)

    return fn


def _model(width: int, dropout: float = 0.0, batch_norm: bool = False) -> ann.Layer:
    return ann.mlp([width, width, 10], dropout=dropout, batch_norm=batch_norm)


def _sweep(splits, width: int, fit_args) -> dict[str, tuple[ann.FitResult, str]]:
    """Returns nothing, the best L1 and the best L2, from ONE fit_many call."""
    l1 = [0.0, *L1S, 0.0, 0.0, 0.0]
    l2 = [0.0, 0.0, 0.0, 0.0, *L2S]
    many = ann.fit_many(_model(width), splits.train, l1=l1, l2=l2, **fit_args)
    val = many.history["val_accuracy"][-1]
    print("fit_many sweep, last-epoch validation accuracy:")
    for i, (a, b) in enumerate(zip(l1, l2, strict=True)):
        print(f"  l1={a:<7g} l2={b:<7g} val acc {val[i]:.3f}")
    best_l1 = 1 + int(np.argmax(val[1:4]))
    best_l2 = 4 + int(np.argmax(val[4:7]))
    return {
        "nothing": (many.select(0), "-"),
        "L1": (many.select(best_l1), f"l1={l1[best_l1]:g}"),
        "L2": (many.select(best_l2), f"l2={l2[best_l2]:g}"),
    }


@_common.writes_report("regularization")
def main(argv: list[str] | None = None) -> dict:
    """Trains every variant; returns their scores and diagnoses."""
    args = _common.parser(__doc__, "regularization.png").parse_args(argv)
    splits, note, n_train, side = _data(args)
    # --quick (the tests): a 64-wide MLP, still far larger than its data needs
    width, epochs = (64, 3) if args.quick else (256, 40)
    key = jax.random.fold_in(jax.random.key(args.seed), 1)
    fit_args = {
        "val_data": splits.val,
        "optimizer": ann.adam(1e-3),
        "epochs": epochs,
        "batch_size": 50,
        "metrics": ("accuracy",),
        "progress": False,
    }
    print(f"data: {note}")
    print(
        f"train {n_train}, val {len(splits.val[1])}, test {len(splits.test[1])}; "
        f"MLP {width}-{width} ReLU, Adam(1e-3), batch 50, {epochs} epochs\n"
    )
    start = time.perf_counter()
    results = _sweep(splits, width, {**fit_args, "keys": jax.random.split(key, 7)})
    chosen = {k: float(results[k][1].split("=")[1]) for k in ("L1", "L2")}
    variants = _variants(side, width, chosen)
    models = dict.fromkeys(results, _model(width))
    for name, (model, extra, setting) in variants.items():
        result = ann.fit(model, splits.train, **{**fit_args, "key": key, **extra})
        results[name], models[name] = (result, setting), model
    rows, findings = _score(results, models, splits)
    print(f"\n(all trainings: {time.perf_counter() - start:.0f} s)\n")
    _report(rows, findings)
    figure = _common.plot_curves(
        {name: r.history for name, (r, _) in results.items()},
        [
            ("loss (solid: validation, dashed: training)", ["val_loss", "loss"]),
            ("validation accuracy", ["val_accuracy"]),
        ],
        _common.figure_path(args.out, "regularization.png"),
        f"Regularisation of a {side * side}-{width}-{width}-10 MLP on {n_train} "
        "training images",
    )
    print(f"learning curves: {figure}")
    return {
        "data": note,
        "results": {r["variant"]: r for r in rows},
        "findings": {k: [f.kind for f in v] for k, v in findings.items()},
        "figure": str(figure),
    }


def _variants(side: int, width: int, chosen: dict[str, float]) -> dict[str, tuple]:
    """Returns name → (model, fit arguments, setting) of the variants that need
    their own fit (another model, optimizer, augmentation or early stopping)."""
    stop = ann.EarlyStopping(patience=5)
    return {
        "weight decay": (
            _model(width),
            {"optimizer": ann.adam(1e-3, weight_decay=WEIGHT_DECAY)},
            f"AdamW {WEIGHT_DECAY:g}",
        ),
        "dropout": (_model(width, dropout=DROPOUT), {}, f"rate {DROPOUT:g}"),
        "batch norm": (_model(width, batch_norm=True), {}, "after each dense"),
        "augmentation": (
            _model(width),
            {"augment": _augmentation(side)},
            "shift+rotate",
        ),
        "early stopping": (_model(width), {"early_stopping": stop}, "patience 5"),
        "all combined": (
            _model(width, dropout=DROPOUT, batch_norm=True),
            {
                "optimizer": ann.adam(1e-3, weight_decay=WEIGHT_DECAY),
                "augment": _augmentation(side),
                "early_stopping": stop,
                "l1": chosen["L1"],
                "l2": chosen["L2"],
            },
            "all of the above",
        ),
    }


def _score(results, models, splits) -> tuple[list[dict], dict]:
    rows, findings = [], {}
    for name, (result, setting) in results.items():
        parts = {"train": splits.train[0], "val": splits.val[0], "test": splits.test[0]}
        logits = _common.predict_parts(models[name], result.params, result.state, parts)
        acc = {
            part: float(ann.metrics.accuracy(y, logits[part]))
            for part, y in zip(parts, (s[1] for s in splits), strict=True)
        }
        findings[name] = ann.diagnose(result.history)
        verdict = ", ".join(sorted({f.kind for f in findings[name]})) or "healthy"
        rows.append(
            {
                "variant": name,
                "setting": setting,
                "epochs": len(result.history["loss"]),
                "train acc": acc["train"],
                "val acc": acc["val"],
                "test acc": acc["test"],
                "gap": acc["train"] - acc["test"],
                "diagnose": verdict,
            }
        )
    return rows, findings


def _report(rows, findings) -> None:
    _common.print_table(
        rows,
        {
            "variant": "",
            "setting": "",
            "epochs": "d",
            "train acc": ".3f",
            "val acc": ".3f",
            "test acc": ".3f",
            "gap": ".3f",
            "diagnose": "",
        },
    )
    print(
        "\ntrain acc: evaluation mode on the training images; gap = train acc - "
        "test acc (the generalisation gap); epochs: run (early stopping restores "
        "the best one's params)\n\ndiagnosis of each history (ann.diagnose):"
    )
    for name, found in findings.items():
        if found:
            print(f"== {name}\n{found}")


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
