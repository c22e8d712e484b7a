"""Rosenblatt's perceptron on logic gates: AND, OR, NAND, NOR yes, XOR never.

Lecture exercise: "the perceptron and its limits". One threshold unit
y = H(w·x + b), trained with the perceptron rule W ← W + α (y − ŷ) xᵀ
(``ann.perceptron.train``, one compiled call per run), learns every linearly
separable gate exactly, for 2 and 3 inputs, and never learns XOR (parity):
no line (plane) separates its classes. A hidden layer fixes that: an MLP
trained with ``ann.fit`` gets XOR 100 % right.

Run:
  python examples/perceptron_gates.py
  python examples/perceptron_gates.py --quick     # fewer perceptron epochs
"""

from __future__ import annotations

import _common
import jax
import numpy as np

import annjax as ann

GATES = ("and", "or", "nand", "nor", "xor")


def main(argv: list[str] | None = None) -> dict:
    """Trains a perceptron per gate and an MLP on XOR; returns the accuracies."""
    args = _common.parser(__doc__, "perceptron_gates.png", data=False).parse_args(argv)
    key = jax.random.key(args.seed)
    epochs = 30 if args.quick else 100
    print(f"perceptron rule, lr 0.1, {epochs} epochs, W ~ U(-0.5, 0.5), b = 0\n")
    rows, curves, accuracy = [], {}, {}
    for gate in GATES:
        for n in (2, 3):
            data = ann.datasets.logic_gate(gate, n)
            result = ann.perceptron.train(
                data.X, data.y, epochs=epochs, lr=0.1, key=jax.random.fold_in(key, n)
            )
            acc = np.asarray(result.accuracy)
            solved = np.flatnonzero(acc == 1.0)
            rows.append(
                {
                    "gate": gate.upper(),
                    "inputs": n,
                    "epochs to 100%": str(solved[0] + 1) if solved.size else "never",
                    "best accuracy": acc.max(),
                    "final accuracy": acc[-1],
                    "w": " ".join(f"{w:+.2f}" for w in np.asarray(result.W[0])),
                    "b": f"{float(result.b[0]):+.2f}",
                }
            )
            curves.setdefault(gate.upper(), {})[f"accuracy_{n}"] = acc
            accuracy[f"{gate}/{n}"] = float(acc[-1])
    _common.print_table(
        rows,
        {
            "gate": "",
            "inputs": "d",
            "epochs to 100%": "",
            "best accuracy": ".3f",
            "final accuracy": ".3f",
            "w": "",
            "b": "",
        },
    )

    xor = ann.datasets.logic_gate("xor")
    model = ann.mlp([4, 2], activation="tanh")
    result = ann.fit(
        model,
        (xor.X, xor.y),
        loss="softmax_cross_entropy",
        optimizer=ann.adam(0.05),
        epochs=300,
        batch_size=4,
        key=key,
        progress=False,
    )
    pred = ann.predict(model, result.params, result.state, xor.X)
    mlp_acc = float(ann.metrics.accuracy(xor.y, pred))
    print(
        f"\nXOR with an MLP 2-4-2 (tanh), Adam(0.05), 300 epochs: accuracy "
        f"{mlp_acc:.0%}, predictions {np.argmax(pred, -1).tolist()} for inputs "
        f"{xor.X.astype(int).tolist()}"
    )
    figure = _common.plot_curves(
        curves,
        [
            ("perceptron accuracy, 2 inputs", ["accuracy_2"]),
            ("perceptron accuracy, 3 inputs", ["accuracy_3"]),
        ],
        _common.figure_path(args.out, "perceptron_gates.png"),
        "Perceptron rule on logic gates (XOR never reaches 1)",
    )
    print(f"accuracy per epoch: {figure}")
    return {"perceptron": accuracy, "xor_mlp_accuracy": mlp_acc, "figure": str(figure)}


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
