"""End-to-end tests of ``ann.fit``, ``ann.predict`` and ``ann.evaluate``.

Compilation dominates the cost of these tests, so one compiled epoch serves
most of them: an MLP on the XOR truth table, validated on the same four
inputs with one label flipped (``[0, 1, 1, 1]``). As the network learns XOR
the validation loss first falls (three of four labels agree) and then rises
(the flipped one is predicted ever more confidently), so early stopping has a
best epoch in the middle of the run. Every fit of that fixture shares the
model, the optimizer object and the shapes, hence one compilation.
"""

from __future__ import annotations

import contextlib
import logging
import re
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([0, 1, 1, 0], np.int32)
VAL_Y = np.array([0, 1, 1, 1], np.int32)  # one label flipped, see module doc
EPOCHS = 60  # XOR is learnt in 10–20 epochs with adam(0.05)
# ann.evaluate runs another compiled program than the validation pass inside
# fit (float32, summation order may differ), hence rtol 1e-5, not equality.
RTOL = 1e-5


@contextlib.contextmanager
def _compilations():
    """Yields the list of the names of the functions XLA compiles meanwhile."""
    names: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found = re.search(r"Compiling (?:jit\()?(\w+)", record.getMessage())
            if found:
                names.append(found.group(1))

    handler = Collect(logging.DEBUG)
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles():
            yield names
    finally:
        logger.removeHandler(handler)


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(x, y) for x, y in zip(la, lb, strict=True)
    )


def _assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _assert_histories_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def xor():
    """The shared XOR setup: ``run(**overrides)`` fits it; ``first`` is the
    first (compiling) fit of EPOCHS epochs, ``compiled`` what it compiled."""
    model = ann.mlp([16, 2])
    opt = ann.adam(0.05)
    defaults = {
        "val_data": (XOR_X, VAL_Y),
        "optimizer": opt,
        "batch_size": 4,
        "metrics": ("accuracy",),
        "progress": False,
        "key": jax.random.key(1),
    }

    def run(**overrides):
        return ann.fit(model, (XOR_X, XOR_Y), **{**defaults, **overrides})

    with _compilations() as compiled:
        first = run(epochs=EPOCHS)
    return SimpleNamespace(
        model=model, opt=opt, run=run, first=first, compiled=compiled
    )


# --- learning and history ----------------------------------------------------


def test_mlp_learns_xor(xor):
    result = xor.first
    assert result.history["accuracy"][-1] == 1.0
    logs = ann.evaluate(
        xor.model, result.params, result.state, (XOR_X, XOR_Y), metrics=("accuracy",)
    )
    assert logs["accuracy"] == 1.0
    assert logs["loss"] < 0.1
    pred = ann.predict(xor.model, result.params, result.state, XOR_X)
    np.testing.assert_array_equal(np.argmax(pred, axis=1), XOR_Y)


