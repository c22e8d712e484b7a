"""annjax's ``max_pool`` against ``reduce_window`` inside a CNN's training step.

The step is ``ann.make_train_step`` of the ``sweep-cnn`` network
(conv 3×3×32 – batch norm – ReLU – max pool 2 – conv 3×3×64 – batch norm –
ReLU – max pool 2 – dense 128 – ReLU – dense 10), Adam(1e-3), batch 64 of
28×28×1 images, jitted once per variant:

- ``annjax``: ``ann.max_pool(2)``, whose windows tile the image, so it runs
  as a reshape, a max and an argmax with its own derivative rule;
- ``reduce_window``: the same pooling as one ``jax.lax.reduce_window`` (what
  flax's ``nn.max_pool`` and Keras's ``MaxPooling2D`` run on the JAX
  backend), whose gradient is XLA's ``select_and_scatter``.

Both give the same params after every step (checked here, bit for bit).
Each variant is timed for ``--steps`` steps, ``--rounds`` times in turn
(annjax, reduce_window, annjax, …: a shared machine's load drifts, so
interleaving gives both the same conditions), and the best round is
reported in CPU time per step (``time.process_time``: less sensitive to
other processes than wall time) and wall time.

Usage::

    python benchmarks/max_pool.py               # 20 steps, 5 rounds
    python benchmarks/max_pool.py --quick       # a smoke run
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
from impl_sweep import annjax_cnn

import annjax as ann


def reduce_window_pool(k: int) -> ann.Layer:
    """Returns a k×k, stride k max pool as one ``jax.lax.reduce_window``."""

    def init(key, input_shape):
        del key
        h, w, c = input_shape
        return (h // k, w // k, c), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        window = (1, k, k, 1)
        return jax.lax.reduce_window(
            x, -np.inf, jax.lax.max, window, window, "VALID"
        ), state

    return ann.Layer(init, apply, "max_pool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps, rounds = (2, 1) if args.quick else (args.steps, args.rounds)
    rng = np.random.default_rng(0)
    x = rng.random((steps, 64, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, (steps, 64)).astype(np.int32)
    opt = ann.adam(1e-3)
    variants = {"annjax": ann.max_pool, "reduce_window": reduce_window_pool}
    runs, ends = {}, {}
    for name, pool in variants.items():
        model = annjax_cnn(pool)
        ts, _ = ann.init_train_state(model, opt, jax.random.key(0), (28, 28, 1))
        step = jax.jit(ann.make_train_step(model, "softmax_cross_entropy", opt))
        jax.block_until_ready(step(ts, (x[0], y[0]), jax.random.key(0)))  # compiles
        runs[name] = (step, ts)

    def train(name):
        step, ts = runs[name]
        for i in range(steps):
            ts, _ = step(ts, (x[i], y[i]), jax.random.key(i))
        return jax.block_until_ready(ts)

    best = {name: (np.inf, np.inf) for name in variants}
    for _ in range(rounds):
        for name in variants:
            wall, cpu = time.perf_counter(), time.process_time()
            ends[name] = train(name)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            best[name] = (min(best[name][0], cpu), min(best[name][1], wall))
    same = all(
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(ends["annjax"].params),
            jax.tree.leaves(ends["reduce_window"].params),
            strict=True,
        )
    )
    print(
        f"load average {os.getloadavg()[0]:.1f}; jax {jax.__version__}, "
        f"{jax.devices()[0].platform}; {steps} steps, best of {rounds} rounds"
    )
    print("| max pool | CPU ms / step | wall ms / step |")
    print("|---|---|---|")
    for name, (cpu, wall) in best.items():
        print(f"| {name} | {cpu / steps * 1e3:.1f} | {wall / steps * 1e3:.1f} |")
    ratio = best["reduce_window"][0] / best["annjax"][0]
    print(f"reduce_window / annjax: {ratio:.2f}× (CPU); same params: {same}")


if __name__ == "__main__":
    main()
