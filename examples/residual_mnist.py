"""Depth on images: a deep plain CNN, a shallow one and a ResNet, each at its best.

Lecture exercise: "the gradient problems" and their remedies, on images. Three
convolutional networks (a stride-2 stem, two stages of basic blocks of two
3 × 3 convolutions, global average pooling and a dense head; 2 + 2 · 2 ·
blocks weight layers) learn MNIST digits with the same data augmentation
(``ann.augment``: every training image shifted by up to 2 pixels, pad 2 then
a random 28 × 28 crop, drawn afresh in every step):

1. the deep plain CNN (3 blocks a stage, 14 weight layers): conv → ReLU
   stacked, He initialisation, nothing else;
2. the shallow plain CNN (1 block a stage, 6 weight layers), its twin;
3. the lecture's remedies at the deep one's depth: the same convolutions in
   residual blocks (y = ReLU(x + F(x)), 1 × 1 projections where the shape
   changes) with batch normalisation after every convolution
   (``ann.resnet``).

A fair comparison trains each network at its best: one learning rate does
not suit them all (SGD(0.05, momentum 0.9) suits the ResNet, not the deep
plain CNN: with 7,000 images, batch 64 and 5 epochs it left that one at
chance). So each network trains in ONE ``ann.fit_many``
sweep over the optimizer (SGD with momentum 0.9, or Adam) and its learning
rate: both are hyper-parameters (``hyper=``) of one injected optimizer,
:func:`sgd_or_adam`. Every configuration starts from the same
initialisation and sees the same batches; ``track_gradients=True`` measures
every layer's gradient norm inside the compiled step. ``ManyResult.table``
ranks the configurations by their best validation accuracy and
``ManyResult.best`` returns the winner at that epoch (restored by early
stopping that never stops), and the report compares the winners: training
error (He et al.'s degradation is a *higher training* error for the deeper
plain net, not overfitting), validation and test accuracy, each weight
layer's gradient norm over the output layer's (where they shrink), and
``ann.diagnose`` of each winner's history. It writes the learning curves
(``residual_mnist.png``) and ``ann.plot.gradient_flow`` of each winner
(``residual_mnist_plain.png``, ``_shallow.png``, ``_resnet.png``).

Each training step is its own compiled call (``steps_per_call=1``): on a CPU,
convolutions inside ``lax.scan`` ran 1.5–3× slower than the same steps called
one by one (same results; see the README).

Data: MNIST from ``--data-dir`` / ``$ANNJAX_DATA_DIR``; with only its 10,000
test images there, those are split into train/val/test (70/10/20), of which
the sweep trains on TRAIN images and validates on VAL (random subsets: the
split's parts are shuffled) and the winners are tested on all 2,000 test
images; without MNIST it says so and uses scikit-learn's 8 × 8 digits.
``--quick`` (for the tests) trains tiny networks (one stage of width 4) on
192 images for one epoch: its numbers mean nothing.

Run:
  ANNJAX_DATA_DIR=shared/datasets python examples/residual_mnist.py
  python examples/residual_mnist.py --quick
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import numpy as np
import optax

import annjax as ann

WIDTHS, BLOCKS, SHALLOW_BLOCKS = (8, 16), 3, 1
#: Training and validation images of the sweep, epochs and batch size: sized
#: so that the full run takes minutes on a 2-core CPU.
TRAIN, VAL, EPOCHS, BATCH = 1000, 500, 5, 32
#: (optimizer, learning rate): the configurations every network's sweep tries;
#: SGD(0.05, momentum 0.9) is the rate that suits the ResNet. Adam 1e-2 is in
#: the grid because a first run without it chose its largest rate, 3e-3, for
#: every network (the grid did not bracket the best rate).
GRID = (
    ("SGD+momentum", 0.005),
    ("SGD+momentum", 0.02),
    ("SGD+momentum", 0.05),
    ("Adam", 1e-3),
    ("Adam", 3e-3),
    ("Adam", 1e-2),
)
#: The networks' names in the tables and their gradient-flow figures' suffixes.
NETWORKS = {
    "deep plain CNN": "plain",
    "shallow plain CNN": "shallow",
    "deep ResNet + BN": "resnet",
}


def sgd_or_adam(learning_rate: float, adam: float) -> optax.GradientTransformation:
    """Returns SGD with momentum 0.9 (``adam`` = 0) or Adam (``adam`` = 1).

    Both keep their state and the update is the chosen one's, so that under
    ``optax.inject_hyperparams`` the optimizer itself is a hyper-parameter
    that ``fit_many(hyper={"adam": [...]})`` sweeps with the learning rate.
    """
    sgd, adam_ = optax.sgd(learning_rate, momentum=0.9), optax.adam(learning_rate)

    def init(params):
        return sgd.init(params), adam_.init(params)

    def update(grads, state, params=None):
        by_sgd, sgd_state = sgd.update(grads, state[0], params)
        by_adam, adam_state = adam_.update(grads, state[1], params)
        chosen = jax.tree_util.tree_map(
            lambda s, a: jnp.where(adam > 0.5, a, s), by_sgd, by_adam
        )
        return chosen, (sgd_state, adam_state)

    return optax.GradientTransformation(init, update)


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


@_common.writes_report("residual_mnist")
def main(argv: list[str] | None = None) -> dict:
    """Sweeps, compares and profiles each network; returns scores and findings."""
    args = _common.parser(__doc__, "residual_mnist.png").parse_args(argv)
    splits, note, side = _data(args)
    quick = args.quick
    widths, blocks, shallow = (
        ((4,), 2, 1) if quick else (WIDTHS, BLOCKS, SHALLOW_BLOCKS)
    )
    epochs = 1 if quick else EPOCHS
    sizes = (192, 128, 256) if quick else (TRAIN, VAL, None)  # None: all
    train, val, test = (
        tuple(a[:n] for a in part) for part, n in zip(splits, sizes, strict=True)
    )
    stride = 2 if side > 16 else 1
    models = {
        name: ann.resnet(widths, b, residual=res, batch_norm=res, stem_stride=stride)
        for name, b, res in zip(
            NETWORKS, (blocks, shallow, blocks), (False, False, True), strict=True
        )
    }
    depths = [2 + 2 * len(widths) * b for b in (blocks, shallow, blocks)]
    print(f"data: {note}")
    print(
        f"train {len(train[1])}, val {len(val[1])}, test {len(test[1])}; widths "
        f"{widths}; weight layers: "
        + ", ".join(f"{n} {d}" for n, d in zip(NETWORKS, depths, strict=True))
        + f"\nbatch {BATCH}, {epochs} epoch(s); augmentation: random shifts of up "
        f"to 2 pixels (pad 2, random {side}x{side} crop), new in every step\n"
    )
    tables, winners = {}, {}
    for name, model in models.items():
        sweep = _sweep(model, train, val, epochs, args.seed, quick)
        tables[name] = sweep.table("val_accuracy")
        winners[name] = sweep.best("val_accuracy")
    _print_sweep(tables)
    rows, histories, findings, figures = [], {}, {}, []
    for name, model in models.items():
        best, top = winners[name], tables[name].rows[0]
        rows.append({"network": name, **_scores(model, best, top, train, test)})
        histories[name], findings[name] = best.history, ann.diagnose(best.history)
        figures.append(_gradient_figure(best.history, NETWORKS[name], args.out))
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
        "sweep": {name: t.rows for name, t in tables.items()},
        "results": {r["network"]: r for r in rows},
        "findings": {k: [f.kind for f in v] for k, v in findings.items()},
        "figure": str(figure),
        "figures": figures,
    }


def _sweep(model, train, val, epochs: int, seed: int, quick: bool) -> ann.ManyResult:
    """Returns one fit_many of ``model`` over GRID, each model restored to its
    epoch of best validation accuracy.

    ``--quick`` vmaps the models and measures the gradients in every step: one
    program to compile, where ``"auto"`` unrolls the models on a CPU (faster
    steps, but a copy of the program per model to compile) and measuring every
    10th step compiles a measuring and a plain step.
    """
    return ann.fit_many(
        model,
        train,
        val_data=val,
        keys=[jax.random.fold_in(jax.random.key(seed), 1)] * len(GRID),
        hyper={
            "learning_rate": [lr for _, lr in GRID],
            "adam": [float(opt == "Adam") for opt, _ in GRID],
        },
        optimizer=optax.inject_hyperparams(sgd_or_adam)(learning_rate=0.01, adam=0.0),
        epochs=epochs,
        batch_size=BATCH,
        metrics=("accuracy",),
        # patience = epochs: never stops, restores the best epoch's params
        early_stopping=ann.EarlyStopping("val_accuracy", patience=epochs),
        augment=ann.augment.random_crop(val[0].shape[1], padding=2),
        track_gradients=True,
        track_every=1 if quick else 10,
        steps_per_call=1,
        vectorize="vmap" if quick else "auto",
        progress=False,
    )


def _print_sweep(tables) -> None:
    """Prints every configuration (rows) against each network's best validation
    accuracy (columns); ``*`` marks each network's choice."""
    best = {
        name: {r["model"]: r["val_accuracy"] for r in t.rows}
        for name, t in tables.items()
    }
    rows = []
    for i, (opt, lr) in enumerate(GRID):
        row = {"optimizer": opt, "lr": lr}
        for name, t in tables.items():
            mark = "*" if t.rows[0]["model"] == i else " "
            row[name] = f"{best[name][i]:.3f}{mark}"
        rows.append(row)
    print(
        "1. one fit_many sweep per network (ManyResult.table): the best validation "
        "accuracy of each optimizer and learning rate; * = the network's choice"
    )
    _common.print_table(
        rows, {"optimizer": "", "lr": ".4g", **dict.fromkeys(tables, "")}
    )


