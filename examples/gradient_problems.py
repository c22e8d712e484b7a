"""Vanishing gradients, detected inside the compiled step, and the remedies.

Lecture exercise: "the gradient problems". Three 10-hidden-layer MLPs learn
the digits with plain SGD while ``fit(track_gradients=True)`` measures, in
every step, each layer's gradient norm, update-to-weight ratio and the dead
or saturated fraction of each activation layer:

1. sigmoid units, weights from the lecture's U(−0.5, 0.5): the gradient
   shrinks by σ' ≤ 1/4 per layer, so the first layers barely learn;
2. the first remedy: ReLU units with He initialisation;
3. the second: residual blocks with batch normalisation.

``ann.diagnose`` reads each history and prints its findings with the
lecture's remedy; the figure is ``ann.plot.gradient_flow`` of each run
(gradient norm per layer and epoch).

Run:
  python examples/gradient_problems.py            # about half a minute
  python examples/gradient_problems.py --quick
"""

from __future__ import annotations

import _common
import jax

import annjax as ann

DEPTH, WIDTH = 10, 32

MODELS = {
    "sigmoid, U(-0.5, 0.5)": ann.mlp(
        [WIDTH] * DEPTH + [10],
        activation="sigmoid",
        w_init=ann.initializers.lecture_uniform,
    ),
    "ReLU, He": ann.mlp([WIDTH] * DEPTH + [10], activation="relu"),
    "ReLU, residual + batch norm": ann.mlp(
        [WIDTH] * DEPTH + [10], activation="relu", residual=True, batch_norm=True
    ),
}


def main(argv: list[str] | None = None) -> dict:
    """Trains the three deep MLPs; returns each one's findings, gradient ratio
    (first layer over output layer) and figure."""
    p = _common.parser(__doc__, "gradient_problems.png", data=False)
    args = p.parse_args(argv)
    data_key, train_key = jax.random.split(jax.random.key(args.seed))
    splits, note = _common.image_splits(
        "digits", key=data_key, data_dir=None, val=0.2, test=0.2
    )
    epochs = 3 if args.quick else 15
    print(
        f"data: {note}; {DEPTH} hidden layers of {WIDTH}, SGD(0.1), {epochs} epochs\n"
    )
    out, figures = {}, []
    for i, (name, model) in enumerate(MODELS.items()):
        result = ann.fit(
            model,
            splits.train,
            val_data=splits.val,
            optimizer=ann.sgd(0.1),
            epochs=epochs,
            batch_size=32,
            metrics=("accuracy",),
            track_gradients=True,
            key=train_key,
            progress=False,
        )
        h = result.history
        first, last = h["grad_norm/dense_0"][-1], h[f"grad_norm/dense_{_last(h)}"][-1]
        findings = ann.diagnose(h)
        print(
            f"== {name}: val accuracy {h['val_accuracy'][-1]:.3f}, gradient norm "
            f"dense_0 / output layer = {first / last:.2g}"
        )
        print(findings, end="\n\n")
        path = _common.figure_path(args.out, "gradient_problems.png")
        if i:  # the first model's figure is the script's figure; then _1, _2
            path = path.with_name(f"{path.stem}_{i}{path.suffix}")
        figures.append(str(path))
        ann.plot.gradient_flow(h, path=path)
        print(f"gradient-flow figure: {path}\n")
        out[name] = {
            "kinds": sorted({f.kind for f in findings}),
            "ratio": float(first / last),
            "val_accuracy": float(h["val_accuracy"][-1]),
        }
    return {"results": out, "figure": figures[0], "figures": figures}


def _last(history) -> int:
    """Returns the index of the output dense layer (the highest dense_i)."""
    return max(
        int(k.rsplit("_", 1)[1]) for k in history if k.startswith("grad_norm/dense_")
    )


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
