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
import time
from pathlib import Path

import flax.linen as flax_nn
import jax
import numpy as np
import pytest

import annjax as ann
from annjax._cache import MAX_BYTES, count_compiles, max_bytes, prune

ROOT = Path(__file__).resolve().parents[1]

_REPORT = """
import json, jax, annjax, annjax._cache
annjax.enable_compilation_cache()
print(json.dumps({
    "dir": jax.config.jax_compilation_cache_dir,
    "min_time": jax.config.jax_persistent_cache_min_compile_time_secs,
    "min_size": jax.config.jax_persistent_cache_min_entry_size_bytes,
    "max_size": jax.config.jax_compilation_cache_max_size,
    "bound": annjax._cache.max_bytes(),
}))
"""

_FIT = """
import json
import numpy as np
import annjax as ann
from annjax._cache import MAX_BYTES, count_compiles, max_bytes, prune
ann.enable_compilation_cache()
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
    assert report["bound"] == MAX_BYTES == 1 << 30  # pruned by annjax (daily)
    assert report["max_size"] == -1  # JAX's own bound scans at every write: off


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


@pytest.mark.parametrize(
    "value, bound", [("off", None), ("0", None), ("512", 512 << 20)]
)
def test_the_bound_from_the_environment(monkeypatch, value, bound):
    # max_bytes reads the variable at each call: no fresh process needed
    monkeypatch.setenv("ANNJAX_CACHE_MAX_MB", value)
    assert max_bytes() == bound


def _entries(folder: Path, ages_days: list[float], now: float, size: int = 1000):
    """Writes one fake entry per age (days since last use); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, age in enumerate(ages_days):
        path = folder / f"jit_f{i}-{i:064x}-cache"
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age * 86400, now - age * 86400))
        paths.append(path)
    return paths


def test_prune_deletes_the_least_recently_used_down_to_90_percent(tmp_path):
    now = 1.9e9
    paths = _entries(tmp_path, [9, 1, 5, 3, 7, 2, 8, 4, 6, 0], now)  # 10 kB
    assert prune(tmp_path, 8000, now=now) == 3  # 10 kB → 7 kB ≤ 0.9 × 8 kB
    gone = {p.name for p in paths if not p.exists()}
    assert gone == {paths[i].name for i in (0, 6, 4)}  # 9, 8 and 7 days old
    assert (tmp_path / ".annjax-pruned").stat().st_mtime == now


def test_prune_leaves_a_folder_under_its_bound(tmp_path):
    paths = _entries(tmp_path, [3, 2, 1], now=1.9e9)
    assert prune(tmp_path, 3000, now=1.9e9) == 0
    assert all(p.exists() for p in paths)


def test_prune_scans_at_most_once_per_period(tmp_path):
    now = 1.9e9
    paths = _entries(tmp_path, [3, 2, 1], now)
    assert prune(tmp_path, 10_000, now=now) == 0  # under: the scan is marked
    big = tmp_path / "jit_big-cache"
    big.write_bytes(b"x" * 20_000)  # now over the bound, and the newest
    os.utime(big, (now, now))
    assert prune(tmp_path, 10_000, now=now + 3600) == 0  # within a day: no scan
    assert prune(tmp_path, 10_000, now=now + 86401) == 4  # a day later: pruned
    assert not any(p.exists() for p in [*paths, big])


def test_a_bad_bound_warns_and_keeps_the_default(monkeypatch):
    monkeypatch.setenv("ANNJAX_CACHE_MAX_MB", "lots")
    with pytest.warns(UserWarning, match="not a number of megabytes"):
        assert max_bytes() == MAX_BYTES


@pytest.mark.parametrize("value", ["inf", "1e400", "-inf"])
def test_an_infinite_bound_from_the_environment_means_no_bound(monkeypatch, value):
    # issue 21: "inf" and "1e400" raised OverflowError at import
    monkeypatch.setenv("ANNJAX_CACHE_MAX_MB", value)
    assert max_bytes() is None


def test_the_bound_argument(monkeypatch):
    monkeypatch.delenv("ANNJAX_CACHE_MAX_MB", raising=False)
    assert max_bytes(2) == 2 << 20
    assert max_bytes(float("inf")) is None
    assert max_bytes(1e308) == int(1e308) << 20
    assert max_bytes(None) is None
    with pytest.raises(ValueError, match="max_mb: expected a number of megabytes"):
        max_bytes(float("nan"))
    with pytest.raises(ValueError, match="max_mb: expected a number of megabytes"):
        ann.enable_compilation_cache(max_mb="lots")


