"""Vanishing gradients on images: a deep plain CNN against a ResNet of the same depth.

Lecture exercise: "the gradient problems" and their remedies, on images. Two
convolutional networks of the same depth (a stride-2 stem, two stages of
basic blocks, global average pooling and a dense head; 2 + 2 · 2 · BLOCKS
weight layers) learn MNIST digits with SGD + momentum and the same data
augmentation (``ann.augment``: every training image shifted by up to 2 pixels,
pad 2 then a random 28 × 28 crop, drawn afresh in every step):

1. the plain CNN: conv → ReLU stacked, He initialisation, nothing else;
2. the lecture's remedies: the same convolutions in residual blocks
   (y = ReLU(x + F(x)), 1 × 1 projections where the shape changes) with batch
   normalisation after every convolution (``ann.resnet``).

``fit(track_gradients=True)`` measures every layer's gradient norm inside the
compiled step; the report gives the accuracy table, the ratio of the first
to the last layer's gradient norm, ``ann.diagnose`` of each history, and
writes the learning curves (``residual_mnist.png``) and
``ann.plot.gradient_flow`` of each model (``residual_mnist_plain.png``,
``residual_mnist_resnet.png``).

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

WIDTHS, BLOCKS = (8, 16), 3


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
    """Trains the plain CNN and the ResNet; returns their scores and findings."""
    args = _common.parser(__doc__, "residual_mnist.png").parse_args(argv)
    splits, note, side = _data(args)
    widths, blocks = ((4, 8), 1) if args.quick else (WIDTHS, BLOCKS)
    epochs = 2 if args.quick else 5
    train, val, test = splits
    if args.quick:
        train, val = (a[:512] for a in train), (a[:256] for a in val)
        train, val = tuple(train), tuple(val)
    models = _models(widths, blocks, stride=2 if side > 16 else 1)
    augment = ann.augment.random_crop(side, padding=2)
    depth = 2 + 2 * len(widths) * blocks
    print(f"data: {note}")
    print(
        f"train {len(train[1])}, val {len(val[1])}, test {len(test[1])}; "
        f"{depth} weight layers, widths {widths}; SGD(0.05, momentum 0.9), "
        f"batch 64, {epochs} epochs\naugmentation: random shifts of up to 2 "
        f"pixels (pad 2, random {side}x{side} crop), new in every step\n"
    )
    rows, histories, findings, figures = [], {}, {}, []
    for i, (name, model) in enumerate(models.items()):
        row, h = _train(
            model, splits._replace(train=train, val=val), augment, epochs, args
        )
        rows.append({"model": name, **row})
        histories[name], findings[name] = h, ann.diagnose(h)
        path = _common.figure_path(args.out, "residual_mnist.png")
        path = path.with_name(f"{path.stem}_{'resnet' if i else 'plain'}.png")
        ann.plot.gradient_flow(h, path=path, title=name)
        figures.append(str(path))
    _report(rows, findings)
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
        f"{depth} weight layers on MNIST: plain CNN vs ResNet + batch norm",
    )
    print(f"learning curves: {figure}\ngradient-flow figures: {', '.join(figures)}")
    return {
        "data": note,
        "results": {r["model"]: r for r in rows},
        "findings": {k: [f.kind for f in v] for k, v in findings.items()},
        "figure": str(figure),
        "figures": figures,
    }


def _models(widths, blocks: int, stride: int) -> dict[str, ann.Layer]:
    """Returns the plain CNN and the ResNet: the same convolutions."""
    return {
        "plain CNN": ann.resnet(
            widths, blocks, residual=False, batch_norm=False, stem_stride=stride
        ),
        "ResNet + batch norm": ann.resnet(widths, blocks, stem_stride=stride),
    }


def _train(model, splits, augment, epochs: int, args) -> tuple[dict, dict]:
    """Returns the model's table row (without its name) and its history."""
    train, val, test = splits
    start = time.perf_counter()
    result = ann.fit(
        model,
        train,
        val_data=val,
        optimizer=ann.sgd(0.05, momentum=0.9),
        epochs=epochs,
        batch_size=64,
        metrics=("accuracy",),
        augment=augment,
        track_gradients=True,
        steps_per_call=1,
        key=jax.random.fold_in(jax.random.key(args.seed), 1),
        progress=False,
    )
    seconds = time.perf_counter() - start
    h = result.history
    logits = _common.predict_parts(
        model, result.params, result.state, {"train": train[0], "test": test[0]}
    )
    row = {
        "params": _common.num_params(result.params),
        "train acc": float(ann.metrics.accuracy(train[1], logits["train"])),
        "val acc": float(h["val_accuracy"][-1]),
        "test acc": float(ann.metrics.accuracy(test[1], logits["test"])),
        "first/last grad": _ratio(h),
        "seconds": seconds,
    }
    return row, h


def _report(rows, findings) -> None:
    _common.print_table(
        rows,
        {
            "model": "",
            "params": "d",
            "train acc": ".3f",
            "val acc": ".3f",
            "test acc": ".3f",
            "first/last grad": ".2g",
            "seconds": ".0f",
        },
    )
    print(
        "\ntrain acc: evaluation mode on the un-augmented training images; "
        "first/last grad: the first layer's gradient norm over the output "
        "layer's, last epoch\n\ndiagnosis of each history (ann.diagnose):"
    )
    for name, found in findings.items():
        print(f"== {name}\n{found}")


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
