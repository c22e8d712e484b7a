"""fit_many(vectorize=...): every way of running the models equals separate fits."""

import jax
import numpy as np
import pytest
from conftest import compiles, tiny_split

import annjax as ann
from annjax.training.vectorize import (
    IN_PROGRAM,
    WAYS,
    choose,
    models_of,
    over_models,
    stacked,
)

# Equal up to float reassociation: batched kernels may sum in another order.
TOL = {"rtol": 1e-4, "atol": 1e-5}
KEYS = jax.random.split(jax.random.key(3), 2)

# an MLP with dropout and batch norm (random masks, state) and a tiny CNN
MLP = ann.serial(
    ann.dense(8), ann.batch_norm(), ann.activation("relu"), ann.dropout(0.2),
    ann.dense(3),
)  # fmt: skip
CNN = ann.serial(
    ann.conv2d(2, 3), ann.batch_norm(), ann.activation("relu"), ann.max_pool(2),
    ann.flatten(), ann.dense(3),
)  # fmt: skip


def _data(image: bool):
    return tiny_split((6, 6, 1) if image else (4,))


# SGD, not Adam: Adam turns the float noise of a gradient that is zero in
# exact arithmetic (a bias just before batch norm) into full-size steps.
ARGS = {
    "optimizer": ann.sgd(0.1, momentum=0.9),
    "epochs": 2,
    "batch_size": 8,
    "metrics": ("accuracy",),
    "progress": False,
}


