"""The one training loop: fit is its one-model case, fit_many its N-model case.

Every decision between epochs (history, NaN guard, early stopping, best epoch
and params) is made in one place, so a model of fit_many and a fit with the
same key must agree on all of them.
"""

from __future__ import annotations

import chex
import jax
import numpy as np
import optax
import pytest

import annjax as ann

# Equal up to float reassociation: vmapped matmuls may sum in another order.
TOL = {"rtol": 1e-4, "atol": 1e-5}
KEYS = jax.random.split(jax.random.key(11), 3)
MODEL = ann.mlp([8, 3])


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 4)) * 1.5
    y = rng.integers(0, 3, 150).astype(np.int32)
    x = (centers[y] + rng.normal(size=(150, 4))).astype(np.float32)
    return (x[:100], y[:100]), (x[100:], y[100:])


ES = ann.EarlyStopping(monitor="val_loss", patience=2, min_delta=0.02)


@pytest.fixture(scope="module")
def stopped(blobs):
    train, val = blobs
    kw = dict(
        val_data=val,
        optimizer=ann.adam(0.05),
        epochs=25,
        batch_size=32,
        metrics=("accuracy",),
        early_stopping=ES,
        progress=False,
    )
    many = ann.fit_many(MODEL, train, keys=KEYS, **kw)
    alone = [ann.fit(MODEL, train, key=k, **kw) for k in KEYS]
    return many, alone


@pytest.mark.parametrize("i", range(3))
def test_fit_many_with_min_delta_equals_fit(stopped, i):
    many, alone = stopped
    one, mine = many.select(i), alone[i]
    assert one.best_epoch == mine.best_epoch
    assert one.stop_reason == mine.stop_reason
    assert one.epochs == mine.epochs
    assert one.params_epoch == mine.params_epoch == mine.best_epoch
    chex.assert_trees_all_close(one.params, mine.params, **TOL)
    for name in mine.history:
        np.testing.assert_allclose(one.history[name], mine.history[name], **TOL)


def test_early_stopping_really_stopped_with_min_delta(stopped):
    _, alone = stopped
    assert any(r.stop_reason.startswith("early_stopping") for r in alone)
    for r in alone:  # the tracker's best epoch, not the plain argmin
        values = r.history["val_loss"]
        best = r.best_epoch
        assert all(
            values[best] - values[e] <= ES.min_delta for e in range(best, len(values))
        )


def test_lr_scale_is_exact_for_an_injected_optimizer(blobs):
    train, _ = blobs
    opt = optax.inject_hyperparams(optax.rmsprop)(learning_rate=1e-2)
    many = ann.fit_many(
        MODEL,
        train,
        keys=KEYS[:2],
        lr_scale=[1.0, 3.0],
        optimizer=opt,
        epochs=2,
        batch_size=32,
        progress=False,
    )
    scaled = optax.inject_hyperparams(optax.rmsprop)(learning_rate=3e-2)
    alone = ann.fit(
        MODEL,
        train,
        key=KEYS[1],
        optimizer=scaled,
        epochs=2,
        batch_size=32,
        progress=False,
    )
    chex.assert_trees_all_close(many.select(1).params, alone.params, **TOL)
    np.testing.assert_allclose(many.history["lr"][:, 1], [3e-2, 3e-2], rtol=1e-6)


def test_lr_scale_scales_an_optimizer_without_an_injected_rate(blobs):
    # optax.sgd injects no rate: the factor scales its updates, α·s
    kwargs = dict(optimizer=optax.sgd(0.1), epochs=2, progress=False)
    many = ann.fit_many(
        MODEL, blobs[0], keys=[jax.random.key(3)] * 2, lr_scale=[1.0, 2.0], **kwargs
    )
    kwargs["optimizer"] = optax.sgd(0.2)
    one = ann.fit(MODEL, blobs[0], key=jax.random.key(3), **kwargs)
    chex.assert_trees_all_close(many.select(1).params, one.params, rtol=1e-5)


def test_a_plain_list_of_keys_is_accepted(blobs):
    r = ann.fit_many(
        MODEL,
        blobs[0],
        keys=[jax.random.key(i) for i in range(2)],
        epochs=1,
        progress=False,
    )
    assert r.history["loss"].shape == (1, 2)


def median_abs_error(y_true, y_pred):
    """A metric that is not a mean: per-batch averages would get it wrong."""
    return np.median(np.abs(np.asarray(y_true) - np.asarray(y_pred)))


def _median_abs_error(y_true, y_pred):
    import jax.numpy as jnp

    return jnp.median(jnp.abs(y_true - y_pred))


_median_abs_error.__name__ = "median_abs_error"


