"""The epoch's program compiles in a background thread while the init runs.

``fit`` and ``fit_many`` hand the epoch's program, for the abstract shapes of
the train state, to one background thread (``loop.compile_ahead``) and then
compile and run the initialisation; the first epoch's call finds the program
in ``jit``'s cache. What is checked: which thread compiled what (from
``jax.monitoring`` events), that nothing compiles twice, that results are
those of the plain path, and that the thread stays out of the way when it
cannot help (thread-local JAX settings, a mesh, ``steps_per_call``) or fails.
"""

from __future__ import annotations

import contextlib
import threading
import warnings

import jax
import numpy as np
import pytest

import annjax as ann
from annjax.training import fitting as _fitting

_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def _compiles_by_thread():
    """Yields a list that receives the name of the thread of each compilation."""
    names: list[str] = []

    def on_duration(event: str, duration: float, **_) -> None:
        if event == _COMPILE:
            names.append(threading.current_thread().name)

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(on_duration)


def _data(n: int = 48, features: int = 5):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, features)).astype(np.float32)
    return x, rng.integers(0, 3, n)


def _fit(model, many: bool = False, **kwargs):
    x, y = _data()
    kwargs = (
        dict(
            val_data=(x[:8], y[:8]),
            epochs=2,
            batch_size=16,
            metrics=("accuracy",),
            optimizer=ann.adam(1e-3),
            progress=False,
        )
        | kwargs
    )
    if many:
        keys = jax.random.split(jax.random.key(3), 3)
        return ann.fit_many(model, (x, y), keys=keys, **kwargs)
    return ann.fit(model, (x, y), key=jax.random.key(3), **kwargs)


def _background(names: list[str]) -> int:
    return sum(name.startswith("annjax-compile") for name in names)


@pytest.mark.parametrize("many", [False, True], ids=["fit", "fit_many"])
def test_the_epoch_compiles_once_in_the_background(many, monkeypatch):
    _fit(ann.mlp([9, 3]), many)  # the small programs every fit shares
    # widths used by no other test: their programs are in no cache yet
    with _compiles_by_thread() as ahead:
        a = _fit(ann.mlp([13, 3], activation="tanh"), many)
    assert _background(ahead) == 1  # the epoch, and only it
    monkeypatch.setattr(_fitting, "compile_ahead", lambda engine, ts: None)
    with _compiles_by_thread() as plain:
        b = _fit(ann.mlp([17, 3], activation="tanh"), many)
    assert _background(plain) == 0
    assert len(ahead) == len(plain)  # the first epoch did not compile it again
    for name in ("loss", "val_loss", "val_accuracy"):
        assert np.all(np.isfinite(a.history[name]))
        assert np.shape(a.history[name]) == np.shape(b.history[name])


def test_results_equal_with_and_without_compiling_ahead(monkeypatch):
    model = ann.mlp([12, 3], activation="relu", dropout=0.1)
    a = _fit(model, epochs=3)
    monkeypatch.setattr(_fitting, "compile_ahead", lambda engine, ts: None)
    jax.clear_caches()
    b = _fit(model, epochs=3)
    for name in a.history:
        np.testing.assert_array_equal(a.history[name], b.history[name])
    for p, q in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(p, q)


def test_thread_local_settings_keep_the_thread_idle():
    # under enable_x64 the thread would trace with x64 off: a useless program
    # and a spurious float64 warning; it must do nothing instead
    x, y = _data()
    with (
        jax.enable_x64(True),
        _compiles_by_thread() as names,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error")
        result = ann.fit(
            ann.mlp([14, 3]),
            (x.astype(np.float64), y),
            epochs=1,
            batch_size=16,
            progress=False,
        )
    assert _background(names) == 0
    assert result.params["dense_0"]["w"].dtype == np.float64


def test_no_background_compile_for_steps_per_call_or_zero_epochs():
    with _compiles_by_thread() as names:
        _fit(ann.mlp([15, 3]), steps_per_call=2)
        _fit(ann.mlp([16, 3]), epochs=0)
    assert _background(names) == 0


def test_a_failure_in_the_background_is_raised_by_fit():
    def init(key, input_shape):
        return (3,), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        raise RuntimeError("this model cannot be traced")

    model = ann.Layer(init, apply, "broken")
    with pytest.raises(RuntimeError, match="cannot be traced"):
        _fit(model)
