"""fit_many: many models in one compiled call, each equal to its own fit."""

import jax
import numpy as np
import pytest

import annjax as ann

# Equal up to float reassociation: vmapped matmuls may sum in another order.
TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 4)) * 3
    y = rng.integers(0, 3, 120).astype(np.int32)
    x = (centers[y] + rng.normal(size=(120, 4))).astype(np.float32)
    return (x[:90], y[:90]), (x[90:], y[90:])


MODEL = ann.mlp([8, 3])
KEYS = jax.random.split(jax.random.key(7), 3)


@pytest.fixture(scope="module")
def sweep(blobs):
    train, val = blobs
    return ann.fit_many(
        MODEL,
        train,
        val_data=val,
        keys=KEYS,
        l2=[0.0, 1e-3, 1e-2],
        lr_scale=[1.0, 0.5, 2.0],
        optimizer=ann.sgd(0.1, momentum=0.9),
        epochs=4,
        batch_size=16,
        metrics=("accuracy",),
        progress=False,
    )


def test_history_has_a_model_axis(sweep):
    assert sweep.history["loss"].shape == (4, 3)
    assert sweep.history["val_accuracy"].shape == (4, 3)
    assert sweep.params["dense_0"]["w"].shape == (3, 8, 4)
    np.testing.assert_array_equal(sweep.hyper["lr_scale"], [1.0, 0.5, 2.0])
    assert sweep.stop_reason == ["completed"] * 3


@pytest.mark.parametrize("i", [0, 2])
def test_each_model_equals_its_own_fit(blobs, sweep, i):
    train, val = blobs
    alone = ann.fit(
        MODEL,
        train,
        val_data=val,
        key=KEYS[i],
        l2=[0.0, 1e-3, 1e-2][i],
        optimizer=ann.sgd(0.1 * [1.0, 0.5, 2.0][i], momentum=0.9),
        epochs=4,
        batch_size=16,
        metrics=("accuracy",),
        progress=False,
    )
    picked = sweep.select(i)
    for a, b in zip(
        jax.tree_util.tree_leaves(alone.params),
        jax.tree_util.tree_leaves(picked.params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, **TOL)
    np.testing.assert_allclose(
        alone.history["val_loss"], picked.history["val_loss"], **TOL
    )
    assert picked.epochs == 4 and picked.best_epoch == alone.best_epoch


def test_early_stopping_freezes_each_model(blobs):
    train, val = blobs
    result = ann.fit_many(
        MODEL,
        train,
        val_data=val,
        keys=KEYS[:2],
        lr_scale=[1.0, 1e-6],  # the second barely moves: it stops first
        optimizer=ann.sgd(0.1),
        epochs=30,
        batch_size=16,
        early_stopping=ann.EarlyStopping(patience=2, min_delta=1e-3),
        progress=False,
    )
    stopped = result.model_epochs
    assert stopped[1] < result.epochs
    assert result.stop_reason[1].startswith("early_stopping")
    # after it stopped, its rows are NaN and its params are its best epoch's
    assert np.isnan(result.history["loss"][stopped[1] :, 1]).all()
    best = result.select(1)
    assert len(best.history["loss"]) == stopped[1]
    evaluated = ann.evaluate(MODEL, best.params, best.state, val)["loss"]
    np.testing.assert_allclose(
        evaluated, best.history["val_loss"][best.best_epoch], rtol=1e-5
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"l2": [0.0, 1.0], "lr_scale": [1.0, 2.0, 3.0]}, "one value per model"),
        ({"l1": [-1.0, 0.0]}, "l1: expected finite values >= 0"),
        ({"lr_scale": [0.0, 1.0]}, "lr_scale"),
        ({"keys": jax.random.key(0)}, "keys"),
        ({"l2": [[0.1]]}, "l2"),
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_are_refused(blobs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ann.fit_many(MODEL, blobs[0], progress=False, **kwargs)


def test_select_refuses_an_index_out_of_range(sweep):
    with pytest.raises(ValueError, match="model index"):
        sweep.select(3)


def test_train_eval_loss_of_models_with_state_equals_each_fit(blobs):
    """A batch-norm model records train_eval_loss per model, as its own fit."""
    train, val = blobs
    model = ann.mlp([8, 3], batch_norm=True)
    args = {"epochs": 2, "batch_size": 16, "metrics": ("accuracy",), "progress": False}
    many = ann.fit_many(model, train, val_data=val, keys=KEYS[:2], **args)
    assert many.history["train_eval_loss"].shape == (2, 2)
    assert many.history["train_eval_accuracy"].shape == (2, 2)
    alone = ann.fit(model, train, val_data=val, key=KEYS[1], **args)
    np.testing.assert_allclose(
        alone.history["train_eval_loss"], many.history["train_eval_loss"][:, 1], **TOL
    )
