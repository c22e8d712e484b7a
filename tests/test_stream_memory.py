"""Streamed epochs keep the host's memory flat as the data grows.

Causes of growth were measured in ``benchmarks/stream.py --flat 1,4`` (see
``docs/streaming.md``): a program compiled per chunk (a static slice of the
step keys), chunk buffers left in glibc's arenas, and a join of all the
chunks' logs at once (one program of as many operands as chunks). These
tests pin the fixes without timing or RSS thresholds: the number of
compilations does not depend on the number of chunks, chunk buffers are
mapped pages that a pool reuses only once nothing (a view, the device) holds
them, and the logs joined a few parts at a time equal those joined at once.
(The plan's host sort is pinned in ``tests/test_fit_stream.py``.)
"""

import mmap

import jax
import jax.monitoring
import numpy as np
import pytest
from conftest import compiles

import annjax as ann
from annjax.data import host


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
    eight, sixteen = compiles(lambda: _fit(128)), compiles(lambda: _fit(256))
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


def test_buffers_are_mapped_pages_reused_only_when_free():
    pool = host.Buffers()
    rows = host.Buffers.MIN_BYTES // (4 * 256)
    a = pool.take((rows, 256), np.float32)
    assert isinstance(_owner(a), mmap.mmap) and a.ctypes.data % mmap.PAGESIZE == 0
    b = pool.take((rows, 256), np.float32)  # a is alive: a second buffer
    view = a[1:]
    del a
    assert len(pool) == 2 and pool.take((rows, 256), np.float32) is not None
    assert len(pool) == 3  # a's view still holds its buffer
    del view, b
    pool.take((rows // 2, 256), np.float32)  # a smaller one reuses a free one
    assert len(pool) == 3
    assert not isinstance(_owner(pool.take((3, 2), np.float32)), mmap.mmap)


def test_a_buffer_on_the_device_is_never_overwritten():
    pool = host.Buffers()
    a = pool.take((1024, 256), np.float32)
    a[:] = 1.0
    on_device = jax.device_put(a)  # the CPU backend may use a's pages in place
    del a
    b = pool.take((1024, 256), np.float32)
    b[:] = 2.0
    assert float(on_device.sum()) == 1024 * 256


def test_chunks_kept_by_the_consumer_stay_intact():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1200, 784)).astype(np.float32)  # 1.6 MiB per chunk
    y = np.arange(1200) % 10
    idx = rng.permutation(1200)[:1024].reshape(4, 256)
    w = np.ones((4, 256), np.float32)
    chunks = list(host.HostArrays(X, y).chunks(idx, w, 2))  # all kept alive
    for c, part in zip(chunks, (idx[:2], idx[2:]), strict=True):
        np.testing.assert_array_equal(c.x, X[part])
        np.testing.assert_array_equal(c.y, y[part])


def test_release_freed_returns_nothing_and_can_repeat():
    assert host.release_freed() is None
    assert host.release_freed() is None


def test_gather_of_an_ndarray_takes_negative_indices_and_refuses_out_of_range():
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    idx = np.array([[9, -1], [0, -10]])
    np.testing.assert_array_equal(host.gather(x, idx, host.Buffers()), x[idx])
    for bad in ([10], [-11]):
        with pytest.raises(IndexError, match=r"expected indices in \[-10, 10\)"):
            host.gather(x, np.array(bad))


@pytest.mark.parametrize("count", [1, 7, 8, 9, 64, 75])
@pytest.mark.parametrize("axis", [0, 1])
def test_logs_joined_as_they_come_equal_all_joined_at_the_end(count, axis):
    # joining P parts at once compiles a program of P operands (host memory
    # grew with the data); joined JOIN at a time, the logs must not change
    from annjax.training.epoch import concat_logs
    from annjax.training.streamed import _Logs

    rng = np.random.default_rng(count)
    parts = []
    for i in range(count):
        steps = 3 if i < count - 1 else 2  # the last chunk shorter
        shape = (steps,) if axis == 0 else (2, steps)
        part = {"loss": rng.normal(size=shape), "stats": {"n": rng.normal(size=shape)}}
        if i % 3 == 1:  # the profiler's, only in the chunks that measure
            part["grad_norm/dense_0"] = rng.normal(size=(*shape[:-1], 1))
        parts.append(jax.tree_util.tree_map(jax.numpy.asarray, part))
    logs = _Logs(axis)
    for part in parts:
        logs.add(part)
    got, want = logs.joined(), concat_logs(parts, axis)
    assert set(got) == set(want)
    for name in want:
        for g, w in zip(
            jax.tree_util.tree_leaves(got[name]),
            jax.tree_util.tree_leaves(want[name]),
            strict=True,
        ):
            np.testing.assert_array_equal(g, w)
