"""Sources of streamed batches (annjax.data: host, iterables, stream, prefetch,
grain_source): the same batches as the on-device path, the checks, the errors."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

import annjax as ann
from annjax.data.host import HostArrays, gather
from annjax.data.iterables import Batches
from annjax.data.prefetch import Prefetch
from annjax.training.epoch import plan_batches


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(23, 3)).astype(np.float32)
    y = rng.integers(0, 4, size=23).astype(np.int32)
    return X, y


@pytest.fixture
def memmap(tmp_path, arrays):
    X = arrays[0]
    mm = np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    return np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="r", shape=X.shape)


# ------------------------------------------------------------------ host arrays


@pytest.mark.parametrize("k", [1, 2, 5])
def test_host_chunks_equal_the_device_paths_gather(memmap, arrays, k):
    X, y = arrays
    plan = plan_batches(5, jax.random.key(3), 2, len(X))  # the on-device plan
    chunks = list(HostArrays(memmap, y).chunks(plan.idx, plan.weights, k))
    assert [c.x.shape[0] for c in chunks] == [
        min(k, 5 - s) for s in range(0, 5, k)
    ]  # ceil(23 / 5) = 5 steps
    x = np.concatenate([c.x for c in chunks])
    np.testing.assert_array_equal(x, np.asarray(jax.numpy.asarray(X)[plan.idx]))
    np.testing.assert_array_equal(np.concatenate([c.y for c in chunks]), y[plan.idx])
    w = np.concatenate([c.w for c in chunks])
    np.testing.assert_array_equal(w, np.asarray(plan.weights))
    assert w.dtype == np.asarray(plan.weights).dtype and w.sum() == len(X)


def test_host_chunks_with_a_model_axis(arrays):
    X, y = arrays
    idx = np.stack([np.arange(20).reshape(4, 5), np.arange(20)[::-1].reshape(4, 5)])
    (chunk,) = HostArrays(X, y).chunks(idx, np.ones(idx.shape), 4)
    assert chunk.x.shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(chunk.x[1], X[idx[1]])


class _Recorder:
    """An array-like that records each read (an h5py dataset's constraints)."""

    def __init__(self, data):
        self.data, self.reads = data, []
        self.shape, self.dtype = data.shape, data.dtype

    def __len__(self):
        return len(self.data)

    def __getitem__(self, rows):
        self.reads.append(np.asarray(rows))
        return self.data[rows]


def test_gather_reads_each_row_once_in_increasing_order(arrays):
    X, _ = arrays
    rec = _Recorder(X)
    idx = np.array([[7, 2, 7], [0, 22, 2]])
    np.testing.assert_array_equal(gather(rec, idx), X[idx])
    (rows,) = rec.reads
    assert rows.tolist() == [0, 2, 7, 22]


def test_gather_reads_an_array_like_without_numpy_indexing_row_by_row(arrays):
    X, _ = arrays
    rows = [X[i] for i in range(len(X))]  # a list: no shape, no fancy indexing
    np.testing.assert_array_equal(gather(rows, np.array([3, 1, 3])), X[[3, 1, 3]])


def test_host_arrays_errors(arrays):
    X, y = arrays
    with pytest.raises(ValueError, match="same number of examples"):
        HostArrays(X, y[:-1])
    with pytest.raises(ValueError, match="at least one example"):
        HostArrays(X[:0], y[:0])
    with pytest.raises(TypeError, match="__getitem__"):
        HostArrays(iter(X), y)
    with pytest.raises(ValueError, match="steps_per_call"):
        next(HostArrays(X, y).chunks(np.zeros((2, 2), int), np.ones((2, 2)), 0))


# ------------------------------------------------------------------ the choice


def test_the_choice_is_by_type(arrays, memmap):
    X, y = arrays
    assert ann.data.source_of((X, y)) is None
    assert ann.data.source_of((jax.numpy.asarray(X), y)) is None
    assert ann.data.source_of(X) is None
    assert isinstance(ann.data.source_of((memmap, y)), HostArrays)
    assert isinstance(ann.data.source_of(memmap), HostArrays)
    assert isinstance(ann.data.source_of([(X, y), (X, y)]), Batches)
    gen = ((X, y) for _ in range(3))
    assert isinstance(ann.data.source_of(gen, steps_per_epoch=3), Batches)
    src = ann.data.stream(X, y)  # small arrays too, when wrapped
    assert isinstance(src, HostArrays) and ann.data.source_of(src) is src
    with pytest.raises(TypeError, match="steps_per_epoch and models"):
        ann.data.stream(X, y, steps_per_epoch=3)
    with pytest.raises(ValueError, match="a pair"):
        ann.data.source_of((memmap, y, y))


# ------------------------------------------------------------------ iterables


def _in_batches(X, y, size):
    return [(X[i : i + size], y[i : i + size]) for i in range(0, len(X), size)]


def test_batches_keep_the_source_order_and_pad_the_short_last_one(arrays):
    X, y = arrays
    src = Batches(_in_batches(X, y, 5))
    assert src.steps_per_epoch == 5
    chunks = list(src.chunks(0, 2))
    assert [c.x.shape for c in chunks] == [(2, 5, 3), (2, 5, 3), (1, 5, 3)]
    last = chunks[-1]
    np.testing.assert_array_equal(last.x[0, :3], X[20:])
    np.testing.assert_array_equal(last.x[0, 3:], X[20:22])  # real rows, weight 0
    assert last.w.tolist() == [[1, 1, 1, 0, 0]]
    x = np.concatenate([c.x for c in chunks]).reshape(-1, 3)
    np.testing.assert_array_equal(x[:23], X)


def test_batches_keep_given_weights(arrays):
    X, y = arrays
    w = np.linspace(0.1, 1, 4).astype(np.float32)
    (chunk,) = Batches([(X[:4], y[:4], w), (X[4:6], y[4:6], w[:2])]).chunks(0, 2)
    np.testing.assert_allclose(chunk.w, [w, [w[0], w[1], 0, 0]])


def test_a_generator_is_read_on_across_epochs(arrays):
    X, y = arrays

    def forever():
        i = 0
        while True:
            yield X[i : i + 2], y[i : i + 2]
            i += 2

    src = Batches(forever(), steps_per_epoch=3)
    first = np.concatenate([c.x for c in src.chunks(0, 3)])
    second = np.concatenate([c.x for c in src.chunks(1, 3)])
    np.testing.assert_array_equal(first.reshape(-1, 3), X[:6])
    np.testing.assert_array_equal(second.reshape(-1, 3), X[6:12])


def test_a_re_iterable_starts_again_every_epoch(arrays):
    X, y = arrays
    src = Batches(_in_batches(X, y, 8))
    a, b = ([c.x for c in src.chunks(e, 1)] for e in range(2))
    np.testing.assert_array_equal(np.stack(a), np.stack(b))


def test_the_first_batch_peeked_is_the_first_batch_trained(arrays):
    X, y = arrays
    src = Batches(iter(_in_batches(X, y, 4)), steps_per_epoch=5)
    x, _, w = src.example()
    assert x.shape == (4, 3) and w.tolist() == [1, 1, 1, 1]
    chunk = next(src.chunks(0, 5))
    np.testing.assert_array_equal(chunk.x.reshape(-1, 3), X[:20])


def test_steps_per_epoch_is_required_without_a_finite_length(arrays):
    X, y = arrays
    with pytest.raises(ValueError, match="steps_per_epoch"):
        Batches(b for b in _in_batches(X, y, 4))

    class Infinite:  # grain's MapDataset.repeat() reports sys.maxsize
        def __len__(self):
            return sys.maxsize

        def __iter__(self):
            while True:
                yield X[:2], y[:2]

    with pytest.raises(ValueError, match="finite length"):
        Batches(Infinite())
    assert Batches(Infinite(), steps_per_epoch=4).steps_per_epoch == 4
    with pytest.raises(ValueError, match="steps_per_epoch"):
        Batches(Infinite(), steps_per_epoch=0)
    with pytest.raises(TypeError, match="iterable of batches"):
        Batches(3)


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda X, y: (X[:4, :2], y[:4]), "batch 2 of epoch 0"),  # shape
        (lambda X, y: (X[:4].astype(np.float64), y[:4]), "batch 2 of epoch 0"),
        (lambda X, y: (X[:2], y[:2]), "only the last batch"),  # short, not last
        (lambda X, y: (X[:6], y[:6]), "only the last batch"),  # longer
        (lambda X, y: (X[:4], y[:3]), "same number of rows"),
    ],
)
def test_batches_that_change_shape_or_dtype_are_refused(arrays, bad, match):
    X, y = arrays
    batches = _in_batches(X, y, 4)[:4]
    batches[2] = bad(X, y)
    with pytest.raises(ValueError, match=match):
        list(Batches(batches).chunks(0, 2))


