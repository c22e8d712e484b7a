"""Depth on images: a deep plain CNN, a shallower one and a ResNet, each at its best.

Lecture exercise: "the gradient problems" and their remedies, on images. Three
convolutional networks (a stride-2 stem, two stages of basic blocks, global
average pooling and a dense head; 2 + 2 · 2 · blocks weight layers) learn
MNIST digits with the same data augmentation (``ann.augment``: every training
image shifted by up to 2 pixels, pad 2 then a random 28 × 28 crop, drawn
afresh in every step):

1. the deep plain CNN (3 blocks a stage, 14 weight layers): conv → ReLU
   stacked, He initialisation, nothing else;
2. a shallower plain CNN (1 block a stage, 6 weight layers);
3. the lecture's remedies at the depth of 1: the same convolutions in residual
   blocks (y = ReLU(x + F(x)), 1 × 1 projections where the shape changes)
   with batch normalisation after every convolution (``ann.resnet``).

A fair comparison trains each network at its best: one learning rate does
not suit them all (SGD(0.05, momentum 0.9), good for the ResNet, leaves the
deep plain CNN at chance). So first each network's optimizer (SGD with
momentum 0.9, or Adam) and learning rate are chosen on the validation split
by one ``ann.fit_many`` sweep per optimizer (every rate trained at once, from
the same initialisation, on a subset of the training images); then each
network trains at its choice on all the training images with
``track_gradients=True``, which measures every layer's gradient norm inside
the compiled step.

The report gives the sweep, the accuracy table with the training error (the
deep plain network's against the shallower one's: He et al.'s degradation is
a *higher training* error for the deeper plain net, which is not
overfitting), the layers whose gradients shrink below 0.1 × the output
layer's, ``ann.diagnose`` of each history, and writes the learning curves
(``residual_mnist.png``) and ``ann.plot.gradient_flow`` of each network
(``residual_mnist_plain.png``, ``_shallow.png``, ``_resnet.png``).

Each training step is its own compiled call (``steps_per_call=1``): on a CPU,
convolutions inside ``lax.scan`` ran 1.5–3× slower than the same steps called
one by one (same results; see the README).

Data: MNIST from ``--data-dir`` / ``$ANNJAX_DATA_DIR``; with only its 10,000
test images there, those are split into train/val/test (70/10/20); without
MNIST it says so and uses scikit-learn's 8 × 8 digits.

Run:
  ANNJAX_DATA_DIR=shared/datasets python examples/residual_mnist.py
  python examples/residual_mnist.py --quick
"""

from __future__ import annotations

import time

import _common
import jax
import numpy as np

import annjax as ann

WIDTHS, BLOCKS, SHALLOW_BLOCKS = (8, 16), 3, 1
#: The optimizers each network may use, with the learning rates the sweep
#: tries (one fit_many per network and optimizer, over these rates).
OPTIMIZERS = {
    "SGD+momentum": (lambda lr: ann.sgd(lr, momentum=0.9), (0.005, 0.015, 0.05)),
    "Adam": (ann.adam, (3e-4, 1e-3, 3e-3)),
}
#: The gradient-flow figures' suffixes, one per network in _models' order.
FIGURES = ("plain", "shallow", "resnet")
#: The sweep trains on the first SWEEP_TRAIN training images for SWEEP_EPOCHS.
SWEEP_TRAIN, SWEEP_EPOCHS, EPOCHS = 1500, 2, 4


def _images(splits: ann.data.Splits, side: int) -> ann.data.Splits:
    """Returns the splits with X reshaped to NHWC images (N, side, side, 1)."""
    return ann.data.Splits(
        *((x.reshape(-1, side, side, 1).astype(np.float32), y) for x, y in splits)
    )


def _data(args) -> tuple[ann.data.Splits, str, int]:
    data_key = jax.random.key(args.seed)
    try:
        splits, note = _common.image_splits(
            "mnist", key=data_key, data_dir=args.data_dir, val=0.1, test=0.2
        )
        side = 28
    except FileNotFoundError:
        splits, note = _common.image_splits(
            "digits", key=data_key, data_dir=None, val=0.1, test=0.2
        )
        note = "MNIST NOT FOUND (pass --data-dir or set ANNJAX_DATA_DIR); using " + note
        side = 8
    return _images(splits, side), note, side


def _ratio(history) -> float:
    """Returns ‖g_first‖ / ‖g_last‖ (epoch mean) in the last epoch."""
    grads = list(ann.analysis.findings.per_layer(history).values())
    return float(grads[0][-1] / grads[-1][-1])


