"""Tests of annjax.training.checkpoint: round trip, atomic writes, and refusals.

The results saved here are built by hand from ``init_train_state`` and one
optimizer update, so no epoch is compiled; ``fit``'s own checkpoint/resume
path is tested end to end in ``test_fit.py``.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import annjax as ann
from annjax.training import loop
from annjax.training.checkpoint import restore_train_state

FEATURES = 3
MODEL = ann.mlp([4, 2], batch_norm=True)  # params, batch-norm state, an empty {}


def _result(opt, seed: int = 0, with_state: bool = True) -> ann.FitResult:
    """Returns a FitResult whose optimizer state has moved away from its init."""
    ts = ann.init_train_state(MODEL, opt, jax.random.key(seed), (FEATURES,))[0]
    grads = jax.tree.map(jnp.ones_like, ts.params)
    updates, opt_state = opt.update(grads, ts.opt_state, ts.params)
    ts = ts._replace(
        params=optax.apply_updates(ts.params, updates),
        opt_state=opt_state,
        step=ts.step + 1,
    )
    history = {
        "loss": np.array([0.9, 0.5, 0.4], np.float32),
        "val_loss": np.array([1.0, 0.6, 0.7], np.float32),
    }
    reason = "early_stopping: val_loss did not improve for 1 epochs"
    return ann.FitResult(
        ts.params, ts.state, history, 1, reason, ts if with_state else None, 3
    )


def _assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(x, y)


OPTIMIZERS = [
    ann.sgd(0.1),
    ann.sgd(0.1, momentum=0.9, clip_norm=1.0),
    ann.adam(1e-2, weight_decay=1e-3),
    ann.adamw(1e-2),
    optax.adam(1e-2),
]


@pytest.mark.parametrize(
    "opt", OPTIMIZERS, ids=["sgd", "momentum_clip", "adam", "adamw", "optax_adam"]
)
def test_round_trip(tmp_path, opt):
    result = _result(opt)
    path = ann.save(tmp_path / "run.ckpt", result)
    assert path == tmp_path / "run.ckpt"
    loaded = ann.load(path)
    assert isinstance(loaded, ann.FitResult)
    _assert_trees_equal(loaded.params, result.params)
    _assert_trees_equal(loaded.state, result.state)
    assert set(loaded.history) == set(result.history)
    for name, values in result.history.items():
        _assert_trees_equal(loaded.history[name], values)
    assert loaded.best_epoch == result.best_epoch
    assert loaded.stop_reason == result.stop_reason
    assert loaded.epochs == result.epochs

    saved_ts = result.train_state
    fresh = ann.init_train_state(MODEL, opt, jax.random.key(9), (FEATURES,))[0]
    restored = restore_train_state(loaded.train_state, fresh)
    assert isinstance(restored, ann.TrainState)
    _assert_trees_equal(restored.params, saved_ts.params)
    _assert_trees_equal(restored.state, saved_ts.state)
    _assert_trees_equal(restored.opt_state, saved_ts.opt_state)  # structure too
    assert restored.step.dtype == jnp.int32 and int(restored.step) == 1
    # the restored optimizer state is usable as it is
    grads = jax.tree.map(jnp.ones_like, restored.params)
    expected, _ = opt.update(grads, saved_ts.opt_state, saved_ts.params)
    got, _ = opt.update(grads, restored.opt_state, restored.params)
    _assert_trees_equal(got, expected)


def test_round_trip_without_train_state(tmp_path):
    result = _result(ann.sgd(0.1), with_state=False)
    loaded = ann.load(ann.save(tmp_path / "run.ckpt", result))
    assert loaded.train_state is None
    _assert_trees_equal(loaded.params, result.params)
    fresh = ann.init_train_state(MODEL, ann.sgd(0.1), jax.random.key(0), (3,))[0]
    with pytest.raises(ValueError, match=r"resume.*no train state"):
        restore_train_state(loaded.train_state, fresh)


def test_round_trip_of_a_many_result(tmp_path):
    x = jax.random.normal(jax.random.key(0), (12, FEATURES))
    y = (x[:, 0] > 0).astype(jnp.int32)
    many = ann.fit_many(
        ann.mlp([4, 2]),
        (x, y),
        keys=jax.random.split(jax.random.key(1), 3),
        l2=[0.0, 1e-3, 1e-2],
        epochs=2,
        batch_size=4,
        log_steps=True,
        progress=False,
    )
    loaded = ann.load(ann.save(tmp_path / "many.ckpt", many))
    assert isinstance(loaded, ann.ManyResult)
    _assert_trees_equal(loaded.params, many.params)
    _assert_trees_equal(loaded.state, many.state)
    assert set(loaded.history) == set(many.history)
    for name, values in many.history.items():
        _assert_trees_equal(loaded.history[name], values)
    assert loaded.stop_reason == many.stop_reason
    assert loaded.epochs == many.epochs
    np.testing.assert_array_equal(loaded.best_epoch, many.best_epoch)
    np.testing.assert_array_equal(loaded.model_epochs, many.model_epochs)
    np.testing.assert_array_equal(loaded.params_epoch, many.params_epoch)
    assert set(loaded.hyper) == set(many.hyper)
    for name, values in many.hyper.items():
        np.testing.assert_array_equal(loaded.hyper[name], values)
    _assert_trees_equal(loaded.train_state.params, many.train_state.params)


def test_round_trip_of_a_train_state(tmp_path):
    opt = ann.adam(1e-2)
    ts = _result(opt).train_state
    loaded = ann.load(ann.save(tmp_path / "ts.ckpt", ts))
    assert isinstance(loaded, ann.TrainState)
    _assert_trees_equal(loaded.params, ts.params)
    _assert_trees_equal(loaded.state, ts.state)
    assert int(loaded.step) == 1
    fresh = ann.init_train_state(MODEL, opt, jax.random.key(9), (FEATURES,))[0]
    _assert_trees_equal(restore_train_state(loaded, fresh).opt_state, ts.opt_state)


def test_round_trip_of_a_pytree(tmp_path):
    params = _result(ann.sgd(0.1)).params
    ids = np.arange(3, dtype=np.int32)  # int64 comes back int32 (x64 off)
    tree = {"params": params, "scale": np.float32(2.0), "ids": ids}
    loaded = ann.load(ann.save(tmp_path / "tree.ckpt", tree))
    _assert_trees_equal(loaded, tree)


def test_a_tuple_pytree_comes_back_as_a_dict_with_its_structure(tmp_path):
    from flax import serialization

    tree = (np.ones(2, np.float32), [np.zeros((1, 2), np.float32)])
    loaded = ann.load(ann.save(tmp_path / "tuple.ckpt", tree))
    _assert_trees_equal(serialization.from_state_dict(tree, loaded), tree)


def test_save_creates_missing_folders_and_accepts_strings(tmp_path):
    path = tmp_path / "a" / "b" / "run.ckpt"
    ann.save(str(path), _result(ann.sgd(0.1)))
    assert ann.load(str(path)).epochs == 3


def test_save_overwrites(tmp_path):
    path = tmp_path / "run.ckpt"
    ann.save(path, _result(ann.sgd(0.1), seed=0))
    second = _result(ann.sgd(0.1), seed=1)
    ann.save(path, second)
    _assert_trees_equal(ann.load(path).params, second.params)
    assert os.listdir(tmp_path) == ["run.ckpt"]


# --- atomicity ---------------------------------------------------------------


def _boom(*args, **kwargs):
    raise OSError("disk full")


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("target", "fail", "error"),
    [
        ("replace", _boom, OSError),  # the rename fails
        ("fsync", _boom, OSError),  # the write fails before the rename
        ("fsync", _interrupt, KeyboardInterrupt),  # Ctrl-C mid-save
    ],
    ids=["replace", "write", "interrupt"],
)
def test_failed_save_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, target, fail, error
):
    path = tmp_path / "run.ckpt"
    first = _result(ann.sgd(0.1), seed=0)
    ann.save(path, first)
    before = path.read_bytes()
    monkeypatch.setattr(os, target, fail)
    with pytest.raises(error):
        ann.save(path, _result(ann.sgd(0.1), seed=1))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.ckpt"]  # no temporary file left
    _assert_trees_equal(ann.load(path).params, first.params)


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", _boom)
    with pytest.raises(OSError, match="disk full"):
        ann.save(tmp_path / "run.ckpt", _result(ann.sgd(0.1)))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


# --- refusals ----------------------------------------------------------------


def test_save_rejects_what_is_not_arrays(tmp_path):
    with pytest.raises(TypeError, match="expected a FitResult, a ManyResult"):
        ann.save(tmp_path / "run.ckpt", {"params": {"w": object()}})
    assert not (tmp_path / "run.ckpt").exists()


def test_load_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        ann.load(tmp_path / "nothing_here.ckpt")
    with pytest.raises(FileNotFoundError):
        ann.load(tmp_path)  # a folder is no checkpoint file either


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a checkpoint at all",
        bytes(range(256)),
        "msgpack_dict",  # valid msgpack, but not an annjax checkpoint
        "msgpack_list",
    ],
    ids=["empty", "text", "bytes", "msgpack_dict", "msgpack_list"],
)
def test_load_of_a_file_that_is_no_checkpoint(tmp_path, content):
    from flax import serialization

    if content == "msgpack_dict":
        content = serialization.msgpack_serialize({"params": np.ones(3)})
    elif content == "msgpack_list":
        content = serialization.msgpack_serialize([1, 2, 3])
    path = tmp_path / "other.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="checkpoint"):
        ann.load(path)


@pytest.fixture
def no_training(monkeypatch):
    """Makes fit fail the test if it gets as far as running an epoch."""

    def forbidden(*args, **kwargs):
        raise AssertionError("fit trained before rejecting the checkpoint")

    monkeypatch.setattr(loop, "run_epoch", forbidden)


X = np.zeros((4, FEATURES), np.float32)
Y = np.array([0, 1, 0, 1], np.int32)


@pytest.mark.parametrize(
    "other",
    [ann.dense(2), ann.mlp([5, 2], batch_norm=True)],
    ids=["another_architecture", "another_width"],
)
def test_resume_with_a_different_model(tmp_path, no_training, other):
    path = ann.save(tmp_path / "run.ckpt", _result(ann.sgd(0.1)))
    with pytest.raises(ValueError, match=r"resume.*same model"):
        ann.fit(other, (X, Y), optimizer=ann.sgd(0.1), resume=path, progress=False)


def test_resume_with_a_different_optimizer(tmp_path, no_training):
    path = ann.save(tmp_path / "run.ckpt", _result(ann.adam(1e-2)))
    with pytest.raises(ValueError, match=r"resume.*optimizer"):
        ann.fit(MODEL, (X, Y), optimizer=ann.sgd(0.1), resume=path, progress=False)


def test_resume_from_a_missing_file(tmp_path, no_training):
    with pytest.raises(FileNotFoundError):
        ann.fit(MODEL, (X, Y), resume=tmp_path / "missing.ckpt", progress=False)