def _scores(model, best, top: dict, train, test) -> dict:
    """Returns a winner's table row (without its name)."""
    logits = _common.predict_parts(
        model, best.params, best.state, {"train": train[0], "test": test[0]}
    )
    train_acc = float(ann.metrics.accuracy(train[1], logits["train"]))
    ratios = _gradient_ratios(best.history)
    opt, lr = GRID[top["model"]]
    return {
        "optimizer": f"{opt} {lr:.4g}",
        "epoch": top["epoch"],
        "params": _common.num_params(best.params),
        "train err": 1.0 - train_acc,
        "val acc": top["val_accuracy"],
        "test acc": float(ann.metrics.accuracy(test[1], logits["test"])),
        "first/last grad": next(iter(ratios.values())),
    }


def _gradient_ratios(history) -> dict[str, float]:
    """Returns each weight layer's (convolution's, dense layer's) last-epoch
    gradient norm over the output layer's, from the input to the output."""
    grads = ann.analysis.findings.per_layer(history)
    weights = {k: g for k, g in grads.items() if "conv" in k or "dense" in k}
    last = list(weights.values())[-1][-1]
    return {k: float(g[-1] / last) for k, g in weights.items()}


def _gradient_figure(history, tag: str, out) -> str:
    """Writes ``ann.plot.gradient_flow`` of one history; returns its path."""
    path = _common.figure_path(out, "residual_mnist.png")
    path = path.with_name(f"{path.stem}_{tag}.png")
    ann.plot.gradient_flow(history, path=path)
    return str(path)