_IMPORT = """
import json, os, threading, jax
before = dict(jax.config.values)
threads = threading.active_count()
import annjax
print(json.dumps({"same": dict(jax.config.values) == before,
                  "threads": threading.active_count() - threads,
                  "files": os.listdir(os.environ["HOME"])}))
"""


def test_importing_annjax_changes_no_jax_setting_and_touches_no_file(tmp_path):
    env = {"ANNJAX_CACHE_DIR": str(tmp_path / "xla"), "ANNJAX_CACHE_MAX_MB": "inf"}
    report = _run(_IMPORT, env, tmp_path)
    assert report == {"same": True, "threads": 0, "files": []}
    assert not (tmp_path / "xla").exists()


def test_the_folder_is_pruned_when_the_cache_is_enabled(tmp_path):
    folder = tmp_path / "xla"
    paths = _entries(folder, [5, 4, 3, 2, 1], time.time(), size=30_000)
    env = {"ANNJAX_CACHE_DIR": str(folder), "ANNJAX_CACHE_MAX_MB": "0.1"}  # 105 kB
    assert _run(_REPORT, env, tmp_path)["dir"] == str(folder)
    kept = [p.exists() for p in paths]
    assert kept == [False, False, True, True, True]  # 150 kB → 90 kB


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
import ctypes, gc, json, os
import numpy as np
import annjax as ann

def rss():
    # what the process holds, not what glibc keeps cached for reuse: freed
    # arenas are handed back first (without it the mark drifts by 10-20 MB
    # from run to run with no leak at all)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
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


_RSS_LOSS = """
import ctypes, gc, json, os
import numpy as np
import annjax as ann

def rss():
    # what the process holds, not what glibc keeps cached for reuse: freed
    # arenas are handed back first (without it the mark drifts by 10-20 MB
    # from run to run with no leak at all)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:  # resident pages
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

rng = np.random.default_rng(0)
x = rng.standard_normal((40, 4)).astype(np.float32)
y = (x[:, 0] > 0).astype(np.int32)
marks = []
for i in range(12):
    def loss(y_true, y_pred, reduction="mean"):  # a fresh object, as a cell re-run
        return ann.losses.softmax_cross_entropy(y_true, y_pred, reduction=reduction)
    ann.fit(ann.mlp([4, 2]), (x, y), loss=loss, epochs=1, progress=False)
    del loss
    if i in (3, 11):
        marks.append(rss())
print(json.dumps({"growth": marks[1] - marks[0]}))
"""


def test_memory_stays_flat_over_fits_with_a_fresh_loss_function(tmp_path):
    # issue 21 measured about 5 MB per fit (the programs compiled for each
    # loss were kept, with the loss): the 8 fits measured would grow by some
    # 40 MB
    report = _run(_RSS_LOSS, {"ANNJAX_CACHE_DIR": "off"}, tmp_path)
    assert report["growth"] < 15 * 2**20


def test_the_loss_and_metrics_are_freed_after_fit_returns():
    import gc
    import weakref

    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)

    def loss(y_true, y_pred, reduction="mean"):
        return ann.losses.softmax_cross_entropy(y_true, y_pred, reduction=reduction)

    def hits(y_true, y_pred):
        return ann.metrics.accuracy(y_true, y_pred)

    refs = [weakref.ref(loss), weakref.ref(hits)]
    r = ann.fit(
        ann.mlp([4, 2]),
        (x, y),
        val_data=(x, y),
        loss=loss,
        metrics=(hits,),
        epochs=1,
        progress=False,
    )
    assert r.history["val_hits"].shape == (1,)
    del loss, hits
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


_SWAPPED = """
import numpy as np, annjax as ann
ann.enable_compilation_cache()
x = np.random.default_rng(0).normal(size=(20, 4)).astype("f4")
ann.fit(ann.mlp([8, 2]), (x, (x[:, 0] > 0).astype("i4")), epochs=1, progress=False)
print("{}")
"""


def test_swapped_cache_entries_fail_with_the_fix_named(tmp_path):
    # JAX does not check that an entry belongs to the program it is read for:
    # two entries swapped fail as its bare AssertionError; annjax names the fix
    folder = tmp_path / "xla"
    _run(_SWAPPED, {"ANNJAX_CACHE_DIR": str(folder)}, tmp_path)
    entries = sorted(folder.glob("*-cache"), key=lambda p: p.stat().st_size)
    small, large = entries[0], entries[-1]
    data = small.read_bytes(), large.read_bytes()
    small.write_bytes(data[1])
    large.write_bytes(data[0])
    full = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    full.update(
        {"HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    )
    full["ANNJAX_CACHE_DIR"] = str(folder)
    out = subprocess.run(
        [sys.executable, "-c", _SWAPPED], env=full, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "AssertionError" in out.stderr
    assert f"rm -rf {folder}" in out.stderr