def test_custom_metric_functions_in_fit_fit_many_evaluate_and_early_stopping(blobs):
    (x, _), (xv, _) = blobs
    y, yv = x @ np.ones(4, np.float32), xv @ np.ones(4, np.float32)
    es = ann.EarlyStopping(monitor="val_median_abs_error", patience=1, mode="min")
    kw = dict(loss="mse", metrics=(_median_abs_error, "mae"), progress=False)
    r = ann.fit(
        ann.mlp([4, 1]),
        (x, y),
        val_data=(xv, yv),
        optimizer=optax.set_to_zero(),
        epochs=3,
        early_stopping=es,
        batch_size=32,
        **kw,
    )
    assert {"median_abs_error", "val_median_abs_error"} <= set(r.history)
    pred = np.asarray(ann.predict(ann.mlp([4, 1]), r.params, r.state, x))[:, 0]
    # all of the epoch's predictions at once, padding excluded (100 = 3·32 + 4)
    np.testing.assert_allclose(
        r.history["median_abs_error"][0], median_abs_error(y, pred), rtol=1e-5
    )
    logs = ann.evaluate(
        ann.mlp([4, 1]),
        r.params,
        r.state,
        (xv, yv),
        **{k: v for k, v in kw.items() if k != "progress"},
    )
    np.testing.assert_allclose(
        logs["median_abs_error"], r.history["val_median_abs_error"][0], rtol=1e-6
    )
    assert r.stop_reason.startswith("early_stopping: val_median_abs_error")
    many = ann.fit_many(ann.mlp([4, 1]), (x, y), keys=KEYS[:2], epochs=1, **kw)
    assert many.history["median_abs_error"].shape == (1, 2)


def test_early_stopping_on_a_custom_metric_needs_a_mode(blobs):
    train, val = blobs

    def hits(y_true, y_pred):
        return (y_pred.argmax(-1) == y_true).mean()

    with pytest.raises(ValueError, match="'min' or 'max' for the custom metric 'hits'"):
        ann.fit(
            MODEL,
            train,
            val_data=val,
            metrics=(hits,),
            progress=False,
            early_stopping=ann.EarlyStopping(monitor="val_hits"),
        )


def test_metric_names_must_be_distinct(blobs):
    def accuracy(y_true, y_pred):
        return 0.0

    with pytest.raises(
        ValueError, match=r"expected distinct history names.*both named .accuracy."
    ):
        ann.fit(MODEL, blobs[0], metrics=("accuracy", accuracy), progress=False)
    with pytest.raises(ValueError, match="a named function"):
        ann.fit(MODEL, blobs[0], metrics=(lambda t, p: 0.0,), progress=False)


def test_a_custom_loss_gets_integer_labels(blobs):
    train, _ = blobs
    seen = []

    def my_cross_entropy(y_true, y_pred, reduction="mean"):
        seen.append(y_true.dtype)
        per = optax.softmax_cross_entropy_with_integer_labels(y_pred, y_true)
        return per if reduction == "none" else per.mean()

    kw = dict(epochs=2, batch_size=32, key=KEYS[0], progress=False)
    mine = ann.fit(MODEL, train, loss=my_cross_entropy, **kw)
    ref = ann.fit(MODEL, train, loss="softmax_cross_entropy", **kw)
    assert all(np.issubdtype(d, np.integer) for d in seen)
    chex.assert_trees_all_close(mine.params, ref.params, rtol=1e-6, atol=1e-7)


def test_fit_many_resumes_as_if_never_interrupted(blobs, tmp_path):
    train, val = blobs
    kw = dict(
        val_data=val,
        keys=KEYS,
        l2=[0.0, 1e-3, 1e-2],
        optimizer=ann.adam(0.02),
        batch_size=32,
        metrics=("accuracy",),
        progress=False,
    )
    straight = ann.fit_many(MODEL, train, epochs=4, **kw)
    path = tmp_path / "many.ckpt"
    ann.fit_many(MODEL, train, epochs=2, checkpoint=path, **kw)
    assert isinstance(ann.load(path), ann.ManyResult)
    resumed = ann.fit_many(MODEL, train, epochs=2, resume=path, **kw)
    assert resumed.epochs == 4
    chex.assert_trees_all_equal(resumed.params, straight.params)
    for name, values in straight.history.items():
        np.testing.assert_array_equal(resumed.history[name], values, err_msg=name)
    with pytest.raises(ValueError, match="expected a checkpoint of FitResult"):
        ann.fit(MODEL, train, val_data=val, epochs=1, resume=path, progress=False)


def test_fit_and_fit_many_declare_their_options_as_the_run_record_does():
    # fit and fit_many forward their arguments to record.resolve as given
    # (locals()), so the three signatures must name the same options with
    # the same defaults: a default changed in one place only fails here
    import inspect

    from annjax.training.record import resolve

    record = inspect.signature(resolve).parameters
    for public in (ann.fit, ann.fit_many):
        for name, parameter in inspect.signature(public).parameters.items():
            assert name in record, f"{public.__name__}({name}=) is not in resolve"
            assert parameter.default == record[name].default, (public, name)
            assert parameter.kind == record[name].kind, (public, name)
    fit_only = set(inspect.signature(ann.fit).parameters) - set(
        inspect.signature(ann.fit_many).parameters
    )
    assert fit_only == {"key"}  # fit_many takes keys instead
