"""fit(steps_per_call=k): k steps per compiled call give the result of one call.

The epoch's plan (order of batches, step keys) is drawn once and the steps
run on it k at a time, so every k trains on the same batches with the same
keys. Whether the numbers are bit-identical depends on XLA compiling the
step alike inside the epoch's scan and in the k unrolled steps of a call:
for the plain MLP on CPU it does, and those tests say so with
``assert_array_equal``; with batch norm and dropout, the profiler or
vmapped models XLA fuses the unrolled steps otherwise, and the tests allow
1e-6 (measured: 1.2e-7).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import separable_classes

import annjax as ann

EPOCHS = 3
BATCH = 8  # 100 examples: 13 steps an epoch, the last one padded


@pytest.fixture(scope="module")
def data():
    return separable_classes()


MODEL = ann.mlp([16, 16, 3])
STATEFUL = ann.mlp([16, 3], batch_norm=True, dropout=0.2)
OPT = ann.sgd(0.1, momentum=0.9)


def _fit(data, model=MODEL, **kwargs):
    return ann.fit(
        model,
        data,
        val_data=data,
        optimizer=OPT,
        epochs=EPOCHS,
        batch_size=BATCH,
        metrics=("accuracy",),
        progress=False,
        key=jax.random.key(3),
        **kwargs,
    )


def _assert_equal(a, b, tol=None) -> None:
    """Asserts two pytrees (or histories) equal: exactly, or within ``tol``."""
    if isinstance(a, dict) and all(isinstance(v, np.ndarray) for v in a.values()):
        assert set(a) == set(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if tol is None:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


@pytest.fixture(scope="module")
def whole(data):
    return _fit(data)


# 1: one jitted step per batch; 5 does not divide 13 (two calls of 5 and a
# remainder of 3); 13 = the epoch; 50 > the epoch (one call holding all 13 steps)
@pytest.mark.parametrize("k", [1, 5, 13, 50])
def test_every_k_gives_the_same_fit_bit_for_bit(data, whole, k):
    chunked = _fit(data, steps_per_call=k)
    _assert_equal(chunked.params, whole.params)
    _assert_equal(chunked.train_state.opt_state, whole.train_state.opt_state)
    _assert_equal(chunked.history, whole.history)


def test_batch_norm_and_dropout_give_the_same_fit(data):
    # dropout draws its masks from the planned step keys; batch norm's
    # running statistics are carried across calls in the train state
    # k=4: three calls of 4 steps and a remainder of 1
    whole = _fit(data, STATEFUL)
    for k in (4,):
        chunked = _fit(data, STATEFUL, steps_per_call=k)
        _assert_equal(chunked.params, whole.params, tol=1e-6)
        _assert_equal(chunked.state, whole.state, tol=1e-6)
        _assert_equal(chunked.history, whole.history, tol=1e-6)


def test_step_losses_come_back_in_step_order(data):
    whole = _fit(data, log_steps=True)
    chunked = _fit(data, log_steps=True, steps_per_call=5)
    assert chunked.history["step_loss"].shape == (EPOCHS * 13,)
    _assert_equal(chunked.history["step_loss"], whole.history["step_loss"])


@pytest.fixture(scope="module")
def tracked_whole(data):
    return _fit(data, track_gradients=True, track_every=4)


@pytest.mark.parametrize("k", [1, 5, None])
def test_the_profiler_measures_the_same_steps_at_any_k(data, whole, tracked_whole, k):
    # every 4th step is measured: steps 3, 7, 11 of 13. A call of k steps is
    # told which of its steps those are (with k=1 the 4th, 8th, 12th calls,
    # the others measure nothing; with k=5 at positions 3, 2 and 1 of the calls)
    tracked = _fit(data, track_gradients=True, track_every=4, steps_per_call=k)
    # the profiler's own numbers: the same steps, so the same values
    _assert_equal(tracked.history, tracked_whole.history, tol=1e-6)
    # and measuring leaves training unchanged (untracked fits at any k equal
    # `whole` bit for bit: test_every_k_gives_the_same_fit_bit_for_bit)
    _assert_equal(tracked.params, whole.params, tol=1e-6)
    assert tracked.history["grad_norm/dense_0"].shape == (EPOCHS,)
    assert np.all(tracked.history["grad_norm/dense_0"] > 0)


def test_the_profiler_measures_the_last_step_when_every_exceeds_the_epoch(data):
    reference = _fit(data, track_gradients=True, track_every=100)
    for k in (1, 6):
        tracked = _fit(data, track_gradients=True, track_every=100, steps_per_call=k)
        _assert_equal(tracked.history, reference.history, tol=1e-6)


@pytest.mark.parametrize("k", [2])  # calls of 2 of the epoch's 4 steps
def test_the_nan_guard_works_at_any_k(k):
    # as test_fit's NaN guard test: sgd(1e8) overflows in the second epoch
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = x.sum(axis=1)
    kwargs = {
        "loss": "mse",
        "optimizer": ann.sgd(1e8),
        "batch_size": 4,
        "epochs": 10,
        "progress": False,
        "key": jax.random.key(0),
    }
    model = ann.mlp([8, 8, 1])
    whole = ann.fit(model, (x, y), **kwargs)
    chunked = ann.fit(model, (x, y), steps_per_call=k, **kwargs)
    assert whole.stop_reason.startswith("non_finite")
    assert chunked.stop_reason == whole.stop_reason  # same epoch and step
    _assert_equal(chunked.params, whole.params)
    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(chunked.params))


def test_fit_many_gives_the_same_models_at_any_k(data):
    keys = jax.random.split(jax.random.key(5), 3)
    kwargs = {
        "keys": keys,
        "l2": [0.0, 1e-3, 1e-2],
        "optimizer": OPT,
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "metrics": ("accuracy",),
        "progress": False,
        "track_gradients": True,
        "track_every": 4,
    }
    whole = ann.fit_many(MODEL, data, val_data=data, **kwargs)
    # k=2 holds both kinds of call: ones that measure no step (0-1, 4-5, ...)
    # and ones that measure one (2-3, 6-7, 10-11), and a remainder (12)
    for k in (2,):
        chunked = ann.fit_many(MODEL, data, val_data=data, steps_per_call=k, **kwargs)
        # vmapped steps of another length may batch their matmuls otherwise
        _assert_equal(chunked.params, whole.params, tol=1e-6)
        _assert_equal(chunked.history, whole.history, tol=1e-6)


def test_auto_runs_a_convolution_one_step_per_call_on_the_cpu():
    import flax.linen as nn

    from annjax.training.record import calls_of as steps_per_call_for

    conv = ann.from_flax(nn.Conv(4, (3, 3)))
    cpu = jax.devices()[0].platform == "cpu"
    assert steps_per_call_for("auto", conv, (6, 6, 2), None) == (1 if cpu else None)
    assert steps_per_call_for("auto", MODEL, (5,), None) is None
    assert steps_per_call_for(None, conv, (6, 6, 2), None) is None  # as asked
    assert steps_per_call_for(3, MODEL, (5,), None) == 3


def test_a_cnn_trains_alike_one_step_per_call_and_in_one_scan():
    import flax.linen as nn

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.Conv(4, (3, 3))(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            return nn.Dense(2)(nn.relu(x).mean(axis=(1, 2)))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 6, 6, 2)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int32)
    kwargs = {"epochs": 2, "batch_size": 8, "progress": False, "optimizer": OPT}
    model = ann.from_flax(CNN())
    auto = ann.fit(model, (x, y), **kwargs)  # one step per call on the CPU
    scan = ann.fit(model, (x, y), steps_per_call=None, **kwargs)
    _assert_equal(auto.params, scan.params, tol=1e-6)
    _assert_equal(auto.history, scan.history, tol=1e-6)


def test_steps_per_call_is_checked_before_compiling(data):
    with pytest.raises(ValueError, match="steps_per_call: expected an integer >= 1"):
        _fit(data, steps_per_call=0)
    with pytest.raises(TypeError, match="steps_per_call: expected an integer"):
        _fit(data, steps_per_call=2.0)
    with pytest.raises(ValueError, match="steps_per_call: expected one of 'auto'"):
        _fit(data, steps_per_call="fast")
    with pytest.raises(ValueError, match="steps_per_call"):
        ann.fit_many(
            MODEL,
            data,
            keys=jax.random.split(jax.random.key(0), 2),
            steps_per_call=-1,
            progress=False,
        )