def _assert_same(alone, picked):
    for a, b in zip(
        jax.tree_util.tree_leaves((alone.params, alone.state)),
        jax.tree_util.tree_leaves((picked.params, picked.state)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, **TOL)
    for name in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(alone.history[name], picked.history[name], **TOL)


def _assert_identical(a, b):
    """Params, state and every history entry of two results, bit for bit."""
    for x, y in zip(
        jax.tree_util.tree_leaves((a.params, a.state)),
        jax.tree_util.tree_leaves((b.params, b.state)),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
    assert set(a.history) == set(b.history)
    for name, values in a.history.items():
        np.testing.assert_array_equal(b.history[name], values, err_msg=name)


@pytest.fixture(scope="module")
def separate_fits():
    """Returns model name → the two separate fits, each trained once per module."""
    fits: dict = {}

    def get(model: str) -> list:
        if model not in fits:
            train, val = _data(model == "cnn")
            net = CNN if model == "cnn" else MLP
            fits[model] = []
            for i, scale in enumerate([1.0, 0.5]):
                args = {**ARGS, "optimizer": ann.sgd(0.1 * scale, momentum=0.9)}
                alone = ann.fit(net, train, val_data=val, key=KEYS[i], **args)
                fits[model].append(alone)
        return fits[model]

    return get


# every way on the MLP; the CNN (compiled slowly on the CPU) in the way
# "auto" picks for it there, and vmap, the one it avoids
@pytest.mark.parametrize(
    ("model", "how"),
    [*(("mlp", how) for how in WAYS), ("cnn", "unroll"), ("cnn", "vmap")],
)
def test_every_way_equals_separate_fits(separate_fits, model, how):
    train, val = _data(model == "cnn")
    net = CNN if model == "cnn" else MLP
    many = ann.fit_many(
        net, train, val_data=val, keys=KEYS, lr_scale=[1.0, 0.5], vectorize=how,
        **ARGS,
    )  # fmt: skip
    for i, alone in enumerate(separate_fits(model)):
        _assert_same(alone, many.select(i))


def test_auto_runs_a_convolution_sequentially_on_the_cpu_and_vmaps_the_rest():
    cpu = jax.devices()[0].platform == "cpu"
    assert choose("auto", CNN, (6, 6, 1), None) == ("sequential" if cpu else "vmap")
    # streamed data is one pass for all the models: one program
    assert choose("auto", CNN, (6, 6, 1), None, True) == ("unroll" if cpu else "vmap")
    assert choose("auto", MLP, (4,), None) == "vmap"
    assert choose("map", CNN, (6, 6, 1), None) == "map"


def test_over_models_passes_shared_and_tuple_arguments():
    w = np.arange(6.0, dtype=np.float32).reshape(3, 2)

    def f(w, x, pair):
        return w * x + pair[0], pair[1]

    pair = (np.ones(3, np.float32), np.float32(5.0))
    ref = jax.vmap(f, in_axes=(0, None, (0, None)))(w, np.float32(2.0), pair)
    for how in IN_PROGRAM:
        out = jax.jit(over_models(f, (0, None, (0, None)), how))(w, 2.0, pair)
        np.testing.assert_allclose(out[0], ref[0])
        np.testing.assert_allclose(out[1], [5.0, 5.0, 5.0])


def test_an_unknown_way_is_refused_before_anything_compiles():
    with pytest.raises(ValueError, match="vectorize"):
        ann.fit_many(MLP, _data(False)[0], keys=KEYS, vectorize="pmap", **ARGS)
    x, y = _data(False)[0]
    stream = ann.data.stream([(x[:8], y[:8])] * 2)
    with pytest.raises(ValueError, match=r"vectorize: expected a way .* streamed"):
        ann.fit_many(MLP, stream, keys=KEYS, vectorize="sequential", **ARGS)


def test_early_stopping_acts_per_model_in_every_way():
    train, val = _data(False)
    runs = {
        how: ann.fit_many(
            ann.mlp([8, 3]),
            train,
            val_data=val,
            keys=KEYS,
            lr_scale=[1.0, 1e-6],  # the second barely moves: it stops first
            early_stopping=ann.EarlyStopping(patience=1, min_delta=1e-3),
            vectorize=how,
            **{**ARGS, "epochs": 6},
        )
        for how in WAYS
    }
    for result in runs.values():
        np.testing.assert_array_equal(result.model_epochs, runs["vmap"].model_epochs)
        assert result.stop_reason == runs["vmap"].stop_reason
    assert runs["vmap"].stop_reason[1].startswith("early_stopping")


def test_models_of_and_stacked_split_and_stack_keys_and_arrays():
    tree = {
        "k": jax.random.split(jax.random.key(1), 3),
        "w": np.arange(6.0).reshape(3, 2),
    }
    parts = models_of(tree, 3)
    np.testing.assert_array_equal(parts[1]["w"], [2.0, 3.0])
    np.testing.assert_array_equal(
        jax.random.key_data(parts[2]["k"]), jax.random.key_data(tree["k"][2])
    )
    back = stacked(parts)
    np.testing.assert_array_equal(back["w"], tree["w"])
    np.testing.assert_array_equal(
        jax.random.key_data(back["k"]), jax.random.key_data(tree["k"])
    )


def test_sequential_runs_the_one_program_of_fit():
    # fit_many(vectorize="sequential") compiles fit's own epoch: a fit of the
    # same model afterwards compiles nothing at all
    train, val = _data(False)
    args = {**ARGS, "optimizer": ann.sgd(0.05)}
    net = ann.mlp([5, 3])
    ann.fit_many(net, train, val_data=val, keys=KEYS, vectorize="sequential", **args)
    key = KEYS[0]  # indexing compiles: outside the count
    assert compiles(lambda: ann.fit(net, train, val_data=val, key=key, **args)) == 0


def test_sequential_guards_each_model_and_resumes(tmp_path):
    # model 1's rate overflows: it stops alone, with the params of its last
    # finite epoch, as under vmap; a resumed sequential run equals a straight one
    train, val = _data(False)
    kw = {**ARGS, "optimizer": ann.sgd(0.1), "val_data": val, "keys": KEYS}
    kw["lr_scale"] = [1.0, 1e9]
    runs = {
        how: ann.fit_many(MLP, train, vectorize=how, **kw)
        for how in ("vmap", "sequential")
    }
    np.testing.assert_array_equal(
        runs["sequential"].model_epochs, runs["vmap"].model_epochs
    )
    assert runs["sequential"].stop_reason == runs["vmap"].stop_reason
    assert runs["sequential"].stop_reason[1].startswith("non_finite")
    _assert_same(runs["vmap"].select(0), runs["sequential"].select(0))
    kw["lr_scale"] = [1.0, 0.5]
    straight = ann.fit_many(MLP, train, vectorize="sequential", **{**kw, "epochs": 3})
    path = tmp_path / "many.ckpt"
    ann.fit_many(
        MLP, train, vectorize="sequential", checkpoint=path, **{**kw, "epochs": 1}
    )
    resumed = ann.fit_many(MLP, train, vectorize="sequential", resume=path, **kw)
    assert resumed.epochs == 3
    _assert_identical(straight, resumed)


def test_sequential_models_on_threads_equal_separate_fits_bit_for_bit():
    # vectorize="sequential" runs fit's own program per model, several models
    # at once on threads: each model is its fit exactly, not within a tolerance
    train, val = _data(True)
    keys = jax.random.split(jax.random.key(5), 3)
    many = ann.fit_many(
        CNN, train, val_data=val, keys=keys, vectorize="sequential", **ARGS
    )
    for i, key in enumerate(keys):
        alone = ann.fit(CNN, train, val_data=val, key=key, **ARGS)
        _assert_identical(alone, many.select(i))


def test_each_runs_on_threads_only_where_they_see_the_callers_jax_options():
    import threading

    from annjax.training.loop import _each

    def where(item):
        return item, threading.get_ident()

    main = threading.get_ident()
    out = _each(where, [0, 1, 2], workers=2)
    assert [item for item, _ in out] == [0, 1, 2]  # in order
    assert all(ident != main for _, ident in out)
    assert _each(where, [0, 1], workers=1) == [(0, main), (1, main)]
    # a thread-local option (a with block) does not reach other threads:
    # there the calls run in the caller's thread, under the caller's options
    with jax.default_matmul_precision("highest"):
        assert _each(where, [0, 1], workers=2) == [(0, main), (1, main)]
    mesh = jax.make_mesh((1,), ("data",))
    with jax.set_mesh(mesh):
        assert _each(where, [0, 1], workers=2) == [(0, main), (1, main)]


def test_the_threads_are_one_per_core_this_process_may_use():
    import os

    from annjax.training.loop import _cores

    assert 1 <= _cores() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert _cores() == len(os.sched_getaffinity(0))


def test_each_raises_the_first_error_and_starts_no_later_call():
    import time

    from annjax.training.loop import _each

    started = []

    def call(item):
        started.append(item)
        if item == 0:
            raise RuntimeError("model 0 failed")
        time.sleep(0.3)  # the calls still running when the error is seen
        return item

    with pytest.raises(RuntimeError, match="model 0 failed"):
        _each(call, list(range(8)), workers=2)
    # beside item 0 ran item 1, and its thread took at most one more: the
    # queue behind them was cancelled
    assert set(started) <= {0, 1, 2}


def test_threads_asking_for_a_specs_own_programs_share_them(monkeypatch):
    # a user's function in a spec gives it jitted functions of its own
    # (epoch.compiled); fit_many's sequential threads ask for them at once,
    # and must all get the same ones (else each compiles its own copy)
    import threading
    import time

    from annjax.training import epoch
    from annjax.training.epoch import EpochSpec, compiled, held_spec

    make = epoch._compile

    def slow(*args, **kwargs):  # widens the window in which threads race
        time.sleep(0.05)
        return make(*args, **kwargs)

    monkeypatch.setattr(epoch, "_compile", slow)

    augment = lambda x, key: x  # noqa: E731 (the user's own function)
    spec = held_spec(
        EpochSpec(MLP, "softmax_cross_entropy", ann.sgd(0.1), (), 8, False, augment, 8)
    )
    barrier, got = threading.Barrier(8), []

    def ask():
        barrier.wait()
        got.append(compiled("run_steps", None, spec))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(f is got[0] for f in got)