def test_history_has_one_entry_per_epoch(xor):
    result = xor.first
    assert set(result.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    for name, values in result.history.items():
        assert isinstance(values, np.ndarray), name
        assert values.shape == (EPOCHS,), name
        assert np.all(np.isfinite(values)), name
    assert result.epochs == EPOCHS
    assert result.stop_reason == "completed"
    # without early stopping: the argmin of val_loss, and the last params
    assert result.best_epoch == int(np.argmin(result.history["val_loss"]))
    assert result.history["val_accuracy"][-1] == 0.75  # 3 of the 4 val labels
    assert int(result.train_state.step) == EPOCHS  # one step per epoch
    _assert_trees_equal(result.params, result.train_state.params)


def test_validation_curve_falls_then_rises(xor):
    # the premise of the early-stopping tests below
    val_loss = xor.first.history["val_loss"]
    best = int(np.argmin(val_loss))
    assert 0 < best < EPOCHS - 10
    assert val_loss[-1] > val_loss[best] + 0.5


def test_epoch_runs_as_one_compilation(xor):
    # every epoch of the first fit ran the same ONE compiled function
    assert xor.compiled.count("run_epoch") == 1


def test_second_fit_compiles_nothing(xor):
    with _compilations() as compiled:
        xor.run(epochs=3, key=jax.random.key(7))
    assert compiled == []


def test_batch_size_larger_than_n_is_full_batch(xor):
    with _compilations() as compiled:
        big = xor.run(epochs=3, batch_size=1000)
    assert compiled == []  # the batch is reduced to n = 4: same compiled epoch
    full = xor.run(epochs=3, batch_size=4)
    _assert_trees_equal(big.params, full.params)


def test_same_key_same_result_other_key_other_result(xor):
    a = xor.run(epochs=5, key=jax.random.key(3))
    b = xor.run(epochs=5, key=jax.random.key(3))
    c = xor.run(epochs=5, key=jax.random.key(4))
    _assert_trees_equal(a.params, b.params)
    _assert_histories_equal(a.history, b.history)
    assert not _leaves_equal(a.params, c.params)


def test_zero_epochs_returns_the_initial_model(xor):
    result = xor.run(epochs=0)
    assert result.history == {}
    assert result.best_epoch == -1
    assert result.stop_reason == "completed"
    assert result.epochs == 0
    init = ann.init_train_state(xor.model, xor.opt, jax.random.key(0), (2,))[0]
    assert jax.tree.structure(result.params) == jax.tree.structure(init.params)


# --- early stopping ------------------------------------------------------------


@pytest.fixture(scope="module")
def stopped(xor):
    return xor.run(epochs=EPOCHS, early_stopping=ann.EarlyStopping(patience=5))


def test_early_stopping_stops(stopped):
    assert stopped.stop_reason.startswith("early_stopping")
    val_loss = stopped.history["val_loss"]
    assert stopped.best_epoch == int(np.argmin(val_loss))
    assert stopped.best_epoch > 0
    assert len(val_loss) == stopped.epochs == stopped.best_epoch + 1 + 5


def test_early_stopping_follows_the_same_run(xor, stopped):
    # early stopping decides on the host: the epochs it ran are the full run's
    n = stopped.epochs
    for name, values in stopped.history.items():
        np.testing.assert_array_equal(values, xor.first.history[name][:n])


def test_restore_best_returns_the_best_epoch_params(xor, stopped):
    logs = ann.evaluate(xor.model, stopped.params, stopped.state, (XOR_X, VAL_Y))
    best_val = stopped.history["val_loss"][stopped.best_epoch]
    assert logs["loss"] == pytest.approx(best_val, rel=RTOL)
    assert logs["loss"] < stopped.history["val_loss"][-1] - 1e-3


def test_restore_best_false_returns_the_last_params(xor):
    es = ann.EarlyStopping(patience=5, restore_best=False)
    result = xor.run(epochs=EPOCHS, early_stopping=es)
    assert result.stop_reason.startswith("early_stopping")
    logs = ann.evaluate(xor.model, result.params, result.state, (XOR_X, VAL_Y))
    assert logs["loss"] == pytest.approx(result.history["val_loss"][-1], rel=RTOL)
    _assert_trees_equal(result.params, result.train_state.params)


def test_best_epoch_matches_restored_params_with_min_delta(xor):
    # With min_delta = 0.25 none of the first epochs counts as an improvement
    # on epoch 0 (val_loss 0.72 falls to a minimum of 0.51 at epoch 6, a gain
    # of 0.21), so the restored params are epoch 0's and best_epoch must say
    # so, though the argmin of val_loss is a later epoch.
    es = ann.EarlyStopping(patience=8, min_delta=0.25)
    result = xor.run(epochs=EPOCHS, early_stopping=es)
    val_loss = result.history["val_loss"]
    assert result.stop_reason.startswith("early_stopping")
    assert int(np.argmin(val_loss)) != result.best_epoch == 0  # the premise
    logs = ann.evaluate(xor.model, result.params, result.state, (XOR_X, VAL_Y))
    assert logs["loss"] == pytest.approx(val_loss[result.best_epoch], rel=RTOL)


def test_early_stopping_on_a_metric_in_max_mode(xor):
    es = ann.EarlyStopping(monitor="accuracy", patience=10, mode="auto")
    result = xor.run(epochs=EPOCHS, early_stopping=es)
    acc = result.history["accuracy"]
    assert result.stop_reason.startswith("early_stopping")
    assert result.best_epoch == int(np.argmax(acc))  # the first epoch at 100 %
    assert acc[result.best_epoch] == 1.0
    assert len(acc) == result.best_epoch + 1 + 10


# --- checkpoint and resume ---------------------------------------------------


def test_resume_equals_the_uninterrupted_run(xor, tmp_path):
    path = tmp_path / "run.ckpt"
    k, m = 4, 6
    part = xor.run(epochs=k, checkpoint=str(path))
    assert ann.load(path).epochs == k
    resumed = xor.run(epochs=m, resume=str(path))
    straight = xor.run(epochs=k + m)
    assert resumed.epochs == k + m
    _assert_trees_equal(resumed.params, straight.params)
    _assert_trees_equal(resumed.train_state.opt_state, straight.train_state.opt_state)
    _assert_histories_equal(resumed.history, straight.history)
    for name, values in part.history.items():
        np.testing.assert_array_equal(resumed.history[name][:k], values)


def test_checkpoint_holds_the_returned_result(xor, tmp_path):
    path = tmp_path / "sub" / "run.ckpt"
    result = xor.run(epochs=3, checkpoint=path)
    saved = ann.load(path)
    _assert_trees_equal(saved.params, result.params)
    _assert_histories_equal(saved.history, result.history)
    assert saved.best_epoch == result.best_epoch
    assert saved.stop_reason == result.stop_reason
    assert saved.epochs == 3


def test_resume_with_early_stopping_equals_the_uninterrupted_run(
    xor, stopped, tmp_path
):
    path = tmp_path / "run.ckpt"
    es = ann.EarlyStopping(patience=5)
    k = stopped.best_epoch + 2  # the tracker is rebuilt from the history
    xor.run(epochs=k, checkpoint=str(path), early_stopping=es)
    resumed = xor.run(epochs=EPOCHS - k, resume=str(path), early_stopping=es)
    assert resumed.epochs == stopped.epochs
    assert resumed.best_epoch == stopped.best_epoch
    assert resumed.stop_reason == stopped.stop_reason
    _assert_trees_equal(resumed.params, stopped.params)


# --- NaN guard ---------------------------------------------------------------


def test_nan_guard_keeps_the_last_finite_params():
    # sgd(1e8) on mse: the first full-batch step makes the weights ~1e8, the
    # second epoch's three-layer output ~1e24 and its square overflows
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = x.sum(axis=1)
    model = ann.mlp([8, 8, 1])
    kwargs = {
        "loss": "mse",
        "optimizer": ann.sgd(1e8),
        "batch_size": 16,
        "progress": False,
        "key": jax.random.key(0),
    }
    result = ann.fit(model, (x, y), epochs=10, **kwargs)
    assert result.stop_reason.startswith("non_finite")
    # the params returned give a finite loss (issue 13, case 1): the guard
    # also checks the loss of the params after the epoch's last update
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(result.params))
    loss = ann.evaluate(model, result.params, result.state, (x, y), loss="mse")
    assert np.isfinite(loss["loss"])
    before = ann.fit(model, (x, y), epochs=result.params_epoch + 1, **kwargs)
    _assert_trees_equal(result.params, before.params)
    _assert_trees_equal(result.train_state, before.train_state)