def test_not_a_batch_is_refused(arrays):
    X = arrays[0]
    with pytest.raises(TypeError, match="batch 0 of epoch 0: expected a tuple"):
        list(Batches([X, X]).chunks(0, 1))


def test_an_exhausted_iterator_is_a_clear_error_not_a_hang(arrays):
    X, y = arrays
    src = Batches(iter(_in_batches(X[:20], y[:20], 4)), steps_per_epoch=3)
    list(src.chunks(0, 3))  # 3 of the 5 batches
    with pytest.raises(ValueError, match="steps_per_epoch=3 batches in epoch 1, got 2"):
        list(src.chunks(1, 3))


def test_a_loader_that_raises_propagates_with_epoch_and_step(arrays):
    X, y = arrays

    def loader():
        yield X[:4], y[:4]
        yield X[4:8], y[4:8]
        raise OSError("disk gone")

    src = Batches(loader(), steps_per_epoch=3)
    with pytest.raises(OSError, match="disk gone") as info:
        list(src.chunks(0, 1))
    assert "epoch 0, step 2" in "".join(getattr(info.value, "__notes__", []))


def test_fit_many_batches_carry_the_number_of_models(arrays):
    X, y = arrays
    per_model = [(np.stack([X[:4]] * 3), np.stack([y[:4]] * 3))] * 2
    (chunk,) = Batches(per_model, models=3).chunks(0, 2)
    assert chunk.x.shape == (3, 2, 4, 3) and chunk.w.shape == (3, 2, 4)
    with pytest.raises(ValueError, match="leading model axis of 2 models"):
        list(Batches(per_model, models=2).chunks(0, 2))


