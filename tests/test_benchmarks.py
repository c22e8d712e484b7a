"""The benchmark runner: its plan, and a ``--quick`` run's output (no timings)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
# benchmarks/ is a folder of scripts, not a package: import them from there.
sys.path.insert(0, str(BENCH))
try:
    import impl_landscape
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
    assert chosen["cold"] == ["annjax-cold", "annjax-warm", "jax-cold"]


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
        assert workload.kind in ("train", "gemm", "cold", "landscape", "sweep")


def test_cold_targets_compare_the_right_runs():
    ok = {
        "keras-cold": {"wall_s": 60.0, "cpu_s": 50.0},
        "annjax-cold": {"wall_s": 10.0, "cpu_s": 8.0},
        "annjax-warm": {"wall_s": 4.0, "cpu_s": 3.0},
        "jax-cold": {"wall_s": 12.0, "cpu_s": 9.0},
    }
    rows = report.cold_rows(ok)
    assert rows["annjax-cold"]["keras_over_this"] == 6.0
    assert rows["annjax-cold"]["this_over_jax_cpu"] == 8.0 / 9.0

    def cold_targets():
        records = [{"impl": k, "status": "ok", **v} for k, v in ok.items()]
        return [
            t
            for t in report.check_targets({"cold": records})
            if t["workload"] == "cold"
        ]

    # Keras / annjax cold, Keras / annjax warm, annjax cold / JAX cold
    assert [t["ratio"] for t in cold_targets()] == [6.0, 15.0, 10.0 / 12.0]
    assert [t["met"] for t in cold_targets()] == [True, True, True]
    ok["annjax-cold"]["wall_s"] = 13.0  # slower than hand-written JAX, < 5x Keras
    assert [t["met"] for t in cold_targets()] == [False, True, False]


def test_sweep_plan_and_targets_compare_fit_many_with_the_loops():
    chosen = _names(run.plan(["sweep,sweep-cnn"], quick=False))
    sweepers = ["annjax-many", "annjax-loop", "flax-loop", "keras-loop"]
    assert chosen == {"sweep": sweepers, "sweep-cnn": sweepers}
    assert len(registry.WORKLOADS["sweep"].config["learning_rates"]) == 8
    assert registry.WORKLOADS["sweep-cnn"].config["seeds"] == 4
    times = {"annjax-many": 10.0, "annjax-loop": 12.0, "keras-loop": 40.0}
    records = [
        {
            "impl": k,
            "status": "ok",
            "cold_s": t,
            "cold_cpu_s": t / 2,
            "warm_s": t / 4,
            "warm_cpu_s": t / 8,
        }
        for k, t in times.items()
    ]
    rows = report.sweep_rows({r["impl"]: r for r in records})
    assert rows["annjax-loop"]["cold_s_over_many"] == 1.2
    assert rows["keras-loop"]["warm_cpu_s_over_many"] == 4.0
    targets = [
        t for t in report.check_targets({"sweep": records}) if t["workload"] == "sweep"
    ]
    # loop / many and Keras / many, cold then warm
    assert [(t["ratio"], t["met"]) for t in targets] == [
        (1.2, True),
        (4.0, True),
        (1.2, True),
        (4.0, True),
    ]


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
        if r["workload"] == "cold":  # one fresh process, timed whole
            assert r["wall_s"] > 0 and r["cpu_s"] > 0
            assert set(r["accuracy"]) == set(r["config"]["architectures"])
            assert all(0.0 <= a <= 1.0 for a in r["accuracy"].values())
            continue
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
    assert {t["workload"] for t in summary["targets"]} == {
        "w1",
        "w2",
        "track",
        "steps",
        "cold",
        "landscape",
        "sweep",
        "sweep-cnn",
    }
    cold = summary["workloads"]["cold"]["rows"]
    assert cold["jax-cold"]["this_over_jax"] == 1.0
    assert {"annjax-cold", "annjax-warm"} <= set(cold)
    # the same program and seeds: a warm cache changes nothing but the time
    by_impl = {r["impl"]: r for r in records if r["workload"] == "cold"}
    assert by_impl["annjax-cold"]["accuracy"] == by_impl["annjax-warm"]["accuracy"]

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


def test_landscape_rows_map_the_peer_grid_and_take_ratios():
    rng = np.random.default_rng(0)
    grid = rng.uniform(1, 2, (5, 5))
    # loss-landscapes' even columns hold the points j + 1 (it steps first)
    peer = np.vstack(
        [np.append(grid[i, 1:], 9.0) if i % 2 == 0 else grid[i] for i in range(5)]
    )
    mask, mapped = impl_landscape.torch_grid_as_annjax(peer)
    assert mask.sum() == 25 - 3  # the even columns' j = 0 has no peer point
    np.testing.assert_array_equal(mapped[mask], grid[mask])

    def rec(impl, slice_s, eig_s, values, lam):
        return {
            "impl": impl,
            "status": "ok",
            "slice": {"median_s": slice_s, "first_s": 2 * slice_s, "value": values},
            "top_eigenvalue": {"median_s": eig_s, "first_s": eig_s, "value": lam},
        }

    ok = {
        "annjax-landscape": rec("annjax-landscape", 0.1, 0.2, grid.tolist(), 10.0),
        "torch-landscape": rec("torch-landscape", 2.0, 1.0, peer.tolist(), 10.1),
    }
    rows = report.landscape_rows(ok)
    assert rows["slice"] == pytest.approx(20.0)
    assert rows["top_eigenvalue"] == pytest.approx(5.0)
    assert rows["agreement"] == 0.0
    assert rows["eigenvalue_difference"] == pytest.approx(0.1 / 10.1)


def test_floor_quick_run_prints_a_row_per_kind_and_refuses_unknown_kinds():
    script = [sys.executable, str(BENCH / "floor.py"), "--quick"]
    proc = subprocess.run(
        [*script, "--kinds", "mlp"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = [line for line in proc.stdout.splitlines() if line.startswith("| mlp |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 7  # kind, four times, two ratios
    for ratio in cells[5:]:
        assert all(float(r) > 0 for r in ratio.split(","))
    bad = subprocess.run(
        [*script, "--kinds", "mlp,gru"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "unknown kinds ['gru']" in bad.stderr
