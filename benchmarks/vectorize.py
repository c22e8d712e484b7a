"""How to train N models at once on this device: loop, vmap, unroll or lax.map.

Usage::

    python benchmarks/vectorize.py                  # warm, then cold, both models
    python benchmarks/vectorize.py --models 3 --steps 8 --only cnn
    python benchmarks/vectorize.py --quick          # a smoke run
    python benchmarks/vectorize.py --out /tmp/vectorize.json

This decides the rule of ``fit_many(vectorize="auto")``. N models (one key
each) of two networks train for ``--steps`` steps (gradient + ``optax.adam``
update, hand-written JAX, no annjax in the timed code):

* ``cnn``: the small CNN of issue 27, conv 3×3×32 – batch norm (batch
  statistics) – ReLU – max pool 2 – conv 3×3×64 – batch norm – ReLU – max
  pool 2 – dense 128 – ReLU – dense 10, on 28×28×1 inputs, batch 64;
* ``mlp``: a 64-64-10 ReLU MLP on scikit-learn's digits, batch 32.

Four ways to run the N models' steps:

* ``loop``: one jitted single-model step, called N times per step (what a
  loop of ``fit`` calls does, and ``fit_many(vectorize="sequential")``);
* ``vmap``: one jitted ``jax.vmap`` of the step over the stacked models;
* ``unroll``: one jit of a Python loop over the N models (N copies of the
  step in one program);
* ``map``: one jit of ``jax.lax.map`` of the step over the stacked models.

``warm``: in this process, each way compiles and runs once, then the N
models' ``--steps`` steps are timed ``--repeats`` times, the ways
interleaved round-robin so that a change of the machine's load hits all of
them alike; the median is reported with its ratio to ``loop``, in wall and
in process CPU time (all threads; the one to read on a loaded machine, where
wall time mostly measures the other processes). ``cold``: each
way runs in a fresh interpreter (no persistent compilation cache), timed
from before the first compilation to the end of its steps (tracing and
compiling included), the ways one after another; ``--cold-repeats`` rounds.
The load average (``os.getloadavg``) before and after is printed: on a
shared machine read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

WAYS = ("loop", "vmap", "unroll", "map")


# --------------------------------------------------------------------------- models
def _conv(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _bn(x, scale, bias):
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias


def _pool(x):
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
    )


def _he(key, shape, fan_in):
    return jax.random.normal(key, shape) * jnp.sqrt(2.0 / fan_in)


def cnn_init(key):
    k = jax.random.split(key, 4)
    return {
        "c1": _he(k[0], (3, 3, 1, 32), 9),
        "s1": jnp.ones(32),
        "b1": jnp.zeros(32),
        "c2": _he(k[1], (3, 3, 32, 64), 9 * 32),
        "s2": jnp.ones(64),
        "b2": jnp.zeros(64),
        "d1": _he(k[2], (7 * 7 * 64, 128), 7 * 7 * 64),
        "e1": jnp.zeros(128),
        "d2": _he(k[3], (128, 10), 128),
        "e2": jnp.zeros(10),
    }


def cnn_apply(p, x):
    h = _pool(jax.nn.relu(_bn(_conv(x, p["c1"]), p["s1"], p["b1"])))
    h = _pool(jax.nn.relu(_bn(_conv(h, p["c2"]), p["s2"], p["b2"])))
    h = jax.nn.relu(h.reshape(h.shape[0], -1) @ p["d1"] + p["e1"])
    return h @ p["d2"] + p["e2"]


def mlp_init(key):
    k = jax.random.split(key, 3)
    return {
        "w1": _he(k[0], (64, 64), 64),
        "b1": jnp.zeros(64),
        "w2": _he(k[1], (64, 64), 64),
        "b2": jnp.zeros(64),
        "w3": _he(k[2], (64, 10), 64),
        "b3": jnp.zeros(10),
    }


def mlp_apply(p, x):
    h = jax.nn.relu(x @ p["w1"] + p["b1"])
    h = jax.nn.relu(h @ p["w2"] + p["b2"])
    return h @ p["w3"] + p["b3"]


def _data(name: str, steps: int):
    """Returns (x, y) with ``steps`` batches along the leading axis."""
    rng = np.random.default_rng(0)
    if name == "cnn":
        batch = 64
        x = rng.random((steps, batch, 28, 28, 1), dtype=np.float32)
    else:
        from sklearn.datasets import load_digits

        batch = 32
        d = load_digits()
        idx = rng.integers(0, len(d.target), steps * batch)
        x = (d.data[idx] / 16.0).astype(np.float32).reshape(steps, batch, 64)
        return jnp.asarray(x), jnp.asarray(d.target[idx].reshape(steps, batch))
    y = rng.integers(0, 10, (steps, batch)).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


MODELS = {"cnn": (cnn_init, cnn_apply), "mlp": (mlp_init, mlp_apply)}


# --------------------------------------------------------------------------- ways
def _single_step(apply, optimizer):
    def step(params, opt_state, x, y):
        def loss(p):
            logits = apply(p, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def make_way(way: str, name: str, n: int):
    """Returns ``(state, run)``: ``run(state, x, y) -> state`` does one step of all
    N models (``x`` one batch), blocking on the result."""
    init, apply = MODELS[name]
    optimizer = optax.adam(1e-3)
    step = _single_step(apply, optimizer)
    keys = jax.random.split(jax.random.key(0), n)
    params = [init(k) for k in keys]
    states = [(p, optimizer.init(p)) for p in params]
    stack = jax.tree.map(lambda *a: jnp.stack(a), *states)

    if way == "loop":
        jstep = jax.jit(step)

        def run(state, x, y):
            out = [jstep(p, o, x, y)[:2] for p, o in state]
            return jax.block_until_ready(out)

        return states, run
    if way == "vmap":
        vstep = jax.jit(jax.vmap(step, in_axes=(0, 0, None, None)))
    elif way == "unroll":

        def unrolled(state, x, y):
            outs = [
                step(*jax.tree.map(lambda a, i=i: a[i], state), x, y)[:2]
                for i in range(n)
            ]
            return jax.tree.map(lambda *a: jnp.stack(a), *outs)

        vstep = jax.jit(unrolled)
    elif way == "map":

        def mapped(state, x, y):
            return jax.lax.map(lambda s: step(*s, x, y)[:2], state)

        vstep = jax.jit(mapped)
    else:
        raise ValueError(f"way: expected one of {WAYS}, got {way!r}")

    def run_stacked(state, x, y):
        if way == "vmap":
            return jax.block_until_ready(vstep(*state, x, y)[:2])
        return jax.block_until_ready(vstep(state, x, y))

    return stack, run_stacked


def _steps(run, state, x, y):
    for i in range(x.shape[0]):
        state = run(state, x[i], y[i])
    return state


# --------------------------------------------------------------------------- warm
def warm(name: str, n: int, steps: int, repeats: int, ways) -> dict:
    x, y = _data(name, steps)
    jax.block_until_ready(jax.jit(lambda a: a + 1)(x[0]))  # backend up before timing
    made, compile_s = {}, {}
    for way in ways:
        start = time.perf_counter()
        state, run = make_way(way, name, n)
        state = run(state, x[0], y[0])  # traces, compiles, one step
        compile_s[way] = time.perf_counter() - start
        made[way] = (state, run)
    times = {way: [] for way in ways}
    cpu = {way: [] for way in ways}
    for _ in range(repeats):
        for way in ways:
            state, run = made[way]
            start, start_cpu = time.perf_counter(), time.process_time()
            made[way] = (_steps(run, state, x, y), run)
            times[way].append(time.perf_counter() - start)
            cpu[way].append(time.process_time() - start_cpu)
    return {"first_call_s": compile_s, "steps_s": times, "steps_cpu_s": cpu}


# --------------------------------------------------------------------------- cold
def cold_child(name: str, n: int, steps: int, way: str) -> None:
    x, y = _data(name, steps)
    jax.block_until_ready((x, y))
    start, start_cpu = time.perf_counter(), time.process_time()
    state, run = make_way(way, name, n)
    _steps(run, state, x, y)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    print(json.dumps({"cold_s": wall, "cold_cpu_s": cpu}))


def cold(name: str, n: int, steps: int, rounds: int, ways) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION")}
    env["ANNJAX_CACHE_DIR"] = "off"
    times = {way: [] for way in ways}
    cpu = {way: [] for way in ways}
    for _ in range(rounds):
        for way in ways:
            out = subprocess.run(
                [sys.executable, __file__, "--child", name, str(n), str(steps), way],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            times[way].append(result["cold_s"])
            cpu[way].append(result["cold_cpu_s"])
    return {"cold_s": times, "cold_cpu_s": cpu}


def _line(label: str, times: dict, ways) -> str:
    ref = statistics.median(times["loop"]) if "loop" in times else None
    cells = []
    for way in ways:
        med = statistics.median(times[way])
        ratio = f" ({ref / med:4.2f}x)" if ref else ""
        cells.append(f"{way} {med * 1e3:8.0f} ms{ratio}")
    return f"{label:18s} " + "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold-repeats", type=int, default=1)
    parser.add_argument("--only", default="cnn,mlp")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--no-cold", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, n, steps, way = args.child
        cold_child(name, int(n), int(steps), way)
        return
    if args.quick:
        args.models, args.steps, args.repeats, args.cold_repeats = 2, 2, 1, 1
    ways = tuple(args.ways.split(","))
    report = {
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "models": args.models,
        "steps": args.steps,
        "load_before": os.getloadavg(),
        "results": {},
    }
    print(
        f"{report['device']}, N = {args.models} models, {args.steps} steps; "
        f"load {report['load_before']}",
        flush=True,
    )
    for name in args.only.split(","):
        res = warm(name, args.models, args.steps, args.repeats, ways)
        print(_line(f"{name} warm", res["steps_s"], ways), flush=True)
        print(_line(f"{name} warm CPU", res["steps_cpu_s"], ways), flush=True)
        print(
            _line(
                f"{name} 1st call",
                {w: [t] for w, t in res["first_call_s"].items()},
                ways,
            ),
            flush=True,
        )
        if not args.no_cold:
            res.update(cold(name, args.models, args.steps, args.cold_repeats, ways))
            print(_line(f"{name} cold", res["cold_s"], ways), flush=True)
            print(_line(f"{name} cold CPU", res["cold_cpu_s"], ways), flush=True)
        report["results"][name] = res
    report["load_after"] = os.getloadavg()
    print(f"load after {report['load_after']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
