"""Training faults: every case of issue 13 about what happens during training.

The NaN guard (case 1), early stopping's direction (3), batch-norm statistics
and padding (8), resuming (9, 10), checkpoints (11) and the checkpoint-path
crashes, numbered as in the issue ("No silent wrong answers"); each test
asserts the exact outcome. Bad data and API misuse are in ``test_bad_input.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import on_cpu_devices
from flax import serialization

import annjax as ann
from annjax.training import loop
from annjax.training.epoch import plan_batches

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([0, 1, 1, 0], np.int32)
RNG = np.random.RandomState(0)
X = RNG.randn(32, 3).astype(np.float32)
LABELS = (X[:, 0] > 0).astype(np.int32)


def _fit_xor(**kwargs):
    """Returns ``ann.fit`` of an 8-2 MLP on XOR, one batch per epoch (the case
    tests' common run); ``kwargs`` add to or override its settings."""
    settings = {"batch_size": 4, "progress": False} | kwargs
    return ann.fit(ann.mlp([8, 2]), (XOR_X, XOR_Y), **settings)


def _finite(tree) -> bool:
    return all(bool(jnp.isfinite(a).all()) for a in jax.tree_util.tree_leaves(tree))


@pytest.fixture
def no_training(monkeypatch):
    """Makes any epoch fail the test: the error must come before training."""

    def forbidden(*args, **kwargs):
        raise AssertionError("fit reached training before rejecting its input")

    monkeypatch.setattr(loop, "run_epoch", forbidden)


# ------------------------------------------------------ case 1: the NaN guard


@pytest.mark.parametrize("lr", [1e19, 1e30])
@pytest.mark.parametrize("steps_per_call", [None, 1])
def test_case01_guard_never_returns_params_that_give_a_non_finite_loss(
    tmp_path, lr, steps_per_call
):
    # one batch per epoch: the overflow happens in the epoch's last update
    model, path = ann.mlp([8, 2]), tmp_path / "run.ckpt"
    result = ann.fit(
        model,
        (XOR_X, XOR_Y),
        optimizer=ann.sgd(lr),
        epochs=10,
        batch_size=4,
        progress=False,
        checkpoint=path,
        steps_per_call=steps_per_call,
    )
    assert result.stop_reason.startswith("non_finite:")
    assert "returned the params of" in result.stop_reason
    loss = ann.evaluate(model, result.params, result.state, (XOR_X, XOR_Y))["loss"]
    assert np.isfinite(loss)
    saved = ann.load(path)
    assert _finite(saved.params)
    saved_loss = ann.evaluate(model, saved.params, saved.state, (XOR_X, XOR_Y))
    assert saved_loss["loss"] == pytest.approx(loss)


def test_case01_guard_keeps_a_healthy_run():
    result = _fit_xor(
        optimizer=ann.sgd(0.5),
        epochs=5,
    )
    assert result.stop_reason == "completed" and result.params_epoch == 4


@pytest.mark.parametrize("steps_per_call", [None, 2])
def test_case01_fit_many_freezes_the_model_the_guard_rejects(steps_per_call):
    # model 1 overflows; model 0 trains on: each equals its own fit, and the
    # rejected one's final train state is the last finite one, frozen (the
    # loop, not the compiled epoch, keeps it while the other model goes on)
    keys = jax.random.split(jax.random.key(4), 2)
    kwargs = dict(epochs=6, batch_size=8, progress=False)
    kwargs["steps_per_call"] = steps_per_call
    model = ann.mlp([8, 2])
    many = ann.fit_many(
        model,
        (X, LABELS),
        keys=keys,
        lr_scale=[1.0, 1e19],
        optimizer=ann.sgd(0.1),
        **kwargs,
    )
    assert many.stop_reason[0] == "completed"
    assert many.stop_reason[1].startswith("non_finite:")
    assert many.model_epochs[1] < many.epochs == 6
    for i, lr in enumerate((0.1, 0.1 * 1e19)):
        alone = ann.fit(
            model, (X, LABELS), key=keys[i], optimizer=ann.sgd(lr), **kwargs
        )
        assert alone.stop_reason[:10] == many.stop_reason[i][:10]
        picked = many.select(i)
        for a, b in zip(
            jax.tree.leaves(alone.params), jax.tree.leaves(picked.params), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    frozen = jax.tree.map(lambda a: a[1], many.train_state.params)
    assert _finite(frozen)
    for a, b in zip(
        jax.tree.leaves(frozen), jax.tree.leaves(many.select(1).params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


# -------------------------------------------- case 3: EarlyStopping's direction


def test_case03_early_stopping_defaults_to_the_metrics_direction():
    assert ann.EarlyStopping().mode == "auto"
    assert ann.EarlyStopping("val_accuracy").direction() == "max"
    assert ann.EarlyStopping("val_loss").direction() == "min"


@pytest.mark.parametrize(
    ("monitor", "mode", "known"),
    [("val_accuracy", "min", "max"), ("val_loss", "max", "min")],
)
def test_case03_mode_against_the_metric_raises(no_training, monitor, mode, known):
    with pytest.raises(ValueError, match=rf"EarlyStopping mode: expected '{known}'"):
        ann.fit(
            ann.mlp([4, 2]),
            (X, LABELS),
            val_data=(X, LABELS),
            epochs=1,
            metrics=("accuracy",),
            early_stopping=ann.EarlyStopping(monitor, mode=mode),
            progress=False,
        )


def test_case03_val_accuracy_restores_the_best_not_the_worst_epoch():
    result = ann.fit(
        ann.mlp([8, 2]),
        (X, LABELS),
        val_data=(X, LABELS),
        epochs=8,
        batch_size=8,
        optimizer=ann.sgd(0.5),
        metrics=("accuracy",),
        progress=False,
        early_stopping=ann.EarlyStopping("val_accuracy", patience=8),
    )
    acc = result.history["val_accuracy"]
    assert result.best_epoch == int(np.argmax(acc))


# ------------------------------------------ case 8: batch norm and the padding


def test_case08_batch_norm_statistics_are_weighted_by_the_example_weights():
    bn = ann.batch_norm(momentum=0.0)
    _, p, s = bn.init(jax.random.key(0), (3,))
    x = np.concatenate([RNG.randn(2, 3), np.full((126, 3), 100.0)]).astype(np.float32)
    w = np.r_[np.ones(2), np.zeros(126)].astype(np.float32)
    _, s = bn.apply(p, s, x, train=True, weights=w)
    np.testing.assert_allclose(s["mean"], x[:2].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s["var"], x[:2].var(0), rtol=1e-4, atol=1e-6)


def test_case08_weighted_statistics_of_images_count_every_pixel_of_real_examples():
    bn = ann.batch_norm(momentum=0.0)
    _, p, s = bn.init(jax.random.key(0), (4, 4, 2))
    x = RNG.randn(5, 4, 4, 2).astype(np.float32)
    w = np.array([1, 1, 1, 0, 0], np.float32)
    _, s = bn.apply(p, s, x, train=True, weights=w)
    np.testing.assert_allclose(s["mean"], x[:3].mean((0, 1, 2)), rtol=1e-5, atol=1e-6)


def test_case08_combinators_forward_weights_only_to_children_that_take_them():
    def plain_apply(params, state, x, *, key=None, train=False):  # no weights=
        return 2.0 * x, state

    plain = ann.Layer(lambda key, shape: (shape, {}, {}), plain_apply)
    assert not ann.takes_weights(plain) and ann.takes_weights(ann.batch_norm())
    model = ann.serial(plain, ann.residual(ann.serial(ann.batch_norm(momentum=0.0))))
    _, p, s = model.init(jax.random.key(0), (3,))
    x = np.concatenate([RNG.randn(4, 3), np.full((4, 3), 50.0)]).astype(np.float32)
    w = np.r_[np.ones(4), np.zeros(4)].astype(np.float32)
    _, s = model.apply(p, s, x, train=True, weights=w)
    mean = s["residual_1"]["batch_norm_0"]["mean"]
    np.testing.assert_allclose(mean, 2.0 * x[:4].mean(0), rtol=1e-5, atol=1e-6)


def _weighted_stats(x, w):
    mean = np.average(x, axis=0, weights=w)
    return mean, np.average((x - mean) ** 2, axis=0, weights=w)


def _fit_batch_norm_alone(x, batch: int, momentum: float):
    """Returns ``(result, idx, weights)``: one epoch of ``fit`` of a lone batch
    norm on ``x`` (its input is x itself), and fit's plan of that epoch replayed
    (each step's rows and weights), the oracle's batches."""
    n = x.shape[0]
    result = ann.fit(
        ann.batch_norm(momentum=momentum),
        (x, np.zeros((n, x.shape[1]), np.float32)),
        loss="mse",
        epochs=1,
        batch_size=batch,
        progress=False,
        key=jax.random.key(0),
    )
    _, train_key = jax.random.split(jax.random.key(0))
    plan = plan_batches(batch, train_key, 0, n)
    return result, np.asarray(plan.idx), np.asarray(plan.weights)


def test_case08_fit_never_moves_running_statistics_toward_the_padding():
    n, batch, momentum = 130, 128, 0.5
    x = (RNG.randn(n, 3) * [1, 2, 3] + [1, 10, 100]).astype(np.float32)
    result, idx, weights = _fit_batch_norm_alone(x, batch, momentum)
    assert weights[-1].sum() == n - batch  # the last batch is mostly padding
    mean, var = np.zeros(3), np.ones(3)
    for i, w in zip(idx, weights, strict=True):
        m, v = _weighted_stats(x[i].astype(np.float64), w)
        mean, var = (
            momentum * mean + (1 - momentum) * m,
            momentum * var + (1 - momentum) * v,
        )
    np.testing.assert_allclose(result.state["mean"], mean, rtol=1e-4)
    np.testing.assert_allclose(result.state["var"], var, rtol=1e-3)


# ------------------------------------------------------------ cases 9 and 10


@pytest.fixture
def unrestored_run(tmp_path):
    """A 5-epoch XOR run whose loss is best in epoch 1, saved without restore_best."""
    path = tmp_path / "run.ckpt"
    first = _fit_xor(
        optimizer=ann.sgd(5.0),
        epochs=5,
        checkpoint=path,
    )
    assert int(np.argmin(first.history["loss"])) != first.params_epoch
    return path


def test_case09_resume_restore_best_without_the_best_params_raises(unrestored_run):
    with pytest.raises(ValueError, match=r"restore_best=True\) needs the params of"):
        _fit_xor(
            optimizer=ann.sgd(5.0),
            epochs=1,
            resume=unrestored_run,
            early_stopping=ann.EarlyStopping("loss", restore_best=True),
        )


def test_case09_resume_without_restore_best_continues(unrestored_run):
    result = _fit_xor(
        optimizer=ann.sgd(5.0),
        epochs=1,
        resume=unrestored_run,
        early_stopping=ann.EarlyStopping("loss", restore_best=False, patience=9),
    )
    assert result.epochs == 6 and result.params_epoch == 5


@pytest.mark.parametrize(
    "change",
    [
        {"metrics": ("accuracy",)},
        {"val_data": (XOR_X, XOR_Y)},
        {"log_steps": True},
        {"track_gradients": True},
    ],
    ids=["metrics", "val_data", "log_steps", "track_gradients"],
)
def test_case10_resume_with_another_history_raises(unrestored_run, change):
    with pytest.raises(ValueError, match=r"resume: "):
        _fit_xor(optimizer=ann.sgd(5.0), epochs=1, resume=unrestored_run, **change)


def test_case10_resume_with_the_same_history_has_aligned_arrays(unrestored_run):
    result = _fit_xor(
        optimizer=ann.sgd(5.0),
        epochs=2,
        resume=unrestored_run,
    )
    assert {len(v) for v in result.history.values()} == {7}


# ----------------------------------------------------- case 11: checksums


def test_case11_a_flipped_bit_in_a_checkpoint_raises(unrestored_run):
    data = bytearray(unrestored_run.read_bytes())
    data[-20] ^= 0x01
    unrestored_run.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"is corrupted: its contents do not match"):
        ann.load(unrestored_run)


# ------------------------------------------------------------ obscure crashes


def test_crash_a_foreign_msgpack_file_raises_a_clear_error(tmp_path):
    path = tmp_path / "other.msgpack"
    path.write_bytes(serialization.msgpack_serialize({"weights": np.ones(3)}))
    with pytest.raises(ValueError, match=r"load: expected an annjax checkpoint"):
        ann.load(path)
    with pytest.raises(ValueError, match=r"expected an annjax checkpoint"):
        ann.fit(ann.mlp([4, 2]), (X, LABELS), epochs=1, progress=False, resume=path)


def test_crash_checkpoint_at_a_folder_raises_before_training(no_training, tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint: expected a file path, not a"):
        ann.fit(ann.mlp([4, 2]), (X, LABELS), progress=False, checkpoint=tmp_path)


def test_crash_checkpoint_under_a_file_raises_before_training(no_training, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=r"a path whose parent is a folder.*is a file"):
        ann.fit(
            ann.mlp([4, 2]),
            (X, LABELS),
            progress=False,
            checkpoint=blocker / "run.ckpt",
        )


# ------------------- issue 21, case 2: a last batch with one real example


def test_issue21_case2_one_real_example_leaves_the_running_statistics():
    # issue 21's reproducer: 5 examples in batches of 4, the last holds one
    x, key = X[:5], jax.random.key(0)
    model = ann.serial(ann.dense(3), ann.batch_norm(momentum=0.0), ann.dense(2))
    result = ann.fit(
        model, (x, LABELS[:5]), batch_size=4, epochs=1, progress=False, key=key
    )
    # oracle: the statistics of the first batch's dense outputs (init params)
    init_key, train_key = jax.random.split(key)
    plan = plan_batches(4, train_key, 0, 5)
    idx, weights = np.asarray(plan.idx), np.asarray(plan.weights)
    assert weights.sum(axis=1).tolist() == [4, 1]
    _, params, _ = model.init(init_key, (3,))
    w, b = (np.asarray(params["dense_0"][k], np.float64) for k in "wb")
    h = x[idx[0]] @ w.T + b
    var = result.state["batch_norm_1"]["var"]
    np.testing.assert_allclose(var, h.var(axis=0), rtol=1e-4)  # was exactly 0
    np.testing.assert_allclose(result.state["batch_norm_1"]["mean"], h.mean(0), 1e-4)


def test_issue21_case2_running_statistics_are_those_of_the_last_full_batch():
    # batch norm alone: its input is x itself, so fit's plan gives the oracle
    n, batch = 5, 4
    x = (RNG.randn(n, 3) * [1, 2, 3] + [1, 10, 100]).astype(np.float32)
    result, idx, weights = _fit_batch_norm_alone(x, batch, momentum=0.0)
    assert weights.sum(axis=1).tolist() == [4, 1]
    mean, var = _weighted_stats(x[idx[0]].astype(np.float64), weights[0])
    np.testing.assert_allclose(result.state["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(result.state["var"], var, rtol=1e-4)


def test_issue21_case2_fit_many_equals_each_fit():
    keys = [jax.random.key(1), jax.random.key(2)]
    model = ann.serial(ann.dense(3), ann.batch_norm(momentum=0.0), ann.dense(2))
    data = (X[:5], LABELS[:5])
    many = ann.fit_many(model, data, keys=keys, batch_size=4, epochs=1, progress=False)
    for i, key in enumerate(keys):
        one = ann.fit(model, data, key=key, batch_size=4, epochs=1, progress=False)
        var = np.asarray(many.state["batch_norm_1"]["var"][i])
        assert (var > 1e-3).all()
        np.testing.assert_allclose(var, one.state["batch_norm_1"]["var"], rtol=1e-5)


_MESH_SCRIPT = """
import json, jax, numpy as np, annjax as ann
from jax.sharding import Mesh
rng = np.random.RandomState(0)
x = rng.randn(9, 3).astype(np.float32)
y = (x[:, 0] > 0).astype(np.int32)
model = ann.serial(ann.dense(3), ann.batch_norm(momentum=0.0), ann.dense(2))
mesh = Mesh(np.array(jax.devices()), ("data",))
kw = dict(batch_size=8, epochs=1, progress=False, key=jax.random.key(0))
on_mesh = ann.fit(model, (x, y), mesh=mesh, **kw)
one = ann.fit(model, (x, y), **kw)
print("RESULT " + json.dumps({
    "devices": len(jax.devices()),
    "mesh": np.asarray(on_mesh.state["batch_norm_1"]["var"]).tolist(),
    "one": np.asarray(one.state["batch_norm_1"]["var"]).tolist(),
}))
"""


def test_issue21_case2_on_a_mesh_of_8_devices():
    out = on_cpu_devices(["-c", _MESH_SCRIPT])
    assert out["devices"] == 8
    assert min(out["mesh"]) > 1e-3  # the one-example batch of 8 left it alone
    np.testing.assert_allclose(out["mesh"], out["one"], rtol=1e-5)
