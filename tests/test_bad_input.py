"""Bad input: every case of issue 13 about data, arguments and API misuse.

One test per case, numbered as in the issue ("No silent wrong answers"),
each asserting the exact outcome: the error type and the words of its
message, or the correct value. Training faults (NaN guard, early stopping,
checkpoints, batch-norm padding) are in ``test_faults.py``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import annjax as ann
from annjax import activations, regularizers
from annjax.training import loop

RNG = np.random.RandomState(0)
X = RNG.randn(32, 3).astype(np.float32)
LABELS = (X[:, 0] > 0).astype(np.int32)


class Started(Exception):
    """Raised when fit got past its checks into training."""


@pytest.fixture
def no_training(monkeypatch):
    """Makes any epoch fail the test: the error must come before compiling."""

    def forbidden(*args, **kwargs):
        raise Started("fit reached training before rejecting its input")

    monkeypatch.setattr(loop, "run_epoch", forbidden)


def _fit(model, data, **kwargs):
    return ann.fit(model, data, epochs=1, progress=False, **kwargs)


# ------------------------------------------------- case 2: softmax, one output


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "cross_entropy"])
def test_case02_multiclass_loss_on_one_output_raises(no_training, loss):
    with pytest.raises(ValueError, match=rf"loss: '{loss}' expected a model with one"):
        _fit(ann.mlp([8, 1]), (X, X[:, 0]), loss=loss)
    with pytest.raises(ValueError, match=r"Use loss='mse'.*sigmoid_binary_cross"):
        _fit(ann.mlp([8, 1]), (X, LABELS * 0), loss=loss)


def test_case02_evaluate_also_refuses_softmax_on_one_output():
    model = ann.dense(1)
    _, p, s = model.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"one output per class \(2 or more\)"):
        ann.evaluate(model, p, s, (X, X[:, 0]))


# ------------------------------------- case 4: optimizer arguments by keyword


@pytest.mark.parametrize("make", [ann.sgd, ann.adam, ann.adamw])
def test_case04_optimizer_arguments_after_lr_are_keyword_only(make):
    with pytest.raises(TypeError, match=r"positional argument"):
        make(0.1, 0.9, 1e-4)


def test_case04_sgd_keywords_do_what_they_say():
    # momentum 0.9 and weight decay 1e-4, not Nesterov: one step on w = 1, g = 0
    opt = ann.sgd(0.1, momentum=0.9, weight_decay=1e-4)
    params = {"w": jnp.ones((2, 2))}
    state = opt.init(params)
    updates, _ = opt.update(
        jax.tree_util.tree_map(jnp.zeros_like, params), state, params
    )
    np.testing.assert_allclose(updates["w"], -0.1 * 1e-4, rtol=1e-6)


# ---------------------------------------------- case 5: BCE labels outside {0, 1}


@pytest.mark.parametrize(
    "loss", ["sigmoid_binary_cross_entropy", "binary_cross_entropy"]
)
def test_case05_binary_loss_with_labels_outside_0_1_raises(no_training, loss):
    y = np.array([0, 1, 2] * 10 + [0, 1])
    with pytest.raises(
        ValueError, match=r"train_data y: expected targets in \[0, 1\].*from 0 to 2"
    ):
        _fit(ann.mlp([8, 1]), (X, y), loss=loss)


def test_case05_binary_loss_accepts_probabilities(no_training):
    with pytest.raises(Started):  # passes every check
        _fit(ann.mlp([8, 1]), (X, np.full(32, 0.25)), loss="binary_cross_entropy")


# -------------------------------------------- case 6: float32 range, complex


def test_case06_float64_beyond_float32_raises_naming_the_value(no_training):
    x = X.astype(np.float64)
    x[3, 1] = -1e39
    with pytest.raises(
        ValueError, match=r"train_data X: expected values that fit float32.*1e\+39"
    ):
        _fit(ann.mlp([8, 2]), (x, LABELS))
    with pytest.raises(ValueError, match=r"val_data X: .*max \|value\| = 1e\+39"):
        _fit(ann.mlp([8, 2]), (X, LABELS), val_data=(x, LABELS))


def test_case06_float64_targets_beyond_float32_raise(no_training):
    with pytest.raises(ValueError, match=r"train_data y: expected values that fit"):
        _fit(ann.mlp([8, 1]), (X, np.full(32, 1e300)), loss="mse")


@pytest.mark.parametrize("part", ["X", "y"])
def test_case06_complex_data_raises(no_training, part):
    x, y = X.astype(np.complex64), X[:, 0].astype(np.complex128)
    data = (x, X[:, 0]) if part == "X" else (X, y)
    with pytest.raises(TypeError, match=rf"train_data {part}: expected real numbers"):
        _fit(ann.mlp([8, 1]), data, loss="mse")


def test_case06_complex_x_in_predict_raises():
    model = ann.dense(2)
    _, p, s = model.init(jax.random.key(0), (3,))
    with pytest.raises(TypeError, match=r"x: expected real numbers, got complex"):
        ann.predict(model, p, s, X.astype(np.complex64))


# -------------------------------------------- case 7: batch norm, batch of 1


def test_case07_batch_norm_with_a_batch_of_one_in_training_raises():
    bn = ann.batch_norm()
    _, p, s = bn.init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"batch_norm: expected more than 1 value"):
        bn.apply(p, s, jnp.ones((1, 4)), train=True)
    y, _ = bn.apply(p, s, jnp.ones((1, 4)))  # evaluation: the running statistics
    np.testing.assert_allclose(y, 1 / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_case07_fit_with_batch_size_1_and_batch_norm_raises():
    with pytest.raises(ValueError, match=r"Use batch_size >= 2 \(PyTorch"):
        _fit(ann.mlp([8, 2], batch_norm=True), (X, LABELS), batch_size=1)


# ------------------------------------------------- case 12: masks by component


@pytest.mark.parametrize(
    "name",
    ["batch_norm_1", "BatchNorm_0", "LayerNorm_0", "layer_norm_2", "GroupNorm_0"],
)
def test_case12_norm_layers_are_spared(name):
    params = {name: {"kernel": jnp.ones((2, 2)), "scale": jnp.ones(2)}}
    assert jax.tree_util.tree_leaves(regularizers.default_mask(params)) == [
        False,
        False,
    ]


@pytest.mark.parametrize("name", ["abnormality_head", "normalizing_flow", "enormous"])
def test_case12_names_containing_norm_keep_decay_and_penalties(name):
    params = {name: {"w": 2 * jnp.ones((2, 2)), "b": jnp.ones(2)}}
    assert regularizers.default_mask(params) == {name: {"b": False, "w": True}}
    assert float(regularizers.l2(params, 1.0)) == pytest.approx(16.0)
    # decoupled weight decay reaches the weight: w ← w − lr·wd·w
    opt = ann.sgd(0.1, weight_decay=0.5)
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = opt.update(zero, opt.init(params), params)
    np.testing.assert_allclose(updates[name]["w"], -0.1 * 0.5 * 2.0, rtol=1e-6)
    np.testing.assert_allclose(updates[name]["b"], 0.0)


# ---------------------------------------------------------- case 13: sign(0)


def test_case13_sign_is_minus_one_zero_one():
    np.testing.assert_array_equal(
        activations.sign(jnp.array([-2.0, 0.0, 3.0])), [-1, 0, 1]
    )
    np.testing.assert_array_equal(
        activations.bipolar_step(jnp.array([-2.0, 0.0, 3.0])), [-1, 1, 1]
    )


def test_case13_perceptron_learns_with_the_bipolar_step():
    X2 = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([-1, -1, -1, 1])  # AND, bipolar
    result = ann.perceptron.train(
        X2, y, epochs=20, lr=0.1, activation="bipolar_step", w_init="zeros"
    )
    assert float(result.accuracy[-1]) == 1.0


# ------------------------------------------------------------- case 14: dtypes


def test_case14_params_are_float32_under_x64_for_every_layer(x64):
    model = ann.serial(ann.dense(4), ann.batch_norm(), ann.dense(2))
    _, p, s = model.init(jax.random.key(0), (3,))
    dtypes = {a.dtype for a in jax.tree_util.tree_leaves((p, s))}
    assert dtypes == {jnp.dtype(jnp.float32)}


def test_case14_float64_end_to_end_under_x64(x64):
    x = X.astype(np.float64)
    y = x @ np.array([1.0, -2.0, 0.5]) + 1e-9  # a difference float32 cannot see
    model = ann.serial(ann.dense(4), ann.batch_norm(), ann.dense(1))
    result = ann.fit(
        model,
        (x, y),
        loss="mse",
        metrics=("mae",),
        epochs=2,
        batch_size=8,
        progress=False,
    )
    dtypes = {a.dtype for a in jax.tree_util.tree_leaves((result.params, result.state))}
    assert dtypes == {jnp.dtype(jnp.float64)}
    pred = ann.predict(model, result.params, result.state, x)
    assert pred.dtype == jnp.float64
    logs = ann.evaluate(
        model, result.params, result.state, (x, y), loss="mse", metrics=("mae",)
    )
    # the loss and the metric in float64: equal to NumPy's to 1e-12
    err = np.asarray(pred)[:, 0] - y
    assert logs["loss"] == pytest.approx(np.mean(err**2), rel=1e-12)
    assert logs["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)


def test_case14_integer_inputs_reach_an_embedding():
    class Bag(nn.Module):
        @nn.compact
        def __call__(self, ids):
            return nn.Dense(2)(nn.Embed(20, 8)(ids).mean(axis=1))

    ids = RNG.randint(0, 20, (64, 5))
    y = (ids[:, 0] > 9).astype(np.int32)
    model = ann.from_flax(Bag())
    result = ann.fit(
        model,
        (ids, y),
        epochs=40,
        batch_size=16,
        optimizer=ann.adam(1e-2),
        metrics=("accuracy",),
        progress=False,
    )
    assert result.history["accuracy"][-1] >= 0.75  # it learns from the ids
    assert ann.predict(model, result.params, result.state, ids[:3]).shape == (3, 2)


def test_case14_bfloat16_inputs_are_accepted():
    xb = X.astype(jnp.bfloat16)
    result = _fit(ann.mlp([8, 2]), (xb, LABELS))
    assert np.isfinite(result.history["loss"]).all()
    assert ann.predict(ann.mlp([8, 2]), result.params, result.state, xb).shape == (
        32,
        2,
    )


def test_case14_bfloat16_compute_with_float32_params():
    model = ann.serial(
        ann.dense(8, "relu", dtype=jnp.bfloat16), ann.dense(2, dtype=jnp.bfloat16)
    )
    result = _fit(model, (X, LABELS), optimizer=ann.adam(1e-2))
    assert {a.dtype for a in jax.tree_util.tree_leaves(result.params)} == {
        jnp.dtype(jnp.float32)
    }
    y, _ = model.apply(result.params, result.state, jnp.asarray(X))
    assert y.dtype == jnp.bfloat16


@pytest.mark.parametrize("layer", [ann.dense, ann.batch_norm])
@pytest.mark.parametrize("arg", ["dtype", "param_dtype"])
def test_case14_bad_dtypes_raise(layer, arg):
    args = (2,) if layer is ann.dense else ()
    with pytest.raises(ValueError, match=rf"{arg}: expected a float dtype"):
        layer(*args, **{arg: jnp.int32})
    with pytest.raises(TypeError, match=rf"{arg}: expected a float dtype"):
        layer(*args, **{arg: "no such dtype"})


def test_case14_batch_norm_in_bfloat16_keeps_float32_statistics():
    bn = ann.batch_norm(dtype=jnp.bfloat16)
    _, p, s = bn.init(jax.random.key(0), (4,))
    y, s = bn.apply(p, s, jnp.asarray(X[:, :1].repeat(4, 1)), train=True)
    assert y.dtype == jnp.bfloat16 and s["mean"].dtype == jnp.float32


# ------------------------------------------ case 15: another model's params


def test_case15_apply_with_another_models_params_raises():
    _, p32, s32 = ann.mlp([32, 3]).init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"dense: expected w of shape \(16, n_in\)"):
        ann.mlp([16, 3]).apply(p32, s32, X)


def test_case15_apply_with_missing_layers_names_them():
    _, p, s = ann.mlp([16, 3], dropout=0.5).init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"serial: expected params.*'dense_2'"):
        ann.mlp([16, 3]).apply(p, s, X)


def test_case15_batch_norm_params_of_another_layer_raise():
    _, p, _ = ann.dense(4).init(jax.random.key(0), (4,))
    _, _, bs = ann.batch_norm().init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"batch_norm: expected params"):
        ann.batch_norm().apply(p, bs, jnp.ones((2, 4)))


# ----------------------------------------------------------- obscure crashes


def test_crash_fit_many_with_a_list_of_keys():
    keys = [jax.random.key(i) for i in range(3)]
    many = ann.fit_many(
        ann.mlp([4, 2]), (X, LABELS), keys=keys, epochs=1, progress=False
    )
    one = _fit(ann.mlp([4, 2]), (X, LABELS), key=keys[1])
    assert many.history["loss"].shape == (1, 3)
    assert many.history["loss"][0, 1] == pytest.approx(one.history["loss"][0], rel=1e-5)


def test_crash_predict_and_evaluate_with_another_models_params():
    _, p, s = ann.mlp([16, 3], dropout=0.5).init(jax.random.key(0), (3,))
    model = ann.mlp([16, 3])
    with pytest.raises(
        ValueError, match=r"params: .*missing \['dense_2/b', 'dense_2/w'\]"
    ):
        ann.predict(model, p, s, X)
    with pytest.raises(
        ValueError, match=r"extra \['dense_3/b', 'dense_3/w', 'dropout_2'\]"
    ):
        ann.evaluate(model, p, s, (X, LABELS))


def test_crash_predict_with_params_of_other_shapes():
    _, p, s = ann.mlp([16, 3]).init(jax.random.key(0), (5,))
    with pytest.raises(ValueError, match=r"reshaped \['dense_0/w: expected \(16, 3\)"):
        ann.predict(ann.mlp([16, 3]), p, s, X)


def test_crash_r2_on_a_classifier(no_training):
    with pytest.raises(ValueError, match=r"metrics: 'r2' expected targets of the"):
        _fit(ann.mlp([8, 3]), (X, LABELS), metrics=("r2",))
    _, p, s = ann.mlp([8, 3]).init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"integer class labels of shape \(32,\)"):
        ann.evaluate(ann.mlp([8, 3]), p, s, (X, LABELS), metrics=("mse",))


def test_crash_a_plain_function_as_the_model(no_training):
    def model(x):
        return x

    message = r"model: expected an annjax Layer .* Wrap .*ann.activation"
    with pytest.raises(TypeError, match=message):
        _fit(model, (X, LABELS))
    with pytest.raises(TypeError, match=message):
        ann.fit_many(model, (X, LABELS), epochs=1, progress=False)
    with pytest.raises(TypeError, match=message):
        ann.predict(model, {}, {}, X)
    with pytest.raises(TypeError, match=message):
        ann.evaluate(model, {}, {}, (X, LABELS))


def test_optax_transformations_still_pass():
    result = _fit(ann.mlp([4, 2]), (X, LABELS), optimizer=optax.sgd(0.1))
    assert np.isfinite(result.history["loss"]).all()
