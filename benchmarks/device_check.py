"""Is annjax right and fast on this accelerator? Checks against the CPU, W1, GEMM.

Usage::

    python benchmarks/device_check.py                 # full (W1: 60,000 samples)
    python benchmarks/device_check.py --quick         # a smoke run (CI, CPU)
    python benchmarks/device_check.py --out /tmp/device.json

Runs on whatever device JAX picks first (a GPU after
``pip install -e ".[cuda12]"``, else the CPU) and:

1. prints the device;
2. checks dense, batch norm (training mode: output and running
   statistics), a residual block and softmax cross-entropy (value and
   gradient) against the same computation on the CPU; matmuls run at
   ``"highest"`` precision for the check, since GPUs' default TF32 rounds
   to 10 bits of mantissa (the tolerance says what is expected);
3. measures W1's training throughput (``benchmarks/registry.py``:
   784-256-256-10 ReLU MLP, Adam(1e-3), batch 128) through ``ann.fit``,
   after a compiling warm-up ``fit``, as samples per second;
   with several devices, also data parallel over all of them
   (``fit(mesh=...)``; 8 forced CPU devices on one CPU measure the mesh's
   overhead only, not a speed-up);
4. measures the device's float32 matmul FLOP/s (2n³ / t, jitted
   ``jnp.matmul``, the median of repeats);
5. writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import annjax as ann

sys.path.insert(0, str(Path(__file__).resolve().parent))
from registry import WORKLOADS

TOL = 1e-5  # float32, another device's summation order


def _cases():
    """Returns name → (fn(key, x) -> outputs, input shape): the checked math."""

    def layer(model):
        def run(key, x):
            _, params, state = model.init(key, x.shape[1:])
            return model.apply(params, state, x, key=key, train=True)

        return run

    def cross_entropy(key, x):
        labels = jax.random.randint(key, (x.shape[0],), 0, x.shape[1])
        loss = ann.losses.get("softmax_cross_entropy")
        return jax.value_and_grad(lambda z: loss(labels, z))(x)

    block = ann.serial(ann.dense(32, activation="relu"), ann.dense(32))
    return {
        "dense": (layer(ann.dense(64, activation="relu")), (128, 32)),
        "batch_norm": (layer(ann.batch_norm()), (128, 32)),
        "residual": (layer(ann.residual(block)), (128, 32)),
        "softmax_cross_entropy": (cross_entropy, (128, 10)),
    }


def check_against_cpu(device) -> dict[str, dict]:
    """Returns each case's largest absolute difference to the CPU, and a verdict."""
    cpu = jax.devices("cpu")[0]
    key = jax.random.key(0)
    out = {}
    with jax.default_matmul_precision("highest"):
        for name, (fn, shape) in _cases().items():
            x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
            results = [
                jax.device_get(jax.jit(fn)(*jax.device_put((key, x), d)))
                for d in (device, cpu)
            ]
            diff = max(
                float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(*(jax.tree.leaves(r) for r in results), strict=True)
            )
            out[name] = {"max_abs_diff": diff, "ok": diff <= TOL}
    return out


def w1_throughput(quick: bool, mesh=None) -> dict:
    """Returns W1's training speed through ``ann.fit`` in samples per second.

    With ``mesh``, data parallel over its ``"data"`` axis (``fit(mesh=...)``).
    """
    config = WORKLOADS["w1"].settings(quick)
    sizes, n = config["sizes"], config["n_samples"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, sizes[0])).astype(np.float32)
    y = (x @ rng.normal(size=(sizes[0], sizes[-1]))).argmax(axis=1).astype(np.int32)
    model = ann.mlp(list(sizes[1:]), activation="relu")
    optimizer = ann.adam(config["learning_rate"])
    epochs = config["epochs_per_repeat"]

    def train(e: int) -> float:
        start = time.perf_counter()
        result = ann.fit(
            model,
            (x, y),
            optimizer=optimizer,
            epochs=e,
            batch_size=config["batch_size"],
            progress=False,
            mesh=mesh,
        )
        jax.block_until_ready(result.params)
        return time.perf_counter() - start

    train(1)  # compiles
    times = [train(epochs) for _ in range(config["repeats"])]
    best = statistics.median(times)
    return {
        "samples_per_s": n * epochs / best,
        "epoch_s": best / epochs,
        "seconds": times,
        "config": {
            k: list(v) if isinstance(v, tuple) else v for k, v in config.items()
        },
    }


def matmul_flops(n: int, repeats: int) -> dict:
    """Returns the float32 matmul speed, 2n³ / t, of the default device."""
    a, b = (
        jax.device_put(np.random.default_rng(i).normal(size=(n, n)).astype(np.float32))
        for i in (0, 1)
    )
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mm(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    t = statistics.median(times)
    return {"n": n, "flop_per_s": 2 * n**3 / t, "seconds": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--out", default=None, help="JSON path")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"device: {device} ({device.platform}, {device.device_kind})", flush=True)
    load = os.getloadavg()
    checks = check_against_cpu(device)
    for name, c in checks.items():
        verdict = "ok" if c["ok"] else "DIFFERS"
        print(f"  {name:22s} max |device − cpu| = {c['max_abs_diff']:.2e}  {verdict}")
    w1 = w1_throughput(args.quick)
    print(
        f"W1 training: {w1['samples_per_s']:,.0f} samples/s "
        f"({w1['epoch_s']:.3f} s/epoch)"
    )
    w1_mesh = None
    if jax.device_count() > 1:  # data parallel over every device, e.g. 8 GPUs
        mesh = Mesh(np.array(jax.devices()), ("data",))
        w1_mesh = w1_throughput(args.quick, mesh)
        print(
            f"W1 on {jax.device_count()} devices (fit(mesh=...)): "
            f"{w1_mesh['samples_per_s']:,.0f} samples/s"
        )
    gemm = matmul_flops(512 if args.quick else 4096, 3 if args.quick else 10)
    print(f"matmul {gemm['n']}³ float32: {gemm['flop_per_s'] / 1e9:,.1f} GFLOP/s")
    report = {
        "device": str(device),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "annjax": ann.__version__,
        "host": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_before": load,
        "load_after": os.getloadavg(),
        "quick": args.quick,
        "checks": checks,
        "w1": w1,
        "w1_mesh": w1_mesh,
        "matmul": gemm,
    }
    out = Path(args.out or Path(__file__).parent / "results" / "device_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    if not all(c["ok"] for c in checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
