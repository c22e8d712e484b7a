"""fit, fit_many, evaluate and predict on streamed data (issue 22): a memmap,
a generator and a grain loader train exactly as the same batches in memory,
through the same loop (guard, profiler, log_steps, early stopping, callbacks,
checkpoints)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann
from annjax.data.host import Padding
from annjax.training.epoch import draw_batches, host_order, plan_batches
from annjax.training.step import start_states

N, B = 203, 32  # 7 batches, the last one of 11 examples


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 8)).astype(np.float32)
    y = rng.integers(0, 3, N).astype(np.int32)
    return X, y


@pytest.fixture(scope="module")
def memmap(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("stream") / "x.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=data[0].shape)
    mm[:] = data[0]
    mm.flush()
    return np.memmap(path, dtype=np.float32, mode="r", shape=data[0].shape)


MODEL = ann.mlp([16, 3])


def _kw(**more):
    kw = dict(
        batch_size=B,
        epochs=3,
        key=jax.random.key(1),
        progress=False,
        optimizer=ann.adam(1e-2),
        metrics=("accuracy",),
    )
    return {**kw, **more}


def _same(a, b):
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, a, b))
    return all(leaves)


def _plan_order(X, y, epochs):
    """Yields the batches of fit's own plan for the key 1, the last one short."""
    key = jax.random.key(1)
    _, train_key = start_states(MODEL, ann.adam(1e-2), key, X.shape[1:])
    for epoch in range(epochs):
        plan = plan_batches(B, train_key, epoch, len(X))
        for i, w in zip(np.asarray(plan.idx), np.asarray(plan.weights), strict=True):
            real = i[w > 0]
            yield X[real], y[real]


def test_fit_of_a_memmap_equals_fit_in_memory(data, memmap):
    X, y = data
    ref = ann.fit(MODEL, (X, y), **_kw())
    got = ann.fit(MODEL, (memmap, y), **_kw())
    assert _same(ref.params, got.params)
    np.testing.assert_array_equal(ref.history["loss"], got.history["loss"])
    np.testing.assert_array_equal(ref.history["accuracy"], got.history["accuracy"])


def test_fit_of_a_generator_in_fits_order_equals_fit_in_memory(data):
    X, y = data
    ref = ann.fit(MODEL, (X, y), **_kw())
    got = ann.fit(MODEL, _plan_order(X, y, 3), **_kw(steps_per_epoch=7))
    assert _same(ref.params, got.params)
    np.testing.assert_array_equal(ref.history["accuracy"], got.history["accuracy"])


def test_fit_of_a_grain_loader_equals_its_batches_in_memory(data, memmap):
    pytest.importorskip("grain")
    y = data[1]
    seen = ann.data.grain_source(memmap, y, B, seed=5)
    batches = [c for e in range(3) for c in seen.batches(e)]
    replay = ((x[w > 0], t[w > 0]) for x, t, w in batches)
    ref = ann.fit(MODEL, replay, **_kw(steps_per_epoch=7))
    got = ann.fit(MODEL, ann.data.grain_source(memmap, y, B, seed=5), **_kw())
    assert _same(ref.params, got.params)


@pytest.mark.xla_defaults
def test_the_one_loop_features_on_streamed_data(data, memmap):
    X, y = data
    seen = []

    def callback(epoch, logs):
        seen.append(float(logs["loss"]))

    kw = _kw(
        val_data=(X[:50], y[:50]),
        log_steps=True,
        track_gradients=True,
        track_every=2,
        early_stopping=ann.EarlyStopping(patience=1, restore_best=True),
        callbacks=(callback,),
        steps_per_call=4,
        epochs=3,
    )
    ref = ann.fit(MODEL, (X, y), **kw)
    got = ann.fit(MODEL, ann.data.stream(memmap, y), **kw)
    assert set(ref.history) == set(got.history)
    for name in ref.history:
        np.testing.assert_array_equal(ref.history[name], got.history[name], name)
    assert _same(ref.params, got.params) and ref.best_epoch == got.best_epoch
    half = len(seen) // 2
    assert seen[:half] == seen[half:]  # the callback saw the same losses


@pytest.mark.xla_defaults
def test_a_model_with_state_and_dropout_streams_as_in_memory(data, memmap):
    X, y = data
    model = ann.serial(ann.dense(16), ann.batch_norm(), ann.dropout(0.2), ann.dense(3))
    ref = ann.fit(model, (X, y), **_kw(epochs=2))
    got = ann.fit(model, (memmap, y), **_kw(epochs=2))
    assert _same((ref.params, ref.state), (got.params, got.state))
    for name in ("train_eval_loss", "train_eval_accuracy"):
        np.testing.assert_array_equal(ref.history[name], got.history[name])


