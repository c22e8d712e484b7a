"""Resume: every model kind continues bit-identically; the resuming call's
hyper-parameters win; metrics are keyed by the object the user passed."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import annjax as ann

RNG = np.random.default_rng(0)
X = RNG.normal(size=(24, 4)).astype("f4")
Y = (X[:, 0] > 0).astype("i4")
IMAGES = RNG.normal(size=(24, 4, 4, 1)).astype("f4")


def _flax_model():
    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.relu(nn.Dense(4)(x)))

    return ann.from_flax(Tiny())


# no plain MLP: batch_norm is annjax's MLP with state added, and from_flax a
# stateless, deterministic one, so a plain MLP would replay paths both take
KINDS = {
    "batch_norm": (lambda: ann.mlp([4, 2], batch_norm=True), X),
    "dropout": (
        lambda: ann.serial(ann.dense(4, "relu"), ann.dropout(0.3), ann.dense(2)),
        X,
    ),
    "conv": (
        lambda: ann.serial(ann.conv2d(2, 3), ann.flatten(), ann.dense(2)),
        IMAGES,
    ),
    "from_flax": (_flax_model, X),
}


def _assert_same(a, b):
    assert set(a.history) == set(b.history)
    for name in a.history:
        np.testing.assert_array_equal(a.history[name], b.history[name], err_msg=name)
    for x, y in zip(
        jax.tree_util.tree_leaves((a.params, a.state)),
        jax.tree_util.tree_leaves((b.params, b.state)),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("many", [False, True], ids=["fit", "fit_many"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_resume_is_bit_identical_to_an_uninterrupted_run(kind, many, tmp_path):
    factory, x = KINDS[kind]
    model = factory()
    train = fit = ann.fit_many if many else ann.fit
    extra = {"keys": jax.random.split(jax.random.key(3), 2)} if many else {}
    kwargs = dict(
        val_data=(x[:8], Y[:8]),
        optimizer=ann.adam(1e-2),
        batch_size=8,
        metrics=("accuracy",),
        track_gradients=True,
        track_every=1,
        log_steps=True,
        progress=False,
        **extra,
    )
    whole = fit(model, (x, Y), epochs=4, **kwargs)
    path = tmp_path / "run.ckpt"
    train(model, (x, Y), epochs=2, checkpoint=path, **kwargs)
    resumed = train(model, (x, Y), epochs=2, resume=path, **kwargs)
    assert resumed.epochs == 4
    _assert_same(whole, resumed)


def test_a_new_learning_rate_applies_from_the_first_resumed_epoch(tmp_path):
    # Oracle: one uninterrupted run whose learning rate changes at step 8
    # (2 epochs of 4 steps), as a schedule.
    model, path = ann.mlp([4, 2]), tmp_path / "run.ckpt"
    common = dict(batch_size=6, progress=False)
    ann.fit(model, (X, Y), optimizer=ann.sgd(0.1), epochs=2, checkpoint=path, **common)
    resumed = ann.fit(
        model, (X, Y), optimizer=ann.sgd(0.5), epochs=2, resume=path, **common
    )
    schedule = optax.piecewise_constant_schedule(0.1, {8: 5.0})
    oracle = ann.fit(model, (X, Y), optimizer=ann.sgd(schedule), epochs=4, **common)
    np.testing.assert_allclose(resumed.history["lr"], [0.1, 0.1, 0.5, 0.5])
    for a, b in zip(
        jax.tree_util.tree_leaves(resumed.params),
        jax.tree_util.tree_leaves(oracle.params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_fit_many_resumes_with_its_new_lr_scale(tmp_path):
    model, path = ann.mlp([4, 2]), tmp_path / "many.ckpt"
    common = dict(optimizer=ann.sgd(0.1), batch_size=8, progress=False)
    ann.fit_many(
        model, (X, Y), lr_scale=[1.0, 1.0], epochs=1, checkpoint=path, **common
    )
    more = ann.fit_many(
        model, (X, Y), lr_scale=[1.0, 10.0], epochs=1, resume=path, **common
    )
    np.testing.assert_allclose(more.history["lr"][-1], [0.1, 1.0])
    np.testing.assert_array_equal(more.hyper["lr_scale"], [1.0, 10.0])


def test_resume_with_another_optimizer_family_names_the_change(tmp_path):
    model, path = ann.mlp([4, 2]), tmp_path / "run.ckpt"
    ann.fit(
        model, (X, Y), optimizer=ann.sgd(0.1), epochs=1, checkpoint=path, progress=False
    )
    with pytest.raises(ValueError, match=r"resume: .*same optimizer family"):
        ann.fit(
            model,
            (X, Y),
            optimizer=ann.adam(0.1),
            epochs=1,
            resume=path,
            progress=False,
        )


def test_resume_with_a_new_l2_applies_it(tmp_path):
    model, path = ann.mlp([4, 2]), tmp_path / "run.ckpt"
    common = dict(optimizer=ann.sgd(0.1), batch_size=8, progress=False)
    ann.fit(model, (X, Y), epochs=1, checkpoint=path, **common)
    plain = ann.fit(model, (X, Y), epochs=1, resume=path, **common)
    ann.fit(model, (X, Y), epochs=1, checkpoint=path, **common)
    decayed = ann.fit(model, (X, Y), epochs=1, resume=path, l2=0.5, **common)
    # λ₂ Σ w² pulls every weight towards 0: the decayed weights are smaller.
    w_plain = plain.params["dense_0"]["w"]
    w_decayed = decayed.params["dense_0"]["w"]
    assert float(jnp.sum(w_decayed**2)) < float(jnp.sum(w_plain**2))


@pytest.mark.parametrize("name", ["accuracy", "f1"])
def test_a_user_metric_named_like_a_built_in_is_used_as_given(name):
    def metric(y_true, y_pred):
        return jnp.float32(0.123)

    metric.__name__ = name
    r = ann.fit(
        ann.mlp([4, 2]),
        (X, Y),
        val_data=(X, Y),
        metrics=(metric,),
        epochs=1,
        batch_size=8,
        progress=False,
    )
    np.testing.assert_allclose(r.history[name], [0.123])
    np.testing.assert_allclose(r.history[f"val_{name}"], [0.123])


def test_two_metrics_with_one_name_are_refused_naming_both():
    def accuracy(y_true, y_pred):
        return 0.0

    with pytest.raises(ValueError, match=r"'accuracy' and <function.*accuracy"):
        ann.fit(ann.mlp([4, 2]), (X, Y), metrics=("accuracy", accuracy), progress=False)