# --- regression, l1 and l2 ---------------------------------------------------


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=32)).astype(
        np.float32
    )
    model = ann.dense(1)
    opt = ann.adam(0.1)

    def run(**overrides):
        kwargs = {
            "loss": "mse",
            "optimizer": opt,
            "epochs": 40,
            "batch_size": 32,
            "metrics": ("r2",),
            "progress": False,
        }
        return ann.fit(model, (x, y), **{**kwargs, **overrides})

    return SimpleNamespace(x=x, y=y, model=model, run=run, plain=run())


def test_targets_of_shape_n_train_a_one_output_model(regression):
    result = regression.plain
    assert result.history["r2"][-1] > 0.95
    logs = ann.evaluate(
        regression.model,
        result.params,
        result.state,
        (regression.x, regression.y),
        loss="mse",
        metrics=("r2",),
    )
    assert logs["r2"] > 0.95
    assert all(isinstance(v, float) for v in logs.values())


def test_targets_n_and_n_by_1_give_the_same_fit(regression):
    with _compilations() as compiled:
        column = ann.fit(
            regression.model,
            (regression.x, regression.y[:, None]),
            loss="mse",
            optimizer=ann.adam(0.1),
            epochs=40,
            batch_size=32,
            metrics=("r2",),
            progress=False,
        )
    assert "run_epoch" not in compiled  # (n,) became (n, 1): same program
    _assert_trees_equal(column.params, regression.plain.params)


def _weight_sum(params, fn) -> float:
    """Returns Σ fn(w) over the weights (biases spared, as the penalties do)."""
    mask = jax.tree.leaves(ann.regularizers.default_mask(params))
    leaves = jax.tree.leaves(params)
    return float(sum(jnp.sum(fn(p)) for p, m in zip(leaves, mask, strict=True) if m))


@pytest.mark.parametrize(("penalty", "norm"), [("l1", jnp.abs), ("l2", jnp.square)])
def test_penalties_shrink_weights(regression, penalty, norm):
    result = regression.run(**{penalty: 0.5})
    assert _weight_sum(result.params, norm) < 0.8 * _weight_sum(
        regression.plain.params, norm
    )
    # the history's loss is the data loss alone: larger once weights shrink
    assert result.history["loss"][-1] > regression.plain.history["loss"][-1]


# --- augment -----------------------------------------------------------------


