"""The benchmark runner: its plan, and a ``--quick`` run's output (no timings)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
# benchmarks/ is a folder of scripts, not a package: import them from there.
sys.path.insert(0, str(BENCH))
try:
    import registry
    import report
    import run
finally:
    sys.path.remove(str(BENCH))


def _names(chosen):
    return {w.name: [i.name for i in impls] for w, impls in chosen}


def test_quick_plan_uses_only_the_project_venv_implementations():
    chosen = _names(run.plan([], quick=True))
    assert "w2" not in chosen
    assert chosen["w1"] == ["annjax", "jax-scan", "jax-loop", "flax-linen"]
    assert chosen["track"] == ["annjax", "annjax-track"]
    assert chosen["steps"] == ["annjax", "annjax-steps"]
    assert chosen["gemm"] == ["numpy-gemm", "jnp-gemm"]


def test_only_selects_workloads_and_implementations():
    chosen = _names(run.plan(["w2,annjax", "torch"], quick=False))
    assert chosen == {"w2": ["annjax", "torch"]}
    # A peer named explicitly runs even under --quick.
    assert _names(run.plan(["w1,keras"], quick=True)) == {"w1": ["keras"]}


def test_only_rejects_unknown_names():
    with pytest.raises(SystemExit, match="unknown names"):
        run.plan(["w9"], quick=False)


def test_every_workload_names_registered_implementations():
    for workload in registry.WORKLOADS.values():
        assert set(workload.implementations) <= set(registry.IMPLEMENTATIONS)
        assert workload.kind in ("train", "gemm")


def test_flops_per_sample_counts_six_per_weight():
    assert report.flops_per_sample((784, 256, 256, 10)) == 6 * (
        784 * 256 + 256 * 256 + 256 * 10
    )


def _sections(text: str) -> dict[str, str]:
    """Returns markdown section title → body."""
    parts = text.split("\n## ")[1:]
    return {p.split("\n", 1)[0]: p for p in parts}


def test_quick_run_writes_well_formed_json_and_markdown(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "results-quick.json").read_text())
    assert set(data) == {"meta", "results", "summary"}
    meta = data["meta"]
    assert meta["quick"] is True
    assert {"python", "jax", "flax", "optax", "numpy"} <= set(meta["versions"])
    assert {"cpu_count", "affinity", "env", "xla_cpu_multi_thread_eigen"} <= set(
        meta["threads"]
    )
    assert meta["cpu"]

    records = data["results"]
    ran = {(r["workload"], r["impl"]) for r in records if r["status"] == "ok"}
    expected = {(w.name, i.name) for w, impls in run.plan([], True) for i in impls}
    assert ran == expected, [r.get("reason") for r in records]
    for r in records:
        assert r["peak_rss_mib"] > 0
        assert len(r["repeat_s"]) == r["config"]["repeats"] == 2
        assert r["first_epoch_s"] > 0 and r["compile_s"] >= 0
        rate = r["gflops"] if r["workload"] == "gemm" else r["samples_per_s"]
        assert 0 < rate["min"] <= rate["median"] <= rate["max"]
        if r["workload"] != "gemm":
            assert r["samples_per_epoch"] == r["config"]["n_samples"]
            assert math.isfinite(r["final_loss"])
    summary = data["summary"]
    assert summary["gemm_ceiling_gflops"] > 0
    assert summary["workloads"]["w1"]["rows"]["jax-scan"]["vs_scan"] == 1.0
    assert {t["workload"] for t in summary["targets"]} == {"w1", "w2", "track", "steps"}

    sections = _sections((tmp_path / "results-quick.md").read_text())
    titles = {w.title: w.name for w in registry.WORKLOADS.values()}
    assert "Targets" in sections
    for title, body in sections.items():
        if title == "Targets":
            continue
        workload = titles[title]
        rows = [ln for ln in body.splitlines() if ln.startswith("| ")][1:]
        impls = [r["impl"] for r in records if r["workload"] == workload]
        assert len(rows) == len(impls)
        for row, impl in zip(rows, impls, strict=True):
            assert row.startswith(f"| {impl} ")
