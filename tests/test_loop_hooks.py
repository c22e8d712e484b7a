"""Tests of the one training loop's research hooks (annjax.training.loop).

Callbacks (stop, logs, an exception that keeps the checkpoint) with ``fit``
and ``fit_many``; ``log_steps``'s per-step losses against a hand-written
loop of ``make_train_step`` on the same batches and keys; ``history["lr"]``
against the optax schedule's own values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import annjax as ann
from annjax.training.epoch import plan_batches

N, FEATURES, BATCH = 40, 3, 16  # 3 steps per epoch, the last one padded
STEPS = -(-N // BATCH)


def _data():
    x = jax.random.normal(jax.random.key(0), (N, FEATURES))
    y = (x[:, 0] > 0).astype(jnp.int32)
    return x, y


X, Y = _data()
MODEL = ann.mlp([8, 2])


def _fit(**kw):
    defaults = {
        "optimizer": ann.sgd(0.1),
        "batch_size": BATCH,
        "progress": False,
        "key": jax.random.key(3),
        "epochs": 4,
    }
    return ann.fit(MODEL, (X, Y), **{**defaults, **kw})


def _fit_many(**kw):
    defaults = {
        "keys": jax.random.split(jax.random.key(3), 2),
        "optimizer": ann.sgd(0.1),
        "batch_size": BATCH,
        "progress": False,
        "epochs": 4,
    }
    return ann.fit_many(MODEL, (X, Y), **{**defaults, **kw})


# --- callbacks ---------------------------------------------------------------


def test_callback_sees_every_epoch_and_its_logs():
    seen = []

    def record(epoch, logs):
        seen.append((epoch, {k: np.copy(v) for k, v in logs.items()}))

    result = _fit(callbacks=[record], val_data=(X, Y), metrics=("accuracy",))
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    assert set(seen[0][1]) == {
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
    }
    for name in seen[0][1]:
        logged = [float(logs[name]) for _, logs in seen]
        np.testing.assert_array_equal(logged, result.history[name])


def test_callback_returning_true_stops_training_and_names_itself():
    def stop_at_two(epoch, logs):
        return epoch == 1

    result = _fit(callbacks=[stop_at_two], epochs=10)
    assert result.epochs == 2
    assert len(result.history["loss"]) == 2
    assert result.stop_reason == (
        "callback: stop_at_two stopped training after epoch 1"
    )


def test_callback_returning_a_numpy_bool_stops():
    """``logs["loss"] < x`` is a NumPy bool, not True: it must stop too."""

    def low_loss(epoch, logs):
        return logs["loss"] < np.float32(np.inf)

    result = _fit(callbacks=[low_loss], epochs=3)
    assert result.epochs == 1 and result.stop_reason.startswith("callback: low_loss")


@pytest.mark.parametrize("value", [1, "yes", np.array([True, True]), np.int32(1)])
def test_callback_returning_no_boolean_does_not_stop(value):
    result = _fit(callbacks=[lambda epoch, logs: value], epochs=3)
    assert result.epochs == 3 and result.stop_reason == "completed"


def test_callback_runs_after_early_stopping():
    """Early stopping has already frozen the model when the callback runs."""
    es = ann.EarlyStopping(monitor="loss", patience=1, min_delta=10.0)
    calls = []
    result = _fit(
        early_stopping=es, callbacks=[lambda e, logs: calls.append(e)], epochs=5
    )
    assert result.stop_reason.startswith("early_stopping")
    assert calls == list(range(result.epochs))


def test_callback_exception_keeps_the_checkpoint_and_names_the_epoch(tmp_path):
    path = tmp_path / "run.ckpt"

    def boom(epoch, logs):
        if epoch == 2:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full") as info:
        _fit(callbacks=[boom], checkpoint=str(path), epochs=6)
    assert any("boom" in n and "epoch 2" in n for n in info.value.__notes__)
    saved = ann.load(path)
    assert saved.epochs == 3
    reference = _fit(epochs=3)
    np.testing.assert_array_equal(saved.history["loss"], reference.history["loss"])
    for a, b in zip(
        jax.tree.leaves(saved.params), jax.tree.leaves(reference.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_fit_many_callbacks_get_one_value_per_model_and_stop_all():
    seen = []

    def watch(epoch, logs):
        seen.append(np.copy(logs["loss"]))
        return epoch == 2

    many = _fit_many(callbacks=[watch], epochs=8)
    assert many.epochs == 3
    assert all(v.shape == (2,) for v in seen)
    np.testing.assert_array_equal(np.stack(seen), many.history["loss"])
    assert many.stop_reason == ["callback: watch stopped training after epoch 2"] * 2


def test_fit_many_callback_exception_keeps_the_checkpoint(tmp_path):
    path = tmp_path / "many.ckpt"

    class Fails:
        def __call__(self, epoch, logs):
            if epoch == 1:
                raise ValueError("bad")

    with pytest.raises(ValueError, match="bad") as info:
        _fit_many(callbacks=[Fails()], checkpoint=str(path))
    assert any("Fails" in n and "epoch 1" in n for n in info.value.__notes__)
    saved = ann.load(path)
    assert isinstance(saved, ann.ManyResult) and saved.epochs == 2


@pytest.mark.parametrize("bad", [3, [print, "x"]])
def test_callbacks_must_be_callables(bad):
    with pytest.raises(TypeError, match="callbacks"):
        _fit(callbacks=bad)


# --- per-step losses ---------------------------------------------------------


def _hand_written_step_losses(epochs: int) -> np.ndarray:
    """Returns every step's loss from make_train_step on fit's batches and keys."""
    opt = ann.sgd(0.1)
    init_key, train_key = jax.random.split(jax.random.key(3))
    ts, _ = ann.init_train_state(MODEL, opt, init_key, (FEATURES,))
    step = jax.jit(ann.make_train_step(MODEL, "softmax_cross_entropy", opt))
    losses = []
    for epoch in range(epochs):
        idx, w, keys = plan_batches(BATCH, train_key, epoch, N)  # fit's plan
        for i in range(idx.shape[0]):
            ts, logs = step(ts, (X[idx[i]], Y[idx[i]], w[i]), keys[i])
            losses.append(float(logs["loss"]))
    return np.asarray(losses, np.float32)


def test_step_loss_equals_a_hand_written_loop():
    result = _fit(log_steps=True, epochs=3)
    assert result.history["step_loss"].shape == (3 * STEPS,)
    np.testing.assert_allclose(
        result.history["step_loss"], _hand_written_step_losses(3), rtol=1e-5
    )


@pytest.mark.parametrize("steps_per_call", [None, 2])
def test_step_loss_weighted_mean_is_the_epoch_loss(steps_per_call):
    result = _fit(log_steps=True, epochs=3, steps_per_call=steps_per_call)
    steps = result.history["step_loss"].reshape(3, STEPS)
    weights = np.full(STEPS, BATCH, np.float32)
    weights[-1] = N - BATCH * (STEPS - 1)
    np.testing.assert_allclose(steps @ weights / N, result.history["loss"], rtol=1e-5)


def test_step_loss_is_absent_by_default():
    assert "step_loss" not in _fit(epochs=1).history


def test_fit_many_step_loss_is_steps_by_models():
    many = _fit_many(log_steps=True, epochs=2)
    assert many.history["step_loss"].shape == (2 * STEPS, 2)
    one = _fit(log_steps=True, epochs=2, key=jax.random.split(jax.random.key(3))[0])
    assert one.history["step_loss"].shape == (2 * STEPS,)
    assert np.isfinite(many.history["step_loss"]).all()


# --- the learning rate -------------------------------------------------------


def test_lr_of_a_schedule_is_its_value_at_each_epochs_last_step():
    schedule = optax.exponential_decay(0.5, transition_steps=1, decay_rate=0.9)
    result = _fit(optimizer=ann.sgd(schedule), epochs=4)
    want = [schedule((e + 1) * STEPS - 1) for e in range(4)]
    np.testing.assert_allclose(result.history["lr"], want, rtol=1e-6)


def test_lr_of_a_constant_and_of_lr_scale():
    assert np.all(_fit(epochs=2).history["lr"] == np.float32(0.1))
    many = _fit_many(lr_scale=[1.0, 0.5], epochs=2)
    np.testing.assert_allclose(many.history["lr"], [[0.1, 0.05]] * 2, rtol=1e-6)


def test_no_lr_without_an_injected_learning_rate():
    assert "lr" not in _fit(optimizer=optax.sgd(0.1), epochs=1).history


def test_a_callback_that_wants_the_train_state_gets_the_epochs():
    class Params:
        wants_train_state = True

        def __init__(self):
            self.seen = []

        def __call__(self, epoch, logs, train_state):
            self.seen.append(jax.tree.map(np.array, train_state.params))

    cb = Params()
    result = _fit(callbacks=[cb], epochs=2)
    assert len(cb.seen) == 2
    for a, b in zip(
        jax.tree.leaves(cb.seen[-1]), jax.tree.leaves(result.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(cb.seen[0]["dense_0"]["w"], cb.seen[1]["dense_0"]["w"])


def test_fit_many_callbacks_see_nan_for_a_stopped_model():
    es = ann.EarlyStopping(monitor="loss", patience=1, min_delta=0.05)
    seen = []
    many = _fit_many(
        lr_scale=[1.0, 0.001],
        early_stopping=es,
        callbacks=[lambda e, logs: seen.append(np.copy(logs["loss"]))],
        epochs=6,
    )
    assert np.isnan(many.history["loss"]).any()
    np.testing.assert_array_equal(np.stack(seen), many.history["loss"])


def test_log_steps_adds_no_computation_to_the_compiled_epoch():
    """Counting, not timing: the per-step losses exist in the scan already;
    ``log_steps`` only returns them (same FLOPs, one (steps,) output more)."""
    from annjax.training.epoch import COMPILED, EpochSpec

    opt = ann.adam(1e-3)
    ts, _ = ann.init_train_state(MODEL, opt, jax.random.key(0), (FEATURES,))
    costs, outputs = [], []
    for log_steps in (False, True):
        spec = EpochSpec(
            MODEL,
            "softmax_cross_entropy",
            opt,
            (),
            BATCH,
            False,
            None,
            64,
            10,
            log_steps,
        )
        args = (spec, ts, jax.random.key(1), np.int32(0), {}, X, Y, None)
        compiled = COMPILED["run_epoch", None].lower(*args).compile()
        cost = compiled.cost_analysis()
        costs.append((cost[0] if isinstance(cost, list) else cost)["flops"])
        outputs.append(jax.eval_shape(COMPILED["run_epoch", None], *args)[1])
    assert costs[0] == costs[1] > 0
    assert set(outputs[1]) - set(outputs[0]) == {"step_loss"}
    assert outputs[1]["step_loss"].shape == (STEPS,)
