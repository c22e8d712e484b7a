"""A CNN inside ``ann.fit`` on the CPU: the epoch as one scan or k steps per call.

Usage::

    python benchmarks/conv_steps.py                # 16 steps of batch 128
    python benchmarks/conv_steps.py --quick        # a smoke run (2 steps)
    python benchmarks/conv_steps.py --k none,1,4 --out /tmp/conv.json

The model is the issue's case: a flax CNN (3×3 conv 8 → 16 channels with
batch norm, a residual block of two 3×3 convs with batch norm, global
average pooling, a dense layer) on 28×28×8 inputs, batch 128, 16 steps an
epoch, through ``ann.from_flax``. For each ``steps_per_call`` the first
``fit`` (1 epoch) compiles; then ``--epochs`` epochs are timed in one
``fit`` call, ``--repeats`` times, and the median epoch time is reported.
Also the MLP of W1's shape (784-256-256-10, the same steps) as the control:
there the scan is expected to be at least as fast. Prints a table and
writes JSON. Take the numbers from a quiet machine (``uptime``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import flax.linen as nn
import jax
import numpy as np

import annjax as ann


class ResidualCNN(nn.Module):
    """conv-bn-relu, a residual block of two conv-bn, pooling, dense."""

    features: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        def conv_bn(h):
            h = nn.Conv(self.features, (3, 3), padding="SAME")(h)
            return nn.BatchNorm(use_running_average=not train)(h)

        x = nn.relu(conv_bn(x))
        x = nn.relu(x + conv_bn(nn.relu(conv_bn(x))))
        return nn.Dense(10)(x.mean(axis=(1, 2)))


def _epoch_seconds(model, data, k, epochs: int, repeats: int) -> list[float]:
    """Returns the seconds of one epoch, ``repeats`` times (after compiling)."""
    kwargs = {
        "optimizer": ann.adam(1e-3),
        "batch_size": 128,
        "progress": False,
        "steps_per_call": k,
        "key": jax.random.key(0),
    }
    jax.block_until_ready(ann.fit(model, data, epochs=1, **kwargs).params)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = ann.fit(model, data, epochs=epochs, **kwargs)
        jax.block_until_ready(result.params)
        times.append((time.perf_counter() - start) / epochs)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", default="none,1,2,4,16", help="steps_per_call values")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.epochs, args.repeats = 2, 1, 1
    ks = [None if k == "none" else int(k) for k in args.k.split(",")]
    rng = np.random.default_rng(0)
    n = 128 * args.steps
    cases = {
        "cnn": (
            ann.from_flax(ResidualCNN()),
            rng.normal(size=(n, 28, 28, 8)).astype(np.float32),
        ),
        "mlp": (ann.mlp([256, 256, 10]), rng.normal(size=(n, 784)).astype(np.float32)),
    }
    y = rng.integers(0, 10, n).astype(np.int32)
    load = os.getloadavg()
    rows = []
    for name, (model, x) in cases.items():
        for k in ks:
            times = _epoch_seconds(model, (x, y), k, args.epochs, args.repeats)
            rows.append({"model": name, "steps_per_call": k, "epoch_s": times})
            print(
                f"{name:4s} steps_per_call={k!s:5s} "
                f"epoch {statistics.median(times):7.3f} s  (all: "
                + ", ".join(f"{t:.3f}" for t in times)
                + ")",
                flush=True,
            )
    report = {
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_before": load,
        "load_after": os.getloadavg(),
        "steps": args.steps,
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