def test_a_custom_metric_sees_every_streamed_prediction_once(data):
    X, y = data

    def rows(y_true, y_pred):
        return y_true.shape[0] + 0.0 * y_pred.sum()

    got = ann.fit(
        MODEL, _plan_order(X, y, 1), **_kw(epochs=1, steps_per_epoch=7, metrics=(rows,))
    )
    assert got.history["rows"].tolist() == [N]


def test_fit_many_streams_host_arrays_like_arrays_in_memory(data, memmap):
    X, y = data
    keys = jax.random.split(jax.random.key(2), 3)
    kw = _kw(epochs=2)
    del kw["key"]
    ref = ann.fit_many(MODEL, (X, y), keys=keys, **kw)
    got = ann.fit_many(MODEL, (memmap, y), keys=keys, **kw)
    assert _same(ref.params, got.params)


def test_fit_many_refuses_batches_for_another_number_of_models(data):
    X, y = data
    per_model = [(np.stack([X[:B]] * 2), np.stack([y[:B]] * 2))] * 3
    keys = jax.random.split(jax.random.key(2), 3)
    with pytest.raises(ValueError, match="expected batches for 3 model"):
        ann.fit_many(
            MODEL, ann.data.stream(per_model, models=2), keys=keys, progress=False
        )
    good = ann.fit_many(
        MODEL,
        ann.data.stream([(np.stack([X[:B]] * 3), np.stack([y[:B]] * 3))] * 3, models=3),
        keys=keys,
        epochs=1,
        progress=False,
    )
    assert good.history["loss"].shape == (1, 3)


def test_resume_mid_run_is_bit_identical(data, memmap, tmp_path):
    pytest.importorskip("grain")
    y = data[1]
    sources = {
        "memmap": lambda: (memmap, y),
        "grain": lambda: ann.data.grain_source(memmap, y, B, seed=3),
    }
    for name, source in sources.items():
        path = tmp_path / f"{name}.ckpt"
        full = ann.fit(MODEL, source(), **_kw(epochs=4))
        ann.fit(MODEL, source(), **_kw(epochs=2, checkpoint=path))
        resumed = ann.fit(MODEL, source(), **_kw(epochs=2, resume=path))
        assert _same(full.params, resumed.params), name
        np.testing.assert_array_equal(full.history["loss"], resumed.history["loss"])


def test_a_source_that_cannot_be_restored_is_refused_for_resume(data, tmp_path):
    X, y = data
    path = tmp_path / "gen.ckpt"
    ann.fit(
        MODEL, _plan_order(X, y, 1), **_kw(epochs=1, steps_per_epoch=7, checkpoint=path)
    )
    with pytest.raises(ValueError, match="resume: expected a data source whose"):
        ann.fit(
            MODEL, _plan_order(X, y, 1), **_kw(epochs=1, steps_per_epoch=7, resume=path)
        )


def test_streamed_bad_input(data, memmap):
    X, y = data
    with pytest.raises(ValueError, match="steps_per_epoch: expected None for arrays"):
        ann.fit(MODEL, (X, y), **_kw(steps_per_epoch=3))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        ann.fit(MODEL, (b for b in [(X[:B], y[:B])]), **_kw())
    wrong = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("model",))
    with pytest.raises(ValueError, match="mesh: expected axes named 'data'"):
        ann.evaluate(MODEL, {}, {}, (memmap, y), mesh=wrong)
    with pytest.raises(ValueError, match="mesh: expected axes named 'data'"):
        ann.predict(MODEL, {}, {}, memmap, mesh=wrong)
    with pytest.raises(ValueError, match="steps_per_epoch=7 batches in epoch 0, got 2"):
        ann.fit(MODEL, iter([(X[:B], y[:B])] * 2), **_kw(steps_per_epoch=7))

    def loader():
        yield X[:B], y[:B]
        raise OSError("bad sector")

    with pytest.raises(OSError, match="bad sector") as info:
        ann.fit(MODEL, loader(), **_kw(steps_per_epoch=4))
    assert "epoch 0, step 1" in "".join(info.value.__notes__)