@_common.writes_report("residual_mnist")
def main(argv: list[str] | None = None) -> dict:
    """Tunes, trains and profiles each network; returns their scores and findings."""
    args = _common.parser(__doc__, "residual_mnist.png").parse_args(argv)
    splits, note, side = _data(args)
    quick = args.quick
    widths = (4, 8) if quick else WIDTHS
    blocks, shallow = (2, 1) if quick else (BLOCKS, SHALLOW_BLOCKS)
    epochs, sweep_epochs = (2, 1) if quick else (EPOCHS, SWEEP_EPOCHS)
    rates = {k: r[1:] if quick else r for k, (_, r) in OPTIMIZERS.items()}
    train, val, test = splits
    if quick:
        train, val = tuple(a[:512] for a in train), tuple(a[:256] for a in val)
    sweep_train = tuple(a[: 256 if quick else SWEEP_TRAIN] for a in train)
    models = _models(widths, blocks, shallow, stride=2 if side > 16 else 1)
    augment = ann.augment.random_crop(side, padding=2)
    print(f"data: {note}")
    print(
        f"train {len(train[1])}, val {len(val[1])}, test {len(test[1])}; widths "
        f"{widths}; batch 64\naugmentation: random shifts of up to 2 pixels (pad 2, "
        f"random {side}x{side} crop), new in every step\n\n1. each network's "
        f"optimizer and learning rate, chosen by the best validation accuracy of "
        f"one fit_many sweep per optimizer ({len(sweep_train[1])} training "
        f"images, {sweep_epochs} epoch(s)):"
    )
    run = _Run(augment, args.seed)
    chosen, sweep_rows = {}, []
    for name, model in models.items():
        rows = run.sweep(model, sweep_train, val, rates, sweep_epochs)
        sweep_rows += [{"model": name, **r} for r in rows]
        chosen[name] = max(rows, key=lambda r: (r["val acc"], -r["val loss"]))
    _common.print_table(
        sweep_rows,
        {
            "model": "",
            "optimizer": "",
            "lr": ".4g",
            "val acc": ".3f",
            "val loss": ".3f",
        },
    )
    print(
        f"\n2. each network at its best, on all {len(train[1])} training images, "
        f"{epochs} epochs, gradient norms tracked:"
    )
    rows, histories, findings, figures = [], {}, {}, []
    for (name, model), tag in zip(models.items(), FIGURES, strict=True):
        pick = chosen[name]
        row, h = run.final(model, (train, val, test), pick, epochs)
        rows.append({"model": name, **row})
        histories[name], findings[name] = h, ann.diagnose(h)
        figures.append(_gradient_figure(h, tag, args.out))
    _report(rows, findings, histories)
    figure = _common.plot_curves(
        histories,
        [
            ("loss (solid: validation, dashed: training)", ["val_loss", "loss"]),
            (
                "accuracy (solid: validation, dashed: training)",
                ["val_accuracy", "accuracy"],
            ),
        ],
        _common.figure_path(args.out, "residual_mnist.png"),
        "MNIST, each network at its best optimizer and learning rate",
    )
    print(f"learning curves: {figure}\ngradient-flow figures: {', '.join(figures)}")
    return {
        "data": note,
        "sweep": sweep_rows,
        "results": {r["model"]: r for r in rows},
        "findings": {k: [f.kind for f in v] for k, v in findings.items()},
        "figure": str(figure),
        "figures": figures,
    }


def _models(widths, blocks: int, shallow: int, stride: int) -> dict[str, ann.Layer]:
    """Returns the deep plain CNN, a shallower plain CNN and the deep ResNet."""

    def plain(b):
        return ann.resnet(
            widths, b, residual=False, batch_norm=False, stem_stride=stride
        )

    deep, few = 2 + 2 * len(widths) * blocks, 2 + 2 * len(widths) * shallow
    return {
        f"plain CNN, {deep} layers": plain(blocks),
        f"plain CNN, {few} layers": plain(shallow),
        f"ResNet + batch norm, {deep} layers": ann.resnet(
            widths, blocks, stem_stride=stride
        ),
    }