# ------------------------------------------------------------------ checkpoints


def test_which_sources_can_be_checkpointed(arrays):
    X, y = arrays
    assert HostArrays(X, y).checkpointable
    assert Batches(_in_batches(X, y, 4)).checkpointable
    gen = Batches((b for b in _in_batches(X, y, 4)), steps_per_epoch=2)
    assert not gen.checkpointable
    with pytest.raises(ValueError, match="resume: expected a data source whose"):
        gen.require_checkpointable()
    with pytest.raises(ValueError, match="restart"):
        gen.set_state(None)


def test_grain_state_resumes_the_stream_exactly(arrays):
    pytest.importorskip("grain")
    X, y = arrays
    src = ann.data.grain_source(X, y, 5, seed=2)
    list(src.chunks(0, 2))
    state = src.get_state()
    expected = [c.x for c in src.chunks(1, 2)]
    again = ann.data.grain_source(X, y, 5, seed=2)
    again.set_state(state)
    got = [c.x for c in again.chunks(1, 2)]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_grain_source_reads_every_example_once_per_epoch(arrays, memmap):
    pytest.importorskip("grain")
    X, y = arrays
    src = ann.data.grain_source(memmap, y, 5, seed=0)
    assert src.steps_per_epoch == 5
    orders = []
    for epoch in range(2):
        chunk = next(src.chunks(epoch, 5))
        real = chunk.w.reshape(-1) > 0
        rows = chunk.x.reshape(-1, 3)[real]
        order = [int(np.flatnonzero((r == X).all(1))[0]) for r in rows]
        assert sorted(order) == list(range(23))
        np.testing.assert_array_equal(chunk.y.reshape(-1)[real], y[order])
        orders.append(order)
    assert orders[0] != orders[1]  # reshuffled every epoch


