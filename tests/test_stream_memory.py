"""Streamed epochs keep the host's memory flat as the data grows.

Two causes of growth were measured in ``benchmarks/stream.py --flat 1,4``
(see ``docs/streaming.md``): a program compiled per chunk (a static slice of
the step keys) and chunk buffers left in glibc's arenas. These tests pin the
fixes without timing or RSS thresholds: the number of compilations does not
depend on the number of chunks, and large chunk buffers are mapped pages.
"""

import collections
import mmap

import jax
import jax.monitoring
import numpy as np
import pytest

import annjax as ann
from annjax.data import host


def _compiles(fn) -> int:
    """Returns the backend compilations that ``fn()`` causes."""
    seen = collections.Counter()

    def listen(name, secs, **kwargs):
        del secs, kwargs
        seen[name] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return seen["/jax/core/compile/backend_compile_duration"]


def _fit(rows: int):
    rng = np.random.default_rng(rows)
    X = rng.normal(size=(rows, 5)).astype(np.float32)
    y = (np.arange(rows) % 3).astype(np.int32)
    return ann.fit(
        ann.mlp([8, 3], activation="relu"),
        ann.data.stream(X, y),
        epochs=1,
        batch_size=8,
        steps_per_call=2,
        progress=False,
        key=jax.random.key(0),
    )


def test_compilations_do_not_grow_with_the_chunks():
    _fit(64)  # 4 chunks: compiles the chunk's program
    eight, sixteen = _compiles(lambda: _fit(128)), _compiles(lambda: _fit(256))
    # a new n recompiles the plan and the epoch's end, never one per chunk
    assert eight == sixteen


@pytest.mark.parametrize("rows", [3, 700])  # 1 KiB and 2.1 MiB of rows
def test_gather_equals_numpy_indexing(tmp_path, rows):
    x = np.memmap(tmp_path / "x.f32", np.float32, "w+", shape=(rows, 784))
    x[:] = np.arange(rows * 784, dtype=np.float32).reshape(rows, 784)
    idx = np.random.default_rng(0).integers(0, rows, size=(2, 3, rows))
    out = host.gather(x, idx)  # duplicates, two leading axes
    np.testing.assert_array_equal(out, np.asarray(x)[idx])
    assert out.shape == (2, 3, rows, 784) and out.dtype == np.float32


def _owner(a):
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a.obj if isinstance(a, memoryview) else a


def test_large_buffers_are_mapped_pages_small_ones_are_not():
    big = host.empty((host.MAPPED_BYTES // 4,), np.float32)
    small = host.empty((3, 2), np.float32)
    assert isinstance(_owner(big), mmap.mmap)
    assert big.ctypes.data % mmap.PAGESIZE == 0
    assert not isinstance(_owner(small), mmap.mmap)
    big[:] = 1.0  # writable
    assert big.sum() == big.size


def test_release_freed_returns_nothing_and_can_repeat():
    assert host.release_freed() is None
    assert host.release_freed() is None