def test_evaluate_and_predict_stream_too(data, memmap):
    X, y = data
    result = ann.fit(MODEL, (X, y), **_kw(epochs=1))
    args = (MODEL, result.params, result.state)
    ref = ann.evaluate(*args, (X, y), metrics=("accuracy",), batch_size=50)
    assert ann.evaluate(*args, (memmap, y), metrics=("accuracy",), batch_size=50) == ref
    batches = [(X[i : i + 64], y[i : i + 64]) for i in range(0, N, 64)]
    got = ann.evaluate(*args, batches, metrics=("accuracy",))
    assert got == pytest.approx(ref, rel=1e-6)
    expected = np.asarray(ann.predict(*args, X, batch_size=50))
    np.testing.assert_array_equal(
        np.asarray(ann.predict(*args, memmap, batch_size=50)), expected
    )
    np.testing.assert_allclose(
        np.asarray(ann.predict(*args, batches)), expected, rtol=1e-6
    )
    # a mesh of one device streams as one device (8 devices: test_stream_mesh)
    one = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    kw = {"metrics": ("accuracy",), "batch_size": 50, "mesh": one}
    assert ann.evaluate(*args, (memmap, y), **kw) == ref
    # weights: an iterable's own w and class_weight, as (X, y, w) in memory
    w = np.linspace(0.0, 2.0, N).astype(np.float32)
    weighed = [(X[i : i + 64], y[i : i + 64], w[i : i + 64]) for i in range(0, N, 64)]
    kw = {"metrics": ("accuracy",), "class_weight": {0: 2.0, 1: 1.0, 2: 0.5}}
    ref = ann.evaluate(*args, (X, y, w), **kw)
    assert ann.evaluate(*args, weighed, **kw) == pytest.approx(ref, rel=1e-6)
    assert ann.evaluate(*args, weighed, metrics=("accuracy",)) == pytest.approx(
        ann.evaluate(*args, (X, y, w), metrics=("accuracy",)), rel=1e-6
    )
    assert ann.evaluate(*args, (memmap, y), **kw) == pytest.approx(
        ann.evaluate(*args, (X, y), **kw), rel=1e-6
    )
    with pytest.raises(ValueError, match="data w: expected a positive weight"):
        ann.evaluate(*args, [(X[:64], y[:64], 0 * w[:64])])


@pytest.mark.parametrize(
    "n,batch,seed,epoch",
    [
        (1, 4, 0, 0),
        (3, 8, 5, 0),
        (203, 32, 1, 2),
        (256, 32, 2, 0),
        (1000, 128, 3, 5),
        (4099, 7, 4, 1),
    ],
)
def test_the_host_sort_of_the_draw_is_the_device_plan(n, batch, seed, epoch):
    # a streamed epoch draws on the device and sorts on the host (less memory
    # than XLA's sort); its batches must be the on-device plan's, bit for bit
    key = jax.random.key(seed)
    words, keys = draw_batches(batch, key, epoch, n)
    ref = plan_batches(batch, key, epoch, n)
    idx = host_order(np.asarray(words), batch)
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(idx, np.asarray(ref.idx))
    pad = Padding(n, batch, models=()).rows(0, idx.shape[0])
    np.testing.assert_array_equal(pad, np.asarray(ref.weights))
    assert pad.dtype == np.asarray(ref.weights).dtype
    np.testing.assert_array_equal(
        jax.random.key_data(keys), jax.random.key_data(ref.keys)
    )


def test_words_with_ties_sort_stably_as_on_the_device():
    # 32-bit words collide for large n: ties must keep the index order, as
    # jnp.argsort (stable) keeps it
    words = np.random.default_rng(0).integers(0, 50, 3000).astype(np.uint32)
    expected = np.asarray(jnp.argsort(jnp.asarray(words)))
    np.testing.assert_array_equal(host_order(words, 3000)[0], expected)


def test_fit_many_host_orders_are_each_models_device_plan():
    keys = jax.random.split(jax.random.key(7), 3)
    n, batch = 203, 32
    words = jax.vmap(lambda k: draw_batches(batch, k, 1, n)[0])(keys)
    ref = jax.vmap(lambda k: plan_batches(batch, k, 1, n))(keys)
    idx = host_order(np.asarray(words), batch)
    assert idx.shape == (3, 7, batch)
    np.testing.assert_array_equal(idx, np.asarray(ref.idx))
    pad = Padding(n, batch, models=(3,)).rows(2, 7)
    np.testing.assert_array_equal(pad, np.asarray(ref.weights)[:, 2:7])


def test_padding_of_a_process_s_columns_is_the_plans():
    n, batch = 203, 32  # the last batch: 11 real slots of 32
    full = np.asarray(plan_batches(batch, jax.random.key(0), 0, n).weights)
    mine = slice(8, 24)  # the middle process of a mesh, say
    np.testing.assert_array_equal(Padding(n, batch, mine).rows(3, 7), full[3:7, mine])
