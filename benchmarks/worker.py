"""Runs ONE implementation on ONE workload in this process; prints JSON.

``run.py`` starts ``python worker.py '<spec as JSON>'`` once per
(workload, implementation), so no framework shares a process, a compilation
cache or a heap with another. The last line of stdout is
``BENCH_RESULT {json}``.

The factories in ``impl_*.py`` follow two protocols:

* ``train``: ``factory(config, x, y, **options)`` builds the model, the
  optimizer and its state and returns ``train(epochs) -> loss``, which runs
  that many epochs (each a fresh shuffle of all of ``x``), waits until the
  work is done and returns the last training loss.
* ``gemm``: ``factory(n) -> matmul()``, which computes one n×n×n float32
  product and waits for it.
* ``landscape``: ``factory(config, problem) -> {"slice": f,
  "top_eigenvalue": g}`` (:mod:`impl_landscape`), each timed alone.
* ``sweep``: ``factory(config) -> accuracies`` trains every model of a
  sweep (:mod:`impl_sweep`); it is timed twice in this fresh process, cold
  (imports and compilation included) then warm.
* ``cold``: ``factory(config) -> accuracies`` is a whole program
  (:mod:`impl_cold`); it runs in a fresh interpreter started by this worker,
  timed from start to exit (imports and compilation included).

The measurement is the same for every implementation: the warm-up is
``factory(...)`` plus ``train(1)`` (building, compiling and one epoch), then
``repeats`` timed calls of ``train(epochs_per_repeat)``. Data are made before
the clock starts; the peak RSS is the process's own, at the end.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import resource
import statistics
import sys
import time
from typing import Any

import numpy as np

RESULT_PREFIX = "BENCH_RESULT "


def make_data(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
    """Returns ``(x, y, source)``: float32 inputs, int32 labels, where they came from.

    ``synthetic``: standard-normal inputs with labels from a fixed random
    linear teacher, so the loss falls and a broken implementation shows.
    ``digits``: scikit-learn's bundled 8×8 digits scaled to [0, 1] (synthetic
    data of the same shape when scikit-learn is missing).
    """
    sizes, n = config["sizes"], config["n_samples"]
    rng = np.random.default_rng(0)
    if config["data"] == "digits":
        try:
            from sklearn.datasets import load_digits

            digits = load_digits()
            x = (digits.data[:n] / 16.0).astype(np.float32)
            return x, digits.target[:n].astype(np.int32), "sklearn digits"
        except ImportError:
            pass
    x = rng.standard_normal((n, sizes[0]), dtype=np.float32)
    teacher = rng.standard_normal((sizes[0], sizes[-1]), dtype=np.float32)
    y = np.argmax(x @ teacher, axis=1).astype(np.int32)
    return x, y, "synthetic (teacher labels)"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def measure_train(factory, config: dict[str, Any], options: dict) -> dict[str, Any]:
    """Returns the warm-up time, the timed repeats and the throughput."""
    x, y, source = make_data(config)
    n, epochs = x.shape[0], config["epochs_per_repeat"]
    gc.collect()
    start = time.perf_counter()
    train = factory(config, x, y, **options)
    first_loss = train(1)
    warmup = time.perf_counter() - start
    times, loss = [], first_loss
    for _ in range(config["repeats"]):
        gc.collect()
        t = time.perf_counter()
        loss = train(epochs)
        times.append(time.perf_counter() - t)
    epoch_s = statistics.median(times) / epochs
    return {
        "data": source,
        "samples_per_epoch": n,
        "epochs_per_repeat": epochs,
        "repeat_s": times,
        "samples_per_s": _spread([n * epochs / t for t in times]),
        "epoch_s": epoch_s,
        "first_epoch_s": warmup,
        # The warm-up less one steady epoch: building and compiling.
        "compile_s": max(warmup - epoch_s, 0.0),
        "first_loss": float(first_loss),
        "final_loss": float(loss),
    }


def measure_gemm(factory, config: dict[str, Any], options: dict) -> dict[str, Any]:
    """Returns the GFLOP/s of an n³ float32 product (2n³ FLOPs), after a warm-up."""
    n = config["n"]
    start = time.perf_counter()
    matmul = factory(n, **options)
    matmul()
    warmup = time.perf_counter() - start
    times = []
    for _ in range(config["repeats"]):
        t = time.perf_counter()
        matmul()
        times.append(time.perf_counter() - t)
    return {
        "n": n,
        "repeat_s": times,
        "gflops": _spread([2.0 * n**3 / t / 1e9 for t in times]),
        "first_epoch_s": warmup,
        "compile_s": max(warmup - statistics.median(times), 0.0),
    }


COLD_PREFIX = "COLD_RESULT "


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cold_process(name: str, config: dict, cache: str | None) -> tuple[float, ...]:
    """Returns ``(wall s, CPU s, accuracies)`` of ONE fresh process running ``name``.

    ``cache``: the annjax cache folder (``ANNJAX_CACHE_DIR``), or None for off.
    Any JAX cache of the environment is removed, so nothing else is warm.
    """
    import subprocess

    code = (
        f"import json, sys, impl_cold; r = impl_cold.{name}(json.loads(sys.argv[1]));"
        f" print({COLD_PREFIX!r} + json.dumps(r))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMP")}
    env["ANNJAX_CACHE_DIR"] = cache or "off"
    here = os.path.dirname(os.path.abspath(__file__))
    cpu, start = _children_cpu_s(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=here,
    )
    wall, cpu = time.perf_counter() - start, _children_cpu_s() - cpu
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(COLD_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(proc.stderr.strip().splitlines()[-3:])
    return wall, cpu, json.loads(lines[-1][len(COLD_PREFIX) :])


def measure_cold(factory, config: dict[str, Any], options: dict) -> dict[str, Any]:
    """Returns the wall and CPU time of a fresh process doing the whole exercise.

    The CPU time (user + system, all its threads) is what to read on a
    loaded machine, where wall times mostly measure the other processes.

    ``options["cache"]``: ``"empty"`` (annjax's persistent cache in a new
    folder), ``"warm"`` (the same folder, after one untimed run filled it)
    or absent (no persistent cache).
    """
    import tempfile

    cache = options.get("cache")
    with tempfile.TemporaryDirectory(prefix="annjax-cold-") as folder:
        if cache == "warm":
            _cold_process(factory.__name__, config, folder)
        wall, cpu, accuracy = _cold_process(
            factory.__name__, config, folder if cache else None
        )
    cache = cache or "none"
    return {"wall_s": wall, "cpu_s": cpu, "accuracy": accuracy, "cache": cache}


def measure_landscape(factory, config: dict[str, Any], options: dict) -> dict:
    """Returns each runner's first-call and steady times, and its values.

    ``factory(config, problem) -> {"slice": f, "top_eigenvalue": g}``
    (:mod:`impl_landscape`); the first call of each includes compilation,
    then ``repeats`` timed calls.
    """
    import impl_landscape

    prob = impl_landscape.problem(config)
    runners = factory(config, prob, **options)
    out: dict[str, Any] = {"data": prob["source"]}
    for name, run in runners.items():
        start = time.perf_counter()
        value = run()
        first = time.perf_counter() - start
        times = []
        for _ in range(config["repeats"]):
            gc.collect()
            t = time.perf_counter()
            value = run()
            times.append(time.perf_counter() - t)
        out[name] = {
            "first_s": first,
            "repeat_s": times,
            "median_s": statistics.median(times),
            "value": np.asarray(value, np.float64).tolist(),
        }
    return out


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_sweep(factory, config: dict[str, Any], options: dict) -> dict[str, Any]:
    """Returns the wall and CPU time of a whole sweep, cold then warm.

    ``factory(config)`` trains every model of the sweep and returns their
    validation accuracies. This worker is a fresh process that has not
    imported the framework: the first call (cold) imports it, traces and
    compiles; the second (warm) does the same sweep again, served by what
    the framework keeps compiled in the process. No persistent compilation
    cache is used (``ANNJAX_CACHE_DIR=off``, JAX's cache variables removed).
    """
    for name in [k for k in os.environ if k.startswith("JAX_COMPILATION_CACHE")]:
        del os.environ[name]
    os.environ["ANNJAX_CACHE_DIR"] = "off"
    out: dict[str, Any] = {}
    for phase in ("cold", "warm"):
        gc.collect()
        wall, cpu = time.perf_counter(), _cpu_s()
        accuracy = factory(config, **options)
        out[f"{phase}_s"] = time.perf_counter() - wall
        out[f"{phase}_cpu_s"] = _cpu_s() - cpu
        out[f"{phase}_accuracy"] = accuracy
    return out


PROTOCOLS = {
    "train": measure_train,
    "gemm": measure_gemm,
    "cold": measure_cold,
    "landscape": measure_landscape,
    "sweep": measure_sweep,
}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    module = importlib.import_module(spec["module"])
    factory = getattr(module, spec["factory"])
    result = PROTOCOLS[spec["kind"]](factory, spec["config"], spec["options"])
    info = getattr(module, "runtime_info", None)
    result["runtime"] = info() if info is not None else {}
    result["peak_rss_mib"] = _peak_rss_mib()
    result["pid"] = os.getpid()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