def test_augment_touches_training_batches_only(xor):
    def zero(key, x):
        return jnp.zeros_like(x)

    result = xor.run(epochs=10, augment=zero, val_data=(XOR_X, XOR_Y))
    # the network sees only zeros: one output for all, half the labels right
    np.testing.assert_array_equal(result.history["accuracy"], 0.5)
    clean = ann.evaluate(xor.model, result.params, result.state, (XOR_X, XOR_Y))
    zeros = ann.evaluate(
        xor.model, result.params, result.state, (np.zeros_like(XOR_X), XOR_Y)
    )
    # validation ran on the clean inputs, not on augmented ones
    assert result.history["val_loss"][-1] == pytest.approx(clean["loss"], rel=RTOL)
    assert abs(clean["loss"] - zeros["loss"]) > 1e-3


# --- predict and evaluate ----------------------------------------------------


def test_predict_shape_and_batching(xor):
    result = xor.first
    full = ann.predict(xor.model, result.params, result.state, XOR_X)
    assert full.shape == (4, 2)
    small = ann.predict(xor.model, result.params, result.state, XOR_X, batch_size=3)
    np.testing.assert_allclose(small, full, rtol=1e-6)
    direct, _ = xor.model.apply(result.params, result.state, jnp.asarray(XOR_X))
    np.testing.assert_allclose(full, direct, rtol=1e-6)


def test_evaluate_returns_floats_matching_the_history(xor):
    result = xor.first
    logs = ann.evaluate(
        xor.model, result.params, result.state, (XOR_X, VAL_Y), metrics=("accuracy",)
    )
    assert set(logs) == {"loss", "accuracy"}
    assert all(type(v) is float for v in logs.values())
    assert logs["loss"] == pytest.approx(result.history["val_loss"][-1], rel=RTOL)
    assert logs["accuracy"] == result.history["val_accuracy"][-1]
    batched = ann.evaluate(
        xor.model,
        result.params,
        result.state,
        (XOR_X, VAL_Y),
        metrics=("accuracy",),
        batch_size=3,
    )
    assert batched["loss"] == pytest.approx(logs["loss"], rel=RTOL)


# --- real data: logistic regression against scikit-learn ---------------------


def test_logistic_regression_matches_scikit_learn_on_breast_cancer():
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    data = load_breast_cancer()
    split = ann.data.split(
        data.data, data.target, val=0.0, test=0.2, key=jax.random.key(0), stratify=True
    )
    (x_train, y_train), (x_test, y_test) = split.train, split.test
    scaler = ann.data.Standardizer.fit(x_train)  # fitted on train only
    x_train, x_test = (
        np.asarray(scaler.transform(x_train)),
        np.asarray(scaler.transform(x_test)),
    )
    reference = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    model = ann.dense(2)
    result = ann.fit(
        model,
        (x_train, y_train),
        loss="softmax_cross_entropy",
        optimizer=ann.adam(0.05),
        epochs=100,
        batch_size=512,
        progress=False,
    )
    ours = ann.evaluate(
        model, result.params, result.state, (x_test, y_test), metrics=("accuracy",)
    )["accuracy"]
    assert ours >= reference.score(x_test, y_test) - 0.02


# --- other models: flax, batch norm and dropout -------------------------------


def _blobs(n: int = 32):
    rng = np.random.default_rng(2)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 3)).astype(np.float32) + 3.0 * y[:, None]
    return x, y.astype(np.int32)


def test_fit_trains_a_flax_model_with_batch_norm_and_dropout():
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.Dense(8)(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.Dropout(0.2, deterministic=not train)(nn.relu(x))
            return nn.Dense(2)(x)

    _check_stateful_fit(ann.from_flax(Net()))


def test_fit_trains_batch_norm_and_dropout_layers():
    model = ann.mlp([8, 2], batch_norm=True, dropout=0.2)
    result = _check_stateful_fit(model)
    # dropout in training refuses to run without a key: fit passed one
    with pytest.raises(ValueError, match="key"):
        model.apply(result.params, result.state, _blobs()[0], train=True)


def _check_stateful_fit(model) -> ann.FitResult:
    x, y = _blobs()
    kwargs = {"epochs": 20, "batch_size": 8, "metrics": ("accuracy",)}
    kwargs.update(optimizer=ann.adam(0.05), progress=False, key=jax.random.key(0))
    result = ann.fit(model, (x, y), val_data=(x, y), **kwargs)
    assert result.stop_reason == "completed"
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.history["val_accuracy"][-1] >= 0.9
    # batch-norm statistics start at mean 0, variance 1 whatever the key
    init_state = ann.init_train_state(model, ann.adam(0.05), jax.random.key(0), (3,))[
        0
    ].state
    assert jax.tree.structure(result.state) == jax.tree.structure(init_state)
    assert not _leaves_equal(result.state, init_state)  # running statistics moved
    again = ann.fit(model, (x, y), val_data=(x, y), **kwargs)
    _assert_trees_equal(again.params, result.params)  # dropout keys come from key
    return result