def _report(rows, findings, histories) -> None:
    print("\n2. each network at its choice (ManyResult.best):")
    _common.print_table(
        rows,
        {
            "network": "",
            "optimizer": "",
            "epoch": "d",
            "params": "d",
            "train err": ".3f",
            "val acc": ".3f",
            "test acc": ".3f",
            "first/last grad": ".2g",
        },
    )
    print(
        "\nepoch: the best epoch (from 0), whose params are kept; train err: 1 - "
        "accuracy in evaluation mode on the un-augmented training images; "
        "first/last grad: the first layer's gradient norm over the output "
        "layer's, last epoch"
    )
    deep, shallow = rows[0], rows[1]
    print(
        f"\ndepth, each plain network at its best: training error "
        f"{deep['train err']:.3f} for the {deep['network']}, "
        f"{shallow['train err']:.3f} for the {shallow['network']}: "
        + (
            "the deeper plain network fits its training data worse (He et al.'s "
            "degradation)."
            if deep["train err"] > shallow["train err"]
            else "no degradation at this depth and training length."
        )
    )
    print(
        "\neach weight layer's gradient norm over the output layer's (last "
        "epoch), input to output; below 0.1 in brackets:"
    )
    for name, h in histories.items():
        ratios = _gradient_ratios(h).values()
        cells = [f"[{r:.2g}]" if r < 0.1 else f"{r:.2g}" for r in ratios]
        print(f"{name}: {' '.join(cells)}")
    print("\ndiagnosis of each winner's history (ann.diagnose):")
    for name, found in findings.items():
        print(f"== {name}\n{found}")


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
