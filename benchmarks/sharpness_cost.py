"""The cost of ``fit(track_sharpness=N)``: epochs with and without it, in one run.

Two workloads, each trained with ``track_sharpness`` 0 (off) and 1 (every
epoch), compiled first (a one-epoch fit per setting), then timed in
interleaved repeats so that the machine's load hits both settings alike::

    python benchmarks/sharpness_cost.py            # w1 and w2, 3 repeats
    python benchmarks/sharpness_cost.py --quick    # small data, 1 repeat

- ``w1``: the 784-256-256-10 ReLU MLP of ``benchmarks/README.md``, batch 128,
  60,000 synthetic examples (469 steps per epoch), SGD(0.05), 3 epochs;
- ``w2``: the 64-32-32-10 ReLU MLP on digits, batch 32 (57 steps per epoch),
  SGD(0.05), 10 epochs.

One measurement is 20 Lanczos steps, each a Hessian-vector product on one
batch (a forward-over-reverse pass, several gradients' work) plus the
reorthogonalisation against the basis. The script prints wall and CPU
seconds per epoch (medians over repeats), the CPU overhead of
``track_sharpness=1``, and what one measurement costs in training steps:
``track_sharpness=N`` adds that overhead divided by N.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import annjax as ann

SETTINGS = (0, 1)


def _w1(quick: bool):
    n = 6_000 if quick else 60_000
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 784)).astype(np.float32)
    y = (x @ rng.normal(size=(784, 10))).argmax(1).astype(np.int32)
    model = ann.mlp([256, 256, 10], activation="relu")
    return "w1", model, (x, y), 128, 1 if quick else 3


def _w2(quick: bool):
    d = ann.datasets.load_digits()
    x = (d.X / 16.0).astype(np.float32)
    model = ann.mlp([32, 32, 10], activation="relu")
    return "w2", model, (x, d.y.astype(np.int32)), 32, 3 if quick else 10


def _fit(model, data, batch_size, epochs, every):
    return ann.fit(
        model,
        data,
        optimizer=ann.sgd(0.05),
        epochs=epochs,
        batch_size=batch_size,
        track_sharpness=every,
        key=jax.random.key(0),
        progress=False,
    )


def measure(workload, repeats: int) -> dict[int, tuple[float, float]]:
    """Returns (wall, CPU) seconds per epoch, medians over repeats, per setting.

    CPU time (all threads of the process) is the steadier figure on a shared
    machine: other processes lengthen the wall time, not the CPU time.
    """
    _, model, data, batch_size, epochs = workload
    for every in SETTINGS:  # compile each setting's epoch once
        _fit(model, data, batch_size, 1, every)
    times = {every: [] for every in SETTINGS}
    for _ in range(repeats):
        for every in SETTINGS:
            wall, cpu = time.perf_counter(), time.process_time()
            result = _fit(model, data, batch_size, epochs, every)
            jax.block_until_ready(result.params)
            times[every].append(
                (
                    (time.perf_counter() - wall) / epochs,
                    (time.process_time() - cpu) / epochs,
                )
            )
    return {
        every: tuple(statistics.median(column) for column in zip(*t, strict=True))
        for every, t in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    print(f"device: {jax.devices()[0].device_kind}; repeats {repeats}")
    print(
        "workload  steps/epoch  track_sharpness  wall s/epoch  CPU s/epoch  "
        "CPU overhead"
    )
    for make in (_w1, _w2):
        workload = make(args.quick)
        name, _, (x, _), batch_size, _ = workload
        steps = -(-x.shape[0] // batch_size)
        per_epoch = measure(workload, repeats)
        cpu0 = per_epoch[0][1]
        for every, (wall, cpu) in per_epoch.items():
            print(
                f"{name:8s}  {steps:11d}  {every:15d}  {wall:12.3f}  {cpu:11.3f}  "
                f"{(cpu / cpu0 - 1) * 100:+11.1f}%"
            )
        extra = per_epoch[1][1] - cpu0  # one measurement, CPU seconds
        print(
            f"{name}: one measurement {extra:.3f} CPU s = "
            f"{extra / (cpu0 / steps):.0f} training steps; track_sharpness=N "
            f"adds {(extra / cpu0) * 100:.0f}% / N to an epoch"
        )


if __name__ == "__main__":
    main()
