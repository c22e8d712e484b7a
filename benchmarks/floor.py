"""Issue 27's speed floor: ``fit_many`` of N models against a loop of N ``fit``
calls, for every model kind, cold and warm.

The kinds (``--kinds``, all by default):

* ``mlp``: 5 seeds of a 64-64-64-10 ReLU MLP, digits 80/20, batch 32, 30
  epochs, Adam(1e-3) (the issue's cold MLP case);
* ``batch_norm``: the same MLP with batch norm after each hidden layer;
* ``dropout``: the same MLP with dropout 0.2 after each hidden layer;
* ``flax``: the same MLP written in ``flax.linen`` (``ann.from_flax``);
* ``cnn``: 4 seeds of the ``sweep-cnn`` network (``impl_sweep.annjax_cnn``),
  2,048 28×28×1 images (MNIST's first, synthetic without them), batch 64, 2
  epochs;
* ``cnn_augment``: the issue's own CNN case, 3 seeds of that network on 8,000
  MNIST images, batch 128, ``random_crop(28, padding=2)`` then
  ``random_rotation(10)`` on every batch, 1 epoch.

Every model validates on its split after every epoch except ``cnn_augment``
(as the issue ran it). Each side runs in a fresh process of its own, so that
its first call is cold (import, compile, train); then the same work again in
that process, warm. The two sides alternate for ``--rounds`` rounds (many,
loop, many, …: a shared machine's load drifts), and the best round of each
is reported: wall and CPU seconds (``time.process_time`` of the process, its
threads included). ``fit_many`` runs with ``vectorize="auto"`` unless
``--vectorize`` names another way.

Usage::

    python benchmarks/floor.py                       # every kind, 2 rounds
    python benchmarks/floor.py --kinds cnn_augment   # the issue's CNN case
    python benchmarks/floor.py --quick               # tiny data, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

KINDS = ("mlp", "batch_norm", "dropout", "flax", "cnn", "cnn_augment")


def _images(n: int):
    """Returns ``n`` MNIST training images (28×28×1) and labels, or the
    test split's, or synthetic ones when neither is on disk."""
    import annjax as ann

    loaders = (
        ann.datasets.load_mnist,
        lambda download: ann.datasets.load_mnist_test_split(download=download)[0],
    )
    for load in loaders:
        try:
            data = load(download=False)
        except (FileNotFoundError, OSError):
            continue
        return np.asarray(data.X[:n])[..., None], np.asarray(data.y[:n])
    rng = np.random.default_rng(0)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n)


def _flax_mlp():
    import flax.linen as nn

    import annjax as ann

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for width in (64, 64, 64):
                x = nn.relu(nn.Dense(width)(x))
            return nn.Dense(10)(x)

    return ann.from_flax(MLP())


def setup(kind: str, quick: bool):
    """Returns ``(model, train, val, models, fit keyword arguments)``."""
    import jax

    import annjax as ann

    if kind.startswith("cnn"):
        from impl_sweep import annjax_cnn

        model = annjax_cnn()
        augmented = kind == "cnn_augment"
        n = 256 if quick else (8000 if augmented else 2048)
        x, y = _images(n)
        kwargs = {
            "optimizer": ann.adam(1e-3),
            "epochs": 1 if quick or augmented else 2,
            "batch_size": 128 if augmented else 64,
        }
        if augmented:
            kwargs["augment"] = ann.augment.compose(
                ann.augment.random_crop(28, padding=2),
                ann.augment.random_rotation(10),
            )
            return model, (x, y), None, 3, kwargs
        cut = int(0.8 * n)
        return model, (x[:cut], y[:cut]), (x[cut:], y[cut:]), 4, kwargs
    d = ann.datasets.load_digits()
    s = ann.data.split(d.X, d.y, val=0.2, key=jax.random.key(0))
    hidden = [64, 64, 64, 10]
    model = {
        "mlp": lambda: ann.mlp(hidden, activation="relu"),
        "batch_norm": lambda: ann.mlp(hidden, activation="relu", batch_norm=True),
        "dropout": lambda: ann.mlp(hidden, activation="relu", dropout=0.2),
        "flax": _flax_mlp,
    }[kind]()
    kwargs = {
        "optimizer": ann.adam(1e-3),
        "epochs": 2 if quick else 30,
        "batch_size": 32,
    }
    return model, s.train, s.val, 5, kwargs


def child(kind: str, side: str, quick: bool, vectorize: str = "auto") -> dict:
    """Trains the kind's models twice in this process; returns cold and warm
    (wall, CPU) seconds, the first including the imports."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    import jax

    import annjax as ann

    model, train, val, models, kwargs = setup(kind, quick)
    kwargs["progress"] = False
    if val is not None:
        kwargs.update(val_data=val, metrics=("accuracy",))
    keys = [jax.random.key(s) for s in range(models)]

    def run():
        if side == "many":
            many = ann.fit_many(model, train, keys=keys, vectorize=vectorize, **kwargs)
            return [many.params]
        return [ann.fit(model, train, key=k, **kwargs).params for k in keys]

    out = {}
    for phase in ("cold", "warm"):
        jax.block_until_ready(run())
        out[phase] = (time.perf_counter() - start_wall, time.process_time() - start_cpu)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
    return out


def measure(kind: str, rounds: int, quick: bool, vectorize: str = "auto") -> dict:
    """Returns (side, phase) → the best (wall, CPU) seconds over the rounds."""
    best: dict = {}
    for _ in range(rounds):
        for side in ("many", "loop"):
            command = [sys.executable, __file__, "--child", kind, side]
            command += ["--vectorize", vectorize] + (["--quick"] if quick else [])
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            for phase, (wall, cpu) in result.items():
                old = best.get((side, phase), (np.inf, np.inf))
                best[side, phase] = (min(old[0], wall), min(old[1], cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help=", ".join(KINDS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--vectorize", default="auto", help="fit_many's vectorize (default auto)"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.quick, args.vectorize)))
        return
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    rounds = 1 if args.quick else args.rounds
    print(
        f"best of {rounds} round(s), fit_many(vectorize={args.vectorize!r}); ratio: "
        "the loop's time / fit_many's (higher: fit_many faster)"
    )
    print(
        "| kind | fit_many cold wall s (CPU s) | loop cold | fit_many warm | loop warm "
        "| cold ratio (wall, CPU) | warm ratio (wall, CPU) |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        best = measure(kind, rounds, args.quick, args.vectorize)
        cells, ratios = [], []
        for phase in ("cold", "warm"):
            many, loop = best["many", phase], best["loop", phase]
            cells += [
                f"{many[0]:.2f} ({many[1]:.2f})",
                f"{loop[0]:.2f} ({loop[1]:.2f})",
            ]
            ratios.append(f"{loop[0] / many[0]:.2f}, {loop[1] / many[1]:.2f}")
        print(f"| {kind} | {' | '.join(cells)} | {' | '.join(ratios)} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
