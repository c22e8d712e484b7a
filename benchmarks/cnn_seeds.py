"""Issue 27's CNN case: ``fit_many`` of 3 seeds against a loop of 3 ``fit`` calls.

The model: conv 3×3×32 – batch norm – ReLU – max pool 2 – conv 3×3×64 –
batch norm – ReLU – max pool 2 – dense 128 (ReLU) – dense 10, Adam(1e-3),
batch 128, on 8,000 MNIST training images (the test images split when only
they are on disk; synthetic 28×28×1 images without MNIST), with augmentation
``random_crop(28, padding=2)`` then ``random_rotation(10)`` on every batch.
Each side runs in a fresh process of its own, so that its first call is
cold (import, compile, train); then the same work again in that process,
warm. The two sides alternate for ``--rounds`` rounds (many, loop, many, …:
a shared machine's load drifts), and the best round of each is reported:
wall and CPU seconds (``time.process_time`` of the process, its threads
included).

Usage::

    python benchmarks/cnn_seeds.py                  # 8,000 images, 1 epoch
    python benchmarks/cnn_seeds.py --quick          # 512 images, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def _data(n: int):
    import annjax as ann

    try:
        data = ann.datasets.load_mnist(download=False)
    except (FileNotFoundError, OSError):
        try:
            data = ann.datasets.load_mnist_test_split(download=False)[0]
        except (FileNotFoundError, OSError):
            data = None
    if data is None:
        rng = np.random.default_rng(0)
        return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n)
    return np.asarray(data.X[:n])[..., None], np.asarray(data.y[:n])


def child(side: str, n: int, epochs: int) -> dict:
    """Trains the 3 seeds twice in this process; returns cold and warm times."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    import jax
    from impl_sweep import annjax_cnn

    import annjax as ann

    x, y = _data(n)
    model = annjax_cnn()
    augment = ann.augment.compose(
        ann.augment.random_crop(28, padding=2), ann.augment.random_rotation(10)
    )
    kwargs = {
        "optimizer": ann.adam(1e-3),
        "epochs": epochs,
        "batch_size": 128,
        "augment": augment,
        "progress": False,
    }
    keys = [jax.random.key(s) for s in range(3)]

    def train():
        if side == "many":
            return [ann.fit_many(model, (x, y), keys=keys, **kwargs).params]
        return [ann.fit(model, (x, y), key=k, **kwargs).params for k in keys]

    out = {}
    for phase in ("cold", "warm"):
        jax.block_until_ready(train())
        out[phase] = (time.perf_counter() - start_wall, time.process_time() - start_cpu)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=("many", "loop"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.epochs)))
        return
    n, rounds = (512, 1) if args.quick else (args.n, args.rounds)
    best = {}
    for _ in range(rounds):
        for side in ("many", "loop"):
            command = [sys.executable, __file__, "--child", side, "--n", str(n)]
            command += ["--epochs", str(args.epochs)]
            line = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(line.stdout.strip().splitlines()[-1])
            for phase, (wall, cpu) in result.items():
                old = best.get((side, phase), (np.inf, np.inf))
                best[side, phase] = (min(old[0], wall), min(old[1], cpu))
    print(
        f"load average {os.getloadavg()[0]:.1f}; {n} images, {args.epochs} "
        f"epoch(s), 3 seeds, best of {rounds} round(s)"
    )
    print("| | cold wall s | cold CPU s | warm wall s | warm CPU s |")
    print("|---|---|---|---|---|")
    for side, name in (("many", "`fit_many` of 3 seeds"), ("loop", "3 × `fit`")):
        cw, cc = best[side, "cold"]
        ww, wc = best[side, "warm"]
        print(f"| {name} | {cw:.2f} | {cc:.2f} | {ww:.2f} | {wc:.2f} |")
    for phase in ("cold", "warm"):
        wall = best["loop", phase][0] / best["many", phase][0]
        cpu = best["loop", phase][1] / best["many", phase][1]
        print(
            f"{phase}: the loop takes {wall:.2f}× (wall), {cpu:.2f}× (CPU) the time "
            "of fit_many"
        )


if __name__ == "__main__":
    main()
