"""annjax against hand-written JAX, Flax, Equinox, PyTorch and Keras, in one run.

Usage::

    python benchmarks/run.py                 # everything installed, full size
    python benchmarks/run.py --quick         # CI smoke run (< 60 s)
    python benchmarks/run.py --only w1,annjax,jax-scan --out /tmp/bench

Every (workload, implementation) pair of :mod:`registry` runs in a process of
its own (``worker.py``); implementations whose packages are missing are
skipped with a message. Writes ``results.json`` (every measurement and the
environment) and ``results.md`` (the tables) to ``--out``, default
``benchmarks/results/`` (``results-quick.*`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from registry import IMPLEMENTATIONS, WORKLOADS, Implementation, Workload
from report import markdown, summarize
from worker import RESULT_PREFIX

HERE = Path(__file__).resolve().parent
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "XLA_FLAGS",
    "KERAS_BACKEND",
)
VERSIONED = (
    "annjax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "equinox",
    "torch",
    "keras",
    "numpy",
    "scikit-learn",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny data, 2 repeats, only the project venv's "
        "implementations (annjax, hand-written JAX, flax linen)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="comma-separated workload and/or implementation names; "
        f"workloads: {', '.join(WORKLOADS)}; implementations: "
        f"{', '.join(IMPLEMENTATIONS)}",
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results", help="output directory"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per process"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="processes at once; default 1 (timings need a quiet machine), "
        "2 with --quick (whose timings mean nothing)",
    )
    return parser.parse_args(argv)


def plan(only: list[str], quick: bool) -> list[tuple[Workload, list[Implementation]]]:
    """Returns the workloads to run, each with its implementations, in order.

    Raises:
      SystemExit: for a name in ``only`` that is neither a workload nor an
        implementation.
    """
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS and n not in IMPLEMENTATIONS]
    if unknown:
        raise SystemExit(
            f"--only: unknown names {unknown}; expected workloads "
            f"{list(WORKLOADS)} or implementations {list(IMPLEMENTATIONS)}."
        )
    workloads = [n for n in names if n in WORKLOADS] or [
        n for n, w in WORKLOADS.items() if w.in_quick or not quick
    ]
    impls = {n for n in names if n in IMPLEMENTATIONS}
    chosen = []
    for w in workloads:
        picked = [
            IMPLEMENTATIONS[i]
            for i in WORKLOADS[w].implementations
            if (i in impls) or (not impls and (IMPLEMENTATIONS[i].quick or not quick))
        ]
        if picked:
            chosen.append((WORKLOADS[w], picked))
    return chosen


def missing_packages(impl: Implementation) -> list[str]:
    """Returns the packages ``impl`` needs that this interpreter cannot import."""
    return [p for p in impl.requires if importlib.util.find_spec(p) is None]


def run_one(workload: Workload, impl: Implementation, settings: dict, timeout: float):
    """Returns the record of one (workload, implementation) run in a new process."""
    record = {
        "workload": workload.name,
        "impl": impl.name,
        "group": impl.group,
        "config": settings,
    }
    missing = missing_packages(impl)
    if missing:
        return {**record, "status": "skipped", "reason": f"missing {missing}"}
    spec = {
        "kind": workload.kind,
        "module": impl.module,
        "factory": impl.factory,
        "config": settings,
        "options": impl.options,
    }
    env = {**os.environ, **impl.env}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / "worker.py"), json.dumps(spec)],
            capture_output=True,
            text=True,
            env=env,
            cwd=HERE,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {**record, "status": "error", "reason": f"timed out after {timeout} s"}
    record["process_s"] = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        reason = f"exit {proc.returncode}: " + " / ".join(tail)
        return {**record, "status": "error", "reason": reason}
    return {**record, "status": "ok", **json.loads(lines[-1][len(RESULT_PREFIX) :])}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(quick: bool) -> dict:
    """Returns the machine, thread settings and package versions of this run."""
    flags = os.environ.get("XLA_FLAGS", "")
    eigen = [f for f in flags.split() if f.startswith("--xla_cpu_multi_thread_eigen")]
    versions = {"python": platform.python_version()}
    versions.update({n: v for n in VERSIONED if (v := _version(n)) is not None})
    return {
        "quick": quick,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "threads": {
            "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)),
            "env": {k: os.environ.get(k, "unset") for k in THREAD_VARS},
            "xla_cpu_multi_thread_eigen": eigen[-1] if eigen else "unset (default)",
        },
        "versions": versions,
        "executable": sys.executable,
        "load_before": os.getloadavg(),
    }


def _describe(r: dict) -> str:
    if r["status"] != "ok":
        return f"{r['status']}: {r['reason']}"
    if "gflops" in r:
        return f"{r['gflops']['median']:.1f} GFLOP/s"
    if "warm_s" in r:
        return f"cold {r['cold_s']:.2f} s, warm {r['warm_s']:.2f} s"
    if "wall_s" in r:
        return f"fresh process {r['wall_s']:.2f} s (cache: {r['cache']})"
    if "slice" in r:
        s, e = r["slice"], r["top_eigenvalue"]
        return f"slice {s['median_s']:.3f} s, λ_max {e['median_s']:.3f} s"
    s = r["samples_per_s"]
    return (
        f"{s['median']:,.0f} samples/s [{s['min']:,.0f}–{s['max']:,.0f}], "
        f"first epoch {r['first_epoch_s']:.2f} s, RSS {r['peak_rss_mib']:.0f} MiB"
    )


def run_all(chosen, quick: bool, timeout: float, jobs: int) -> list[dict]:
    """Returns one record per (workload, implementation), in plan order.

    A pair whose implementation and settings equal an earlier pair's (annjax
    on ``w1`` and on ``track``) runs once and its record is shared.
    """
    tasks = [(w, impl, w.settings(quick)) for w, impls in chosen for impl in impls]
    unique: dict[tuple[str, str], tuple] = {}
    for w, impl, settings in tasks:
        unique.setdefault(
            (impl.name, json.dumps(settings, sort_keys=True)), (w, impl, settings)
        )

    def one(task):
        w, impl, settings = task
        record = run_one(w, impl, settings, timeout)
        print(f"[{w.name}] {impl.name}: {_describe(record)}", file=sys.stderr)
        return record

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = dict(zip(unique, pool.map(one, unique.values()), strict=True))
    records = []
    for w, impl, settings in tasks:
        record = done[(impl.name, json.dumps(settings, sort_keys=True))]
        if record["workload"] != w.name:
            record = {**record, "workload": w.name, "shared_from": record["workload"]}
        records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = args.jobs or (2 if args.quick else 1)
    meta = environment(args.quick)
    meta["jobs"] = jobs
    start = time.perf_counter()
    records = run_all(plan(args.only, args.quick), args.quick, args.timeout, jobs)
    meta["duration_s"] = time.perf_counter() - start
    meta["load_after"] = os.getloadavg()
    summary = summarize(records)
    report = markdown(meta, records, summary)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "results-quick" if args.quick else "results"
    payload = {"meta": meta, "results": records, "summary": summary}
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(report)
    print(report)
    print(f"wrote {args.out / stem}.json and .md", file=sys.stderr)
    return 1 if any(r["status"] == "error" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