class _Run:
    """The settings every training of the example shares."""

    def __init__(self, augment, seed: int):
        self.augment, self.key = augment, jax.random.fold_in(jax.random.key(seed), 1)
        self.common = {
            "batch_size": 64,
            "metrics": ("accuracy",),
            "augment": augment,
            "steps_per_call": 1,
            "progress": False,
        }

    def sweep(self, model, train, val, rates, epochs: int) -> list[dict]:
        """Returns one row per (optimizer, rate): its best validation scores.

        One ``fit_many`` per optimizer trains every rate at once
        (``lr_scale`` scales the optimizer's injected learning rate); every
        model starts from the same initialisation and sees the same batches.
        """
        rows = []
        for opt_name, (make, _) in OPTIMIZERS.items():
            base = rates[opt_name][0]
            result = ann.fit_many(
                model,
                train,
                val_data=val,
                keys=[self.key] * len(rates[opt_name]),
                lr_scale=[r / base for r in rates[opt_name]],
                optimizer=make(base),
                epochs=epochs,
                **self.common,
            )
            loss = result.history["val_loss"]
            for row in result.table("val_accuracy").rows:  # best first
                i, e = row["model"], row["epoch"]
                rows.append(
                    {
                        "optimizer": opt_name,
                        "lr": rates[opt_name][i],
                        "val acc": row["val_accuracy"],
                        "val loss": float(loss[e, i]),
                    }
                )
        return rows

    def final(self, model, splits, pick: dict, epochs: int) -> tuple[dict, dict]:
        """Returns the model's table row (without its name) and its history."""
        train, val, test = splits
        start = time.perf_counter()
        result = ann.fit(
            model,
            train,
            val_data=val,
            optimizer=OPTIMIZERS[pick["optimizer"]][0](pick["lr"]),
            epochs=epochs,
            track_gradients=True,
            key=self.key,
            **self.common,
        )
        seconds = time.perf_counter() - start
        h = result.history
        logits = _common.predict_parts(
            model, result.params, result.state, {"train": train[0], "test": test[0]}
        )
        train_acc = float(ann.metrics.accuracy(train[1], logits["train"]))
        row = {
            "optimizer": f"{pick['optimizer']} {pick['lr']:.4g}",
            "params": _common.num_params(result.params),
            "train err": 1.0 - train_acc,
            "train acc": train_acc,
            "val acc": float(h["val_accuracy"][-1]),
            "test acc": float(ann.metrics.accuracy(test[1], logits["test"])),
            "first/last grad": _ratio(h),
            "seconds": seconds,
        }
        return row, h


def _gradient_figure(history, tag: str, out) -> str:
    """Writes ``ann.plot.gradient_flow`` of one history; returns its path."""
    path = _common.figure_path(out, "residual_mnist.png")
    path = path.with_name(f"{path.stem}_{tag}.png")
    ann.plot.gradient_flow(history, path=path)
    return str(path)


def _shrinking(history, below: float = 0.1) -> list[str]:
    """Returns the layers whose last-epoch gradient norm is below ``below`` × the
    output layer's (the profiler's per-layer measurement)."""
    grads = ann.analysis.findings.per_layer(history)
    last = list(grads.values())[-1][-1]
    return [layer for layer, g in grads.items() if g[-1] < below * last]


def _report(rows, findings, histories) -> None:
    _common.print_table(
        rows,
        {
            "model": "",
            "optimizer": "",
            "params": "d",
            "train err": ".3f",
            "val acc": ".3f",
            "test acc": ".3f",
            "first/last grad": ".2g",
            "seconds": ".0f",
        },
    )
    print(
        "\ntrain err: 1 - accuracy in evaluation mode on the un-augmented training "
        "images; first/last grad: the first layer's gradient norm over the output "
        "layer's, last epoch"
    )
    (deep, deep_row), (shallow, shallow_row) = [
        (r["model"], r) for r in rows if r["model"].startswith("plain")
    ]
    worse = deep_row["train err"] > shallow_row["train err"]
    print(
        f"\ndepth, each plain network at its best: the {deep} has training error "
        f"{deep_row['train err']:.3f} against {shallow_row['train err']:.3f} for the "
        f"{shallow}: "
        + (
            "the deeper plain network fits its training data worse (He et al.'s "
            "degradation)."
            if worse
            else "no degradation at this depth and training length."
        )
    )
    for name, h in histories.items():
        small = _shrinking(h)
        print(
            f"gradients below 0.1 x the output layer's, {name}: "
            + (", ".join(small) if small else "none")
        )
    print("\ndiagnosis of each history (ann.diagnose):")
    for name, found in findings.items():
        print(f"== {name}\n{found}")


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
