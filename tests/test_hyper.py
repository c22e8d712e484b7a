"""Named hyper-parameters: swept per model, equal to a fit with that value."""

import jax
import numpy as np
import optax
import pytest
from conftest import tiny_split

import annjax as ann
from annjax import hyperparams

# Equal up to float rounding: a traced rate (float32) against a Python float.
TOL = {"rtol": 1e-4, "atol": 1e-5}
KEYS = jax.random.split(jax.random.key(1), 2)
RATES = [0.1, 0.5]


@pytest.fixture(scope="module")
def data():
    return tiny_split()


def _net(rate):
    return ann.serial(
        ann.dense(8), ann.activation("relu"), ann.dropout(rate), ann.dense(3)
    )


ARGS = {"optimizer": ann.sgd(0.1), "epochs": 2, "batch_size": 8, "progress": False}


def _close(a, b):
    for u, v in zip(
        jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True
    ):
        np.testing.assert_allclose(u, v, **TOL)


@pytest.fixture(scope="module")
def swept(data):
    return ann.fit_many(
        _net(ann.hyper("p")), data[0], val_data=data[1], keys=KEYS,
        hyper={"p": RATES}, **ARGS,
    )  # fmt: skip


@pytest.mark.parametrize("i", [0, 1])
def test_a_swept_dropout_rate_equals_a_fit_with_that_rate(data, swept, i):
    alone = ann.fit(_net(RATES[i]), data[0], val_data=data[1], key=KEYS[i], **ARGS)
    picked = swept.select(i)
    _close(alone.params, picked.params)
    np.testing.assert_allclose(alone.history["loss"], picked.history["loss"], **TOL)
    # fit takes the same hyper=, one value: a single run is written alike
    named = ann.fit(
        _net(ann.hyper("p")), data[0], val_data=data[1], key=KEYS[i],
        hyper={"p": RATES[i]}, **ARGS,
    )  # fmt: skip
    _close(named.params, picked.params)
    np.testing.assert_array_equal(swept.hyper["p"], np.float32(RATES))


def test_a_swept_cosine_schedule_equals_a_fit_with_the_schedule_scaled(data):
    schedule = optax.cosine_decay_schedule(0.1, 8)
    many = ann.fit_many(
        ann.mlp([8, 3]), data[0], keys=KEYS, lr_scale=[1.0, 0.5],
        **{**ARGS, "optimizer": ann.sgd(schedule, momentum=0.9)},
    )  # fmt: skip
    alone = ann.fit(
        ann.mlp([8, 3]), data[0], key=KEYS[1],
        **{**ARGS, "optimizer": ann.sgd(lambda t: 0.5 * schedule(t), momentum=0.9)},
    )  # fmt: skip
    _close(alone.params, many.select(1).params)


def test_an_injected_optimizer_hyper_parameter_is_swept(data):
    def adam(b1):
        return optax.inject_hyperparams(optax.adam)(learning_rate=1e-2, b1=b1)

    many = ann.fit_many(
        ann.mlp([8, 3]), data[0], keys=KEYS, hyper={"b1": [0.9, 0.5]},
        **{**ARGS, "optimizer": adam(0.9)},
    )  # fmt: skip
    alone = ann.fit(
        ann.mlp([8, 3]), data[0], key=KEYS[1], **{**ARGS, "optimizer": adam(0.5)}
    )
    _close(alone.params, many.select(1).params)


def test_table_sorts_configurations_and_best_returns_the_winner(swept):
    table = swept.table("val_loss")
    assert [list(r) for r in table.rows] == [["model", "p", "val_loss", "epoch"]] * 2
    values = [r["val_loss"] for r in table.rows]
    assert values == sorted(values)
    top = table.rows[0]
    column = swept.history["val_loss"][:, top["model"]]
    assert top["val_loss"] == pytest.approx(float(np.min(column)))
    assert top["epoch"] == int(np.argmin(column))
    assert str(table).splitlines()[0].split() == ["model", "p", "val_loss", "epoch"]
    best = swept.best("val_loss")
    _close(best.params, swept.select(top["model"]).params)
    with pytest.raises(ValueError, match="table metric"):
        swept.table("val_accuracy")


@pytest.mark.parametrize(
    ("hyper", "error", "match"),
    [
        ({"q": [0.1, 0.2]}, ValueError, "expected names the model"),
        ({"p": [0.1, 0.2, 0.3]}, ValueError, "one value per model"),
        ({"p": ["a", 0.2]}, TypeError, "real number"),
        ({"p": [0.1, 1.5]}, ValueError, "dropout rate"),
        ({}, ValueError, "a value for each ann.hyper"),
        ([0.1], TypeError, "dict of names"),
    ],
)
def test_bad_hyper_specs_are_refused_before_anything_compiles(
    data, hyper, error, match
):
    with ann.count_compiles() as compiles, pytest.raises(error, match=match):
        ann.fit_many(_net(ann.hyper("p")), data[0], keys=KEYS, hyper=hyper, **ARGS)
    assert compiles.requests == 0


def test_a_value_outside_any_run_is_its_default_or_an_error():
    assert hyperparams.value(ann.hyper("p", default=0.2)) == 0.2
    with pytest.raises(ValueError, match="expected a value from the run"):
        hyperparams.value(ann.hyper("p"))
    with pytest.raises(TypeError, match="hyper name"):
        ann.hyper("")


def test_fit_takes_one_number_per_name(data):
    with pytest.raises(TypeError, match=r"hyper\['p'\]: expected a real number"):
        ann.fit(_net(ann.hyper("p")), data[0], hyper={"p": [0.1, 0.2]}, **ARGS)
    with pytest.raises(ValueError, match=r"a value for each ann\.hyper"):
        ann.fit(_net(ann.hyper("p")), data[0], **ARGS)
