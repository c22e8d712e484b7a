"""The persistent compilation cache (annjax/_cache.py), each case in a fresh process.

JAX reads its cache settings once per process, so every case starts
``python -c`` with its own environment; what is checked is what the process
reports (its cache folder, thresholds, and the compilations it did, counted
from ``jax.monitoring`` events: never timings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax

from annjax._cache import count_compiles

ROOT = Path(__file__).resolve().parents[1]

_REPORT = """
import json, jax, annjax
print(json.dumps({
    "dir": jax.config.jax_compilation_cache_dir,
    "min_time": jax.config.jax_persistent_cache_min_compile_time_secs,
    "min_size": jax.config.jax_persistent_cache_min_entry_size_bytes,
}))
"""

_FIT = """
import json
import numpy as np
import annjax as ann
from annjax._cache import count_compiles
rng = np.random.default_rng(0)
x = rng.standard_normal((60, 5)).astype(np.float32)
y = rng.integers(0, 3, 60)
with count_compiles() as c:
    r = ann.fit(ann.mlp([8, 3]), (x[:40], y[:40]), val_data=(x[40:], y[40:]),
                epochs=2, batch_size=16, metrics=("accuracy",), progress=False)
    ann.predict(ann.mlp([8, 3]), r.params, r.state, x)
print(json.dumps({"compiled": c.compiled, "hits": c.hits}))
"""


def _run(code: str, env: dict[str, str | None], home: Path) -> dict:
    """Returns the JSON printed by ``code`` run in a fresh process with ``env``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    full.pop("ANNJAX_CACHE_DIR", None)
    full.pop("XDG_CACHE_HOME", None)
    full.update({"HOME": str(home), "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"})
    for name, value in env.items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    out = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_folder_under_home_and_every_entry_kept(tmp_path):
    report = _run(_REPORT, {}, tmp_path)
    assert report["dir"] == str(tmp_path / ".cache" / "annjax" / "xla")
    assert (tmp_path / ".cache" / "annjax" / "xla").is_dir()
    assert report["min_time"] == 0.0
    assert report["min_size"] == -1


def test_annjax_cache_dir_and_off(tmp_path):
    folder = tmp_path / "mine"
    assert _run(_REPORT, {"ANNJAX_CACHE_DIR": str(folder)}, tmp_path)["dir"] == str(
        folder
    )
    assert folder.is_dir()
    off = _run(_REPORT, {"ANNJAX_CACHE_DIR": "off"}, tmp_path)
    assert off["dir"] is None
    assert off["min_time"] == 1.0  # JAX's defaults, untouched
    assert not (tmp_path / ".cache" / "annjax").exists()


def test_a_cache_the_user_configured_wins(tmp_path):
    theirs = str(tmp_path / "theirs")
    env = {"JAX_COMPILATION_CACHE_DIR": theirs, "ANNJAX_CACHE_DIR": "/nowhere"}
    report = _run(_REPORT, env, tmp_path)
    assert report["dir"] == theirs
    assert report["min_time"] == 1.0  # their thresholds too
    env = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "2.5"}
    assert _run(_REPORT, env, tmp_path)["min_time"] == 2.5


def test_second_process_compiles_nothing(tmp_path):
    env = {"ANNJAX_CACHE_DIR": str(tmp_path / "xla")}
    first = _run(_FIT, env, tmp_path)
    second = _run(_FIT, env, tmp_path)
    assert first["compiled"] > 0 and first["hits"] == 0
    assert second == {"compiled": 0, "hits": first["compiled"]}


def test_without_the_cache_the_second_process_compiles_again(tmp_path):
    env = {"ANNJAX_CACHE_DIR": "off"}
    first, second = _run(_FIT, env, tmp_path), _run(_FIT, env, tmp_path)
    assert second["compiled"] == first["compiled"] > 0
    assert second["hits"] == 0


def test_count_compiles_counts_a_new_program_once():
    f = jax.jit(lambda a: a * 3.0 + 1.0)
    with count_compiles() as c:
        f(jax.numpy.ones(7))
        f(jax.numpy.ones(7))  # in memory: no new request
    assert c.requests == c.compiled + c.hits >= 1
    with count_compiles() as again:
        f(jax.numpy.ones(7))
    assert again.requests == 0