@pytest.mark.parametrize("shuffle", [True, False])
def test_grain_source_order_is_one_numpy_permutation_per_epoch(memmap, arrays, shuffle):
    pytest.importorskip("grain")
    X, y = arrays
    src = ann.data.grain_source(memmap, y, 5, seed=7, shuffle=shuffle)
    for epoch in range(3):
        order = (
            np.random.default_rng([7, epoch]).permutation(23)
            if shuffle
            else np.arange(23)
        )
        for step, (x, t, w) in enumerate(src.batches(epoch)):
            rows = np.sort(order[5 * step : 5 * step + 5])  # read front to back
            real = w > 0
            np.testing.assert_array_equal(x[real], X[rows])
            np.testing.assert_array_equal(t[real], y[rows])
            assert real.sum() == len(rows)


def _double(x, y):
    return 2 * x, y


def test_grain_workers_transform_each_batch_of_the_same_order(memmap, arrays):
    pytest.importorskip("grain")
    y = arrays[1]
    ref = ann.data.grain_source(memmap, y, 5, seed=1)
    src = ann.data.grain_source(memmap, y, 5, seed=1, transform=_double, workers=1)
    for epoch in range(2):
        for (x, t, w), (x0, t0, w0) in zip(
            src.batches(epoch), ref.batches(epoch), strict=True
        ):
            np.testing.assert_array_equal(x, 2 * x0)
            np.testing.assert_array_equal(t, t0)
            np.testing.assert_array_equal(w, w0)


def test_grain_rows_reopen_a_memmap_instead_of_copying_it(memmap, arrays):
    from annjax.data.grain_source import _Rows

    rows = _Rows((memmap,), None)
    blob = pickle.dumps(rows)
    assert len(blob) < memmap.nbytes  # the file's name, not its data
    (x,) = pickle.loads(blob)(np.array([4, 1]))
    np.testing.assert_array_equal(x, arrays[0][[4, 1]])


def test_importing_annjax_imports_no_grain_and_starts_no_thread():
    code = (
        "import sys, threading; n = threading.active_count(); import annjax; "
        "assert 'grain' not in sys.modules; assert threading.active_count() == n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ prefetch


def test_prefetch_keeps_the_order_and_transfers_each_chunk(arrays):
    X, y = arrays
    chunks = HostArrays(X, y).chunks(np.arange(20).reshape(4, 5), np.ones((4, 5)), 1)
    with Prefetch(chunks) as items:
        got = list(items)
    assert all(isinstance(c.x, jax.Array) for c in got)
    np.testing.assert_array_equal(
        np.concatenate([c.x for c in got]).reshape(-1, 3), X[:20]
    )


def test_prefetch_reraises_the_producers_exception():
    def items():
        yield 1
        raise KeyError("lost")

    with Prefetch(items(), put=lambda v: v) as it:
        assert next(it) == 1
        with pytest.raises(KeyError, match="lost"):
            next(it)
        with pytest.raises(StopIteration):
            next(it)


def test_prefetch_stays_a_bounded_number_of_chunks_ahead_and_closes():
    made = []

    def items():
        for i in range(100):
            made.append(i)
            yield i

    it = Prefetch(items(), put=lambda v: v, depth=2)
    assert next(it) == 0
    time.sleep(0.3)  # let the producer run as far as the queue allows
    assert len(made) <= 4  # 1 taken + 2 queued + 1 waiting to be queued
    it.close()
    assert not any(
        t.name == "annjax-prefetch" and t.is_alive() for t in threading.enumerate()
    )
    with pytest.raises(ValueError, match="depth"):
        Prefetch(iter(()), depth=0)
