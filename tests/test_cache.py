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

import flax.linen as flax_nn
import jax
import numpy as np
import pytest

import annjax as ann
from annjax._cache import MAX_BYTES, count_compiles

ROOT = Path(__file__).resolve().parents[1]

_REPORT = """
import json, jax, annjax
print(json.dumps({
    "dir": jax.config.jax_compilation_cache_dir,
    "min_time": jax.config.jax_persistent_cache_min_compile_time_secs,
    "min_size": jax.config.jax_persistent_cache_min_entry_size_bytes,
    "max_size": jax.config.jax_compilation_cache_max_size,
}))
"""

_FIT = """
import json
import numpy as np
import annjax as ann
from annjax._cache import MAX_BYTES, count_compiles
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
    assert report["max_size"] == MAX_BYTES == 1 << 30  # bounded: LRU eviction


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
    env = {"JAX_COMPILATION_CACHE_MAX_SIZE": "-1"}  # no bound, if they say so
    assert _run(_REPORT, env, tmp_path)["max_size"] == -1


def test_the_folder_stays_under_its_bound(tmp_path):
    # the epoch's entry alone is ~70 kB: a 60 kB bound keeps evicting, and
    # the runs still train (and the second process still reads what is left)
    folder = tmp_path / "xla"
    env = {"ANNJAX_CACHE_DIR": str(folder), "JAX_COMPILATION_CACHE_MAX_SIZE": "60000"}
    first = _run(_FIT, env, tmp_path)
    second = _run(_FIT, env, tmp_path)
    entries = list(folder.glob("*-cache"))
    assert entries and sum(f.stat().st_size for f in entries) <= 60000
    assert first["compiled"] > 0
    assert second["compiled"] + second["hits"] == first["compiled"]


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


# ------------------------------------------- equal models share compiled code


class _FlaxBlock(flax_nn.Module):
    """Dense → BatchNorm → ReLU → Dropout → Dense, driven by ``train``."""

    @flax_nn.compact
    def __call__(self, x, train: bool = False):
        x = flax_nn.Dense(6)(x)
        x = flax_nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = flax_nn.Dropout(0.3, deterministic=not train)(flax_nn.relu(x))
        return flax_nn.Dense(3)(x)


_BUILDERS = {
    "mlp": lambda: ann.mlp([6, 3], activation="tanh"),
    "serial": lambda: ann.serial(
        ann.dense(6),
        ann.batch_norm(),
        ann.activation("relu"),
        ann.dropout(0.3),
        ann.dense(3),
    ),
    "from_flax": lambda: ann.from_flax(_FlaxBlock(), train_arg="train"),
}


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    return x, rng.integers(0, 3, 40)


def _train_and_use(model, many: bool = False):
    """Fits ``model`` (or fit_many over 2 keys), then predicts and evaluates."""
    x, y = _data()
    kwargs = dict(
        val_data=(x[:8], y[:8]),
        epochs=2,
        batch_size=16,
        metrics=("accuracy",),
        optimizer=ann.adam(1e-3),
        progress=False,
    )
    if many:
        keys = jax.random.split(jax.random.key(1), 2)
        return ann.fit_many(model, (x, y), keys=keys, **kwargs)
    result = ann.fit(model, (x, y), key=jax.random.key(1), **kwargs)
    ann.predict(model, result.params, result.state, x)
    ann.evaluate(model, result.params, result.state, (x, y), metrics=("accuracy",))
    return result


@pytest.mark.parametrize("name", list(_BUILDERS))
@pytest.mark.parametrize("many", [False, True], ids=["fit", "fit_many"])
def test_equal_models_built_separately_compile_once(name, many):
    first_model, second_model = _BUILDERS[name](), _BUILDERS[name]()
    assert first_model is not second_model and first_model == second_model
    with count_compiles() as first:
        a = _train_and_use(first_model, many)
    with count_compiles() as second:
        b = _train_and_use(second_model, many)
    assert first.requests > 0  # the first compiled (or read the disk cache)
    assert second.requests == 0  # init, plan, epoch, predict, evaluate: all shared
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])


def test_a_different_model_compiles_its_own_epoch():
    _train_and_use(ann.mlp([6, 3]))
    with count_compiles() as c:
        _train_and_use(ann.mlp([7, 3]))  # another width: another program
    assert c.requests > 0


_RSS = """
import json, os
import numpy as np
import annjax as ann

def rss():
    with open("/proc/self/statm") as f:  # resident pages
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

rng = np.random.default_rng(0)
x = rng.standard_normal((40, 5)).astype(np.float32)
y = rng.integers(0, 3, 40)
marks = []
for i in range(50):
    model = ann.serial(ann.dense(6), ann.batch_norm(), ann.activation("relu"),
                       ann.dropout(0.3), ann.dense(3))
    r = ann.fit(model, (x, y), val_data=(x, y), epochs=1, batch_size=16,
                optimizer=ann.adam(1e-3), metrics=("accuracy",), progress=False)
    ann.predict(model, r.params, r.state, x)
    if i in (9, 49):
        marks.append(rss())
print(json.dumps({"growth": marks[1] - marks[0], "after_10": marks[0]}))
"""


def test_memory_stays_flat_over_50_fits_of_fresh_equal_models(tmp_path):
    # issue 12 measured 6-12 MB per new equal model before configs were shared
    report = _run(_RSS, {"ANNJAX_CACHE_DIR": "off"}, tmp_path)
    assert report["after_10"] > 0
    assert report["growth"] < 8 * 2**20  # 40 more fits: less than one old model
