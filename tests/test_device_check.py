"""benchmarks/device_check.py: runs on the default device and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.py"


def test_quick_run_checks_against_the_cpu_and_writes_json(tmp_path):
    out = tmp_path / "device.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.startswith("device: ")
    report = json.loads(out.read_text())
    assert set(report["checks"]) == {
        "dense",
        "batch_norm",
        "residual",
        "softmax_cross_entropy",
    }
    assert all(c["ok"] for c in report["checks"].values())
    assert report["w1"]["config"]["sizes"] == [784, 256, 256, 10]
    assert report["w1"]["samples_per_s"] > 0
    assert report["matmul"]["flop_per_s"] > 0
    assert report["device"] and report["platform"]
