"""Bad input, round two: the edge cases of issue 21 (data, arguments, files).

Each test asserts the exact outcome: the error type and the words of its
message, or the correct value against its oracle. The cases on several
devices run in one subprocess with 8 host devices (see ``_on_8_devices``).
"""

from __future__ import annotations

import json
import os
import stat

import jax
import numpy as np
import pytest
from conftest import Started, on_cpu_devices

import annjax as ann

RNG = np.random.RandomState(0)
X = RNG.randn(60, 4).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int32)


# ------------------------------------------------- files: the user's umask


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it after."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_checkpoints_and_exports_follow_the_umask_as_open_does(
    tmp_path, umask, mask, mode
):
    umask(mask)
    model = ann.dense(1)
    result = ann.fit(model, (X, X[:, :1]), loss="mse", epochs=1, progress=False)
    saved = ann.save(tmp_path / "run.ckpt", result)
    exported = ann.export(model, result.params, result.state, (4,), tmp_path / "m")
    with open(tmp_path / "plain", "w"):
        pass  # the oracle: what open() makes under this umask
    assert stat.S_IMODE(os.stat(tmp_path / "plain").st_mode) == mode
    for path in (saved, exported):
        assert stat.S_IMODE(os.stat(path).st_mode) == mode


# ----------------------------------------- non-finite rates and penalties


@pytest.mark.parametrize("make", [ann.sgd, ann.adam, ann.adamw])
@pytest.mark.parametrize("lr", [float("inf"), float("nan"), -float("inf")])
def test_optimizer_refuses_a_non_finite_learning_rate(make, lr):
    with pytest.raises(ValueError, match="learning_rate: expected a finite number > 0"):
        make(lr)


def test_optimizer_refuses_an_infinite_weight_decay():
    with pytest.raises(ValueError, match="weight_decay: expected finite values >= 0"):
        ann.sgd(0.1, weight_decay=float("inf"))


@pytest.mark.parametrize("name", ["l1", "l2"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_fit_and_fit_many_refuse_a_non_finite_penalty_alike(no_training, name, value):
    data = (X, Y)
    for run in (ann.fit, ann.fit_many):
        with pytest.raises(ValueError, match=f"{name}: expected finite values >= 0"):
            run(ann.mlp([3, 2]), data, epochs=1, progress=False, **{name: value})


# ------------------------------------------ a custom Layer breaking the protocol


def _two_value_layer() -> ann.Layer:
    def init(key, input_shape):
        return (2,), {"w": jax.random.normal(key, (2, input_shape[-1]))}

    def apply(params, state, x, *, key=None, train=False):
        return x @ params["w"].T, state

    return ann.Layer(init, apply, "mine")


@pytest.mark.parametrize("wrap", [lambda m: m, lambda m: ann.serial(m, ann.dense(2))])
def test_custom_layer_whose_init_returns_two_values_raises(no_training, wrap):
    match = (
        r"expected init\(key, input_shape\) to return \(output_shape, params, "
        r"state\), the Layer protocol, got 2 values"
    )
    with pytest.raises(TypeError, match=match):
        ann.fit(wrap(_two_value_layer()), (X, Y), epochs=1, progress=False)


# ------------------------------------------------------------- sparse input


@pytest.mark.parametrize("where", ["fit", "predict"])
def test_scipy_sparse_x_raises_saying_densify(no_training, where):
    sparse = pytest.importorskip("scipy.sparse")
    xs = sparse.csr_matrix(X)
    match = r"[xX]: expected a dense array, got a scipy sparse csr_matrix .*X\.toarray"
    model = ann.mlp([3, 2])
    with pytest.raises(TypeError, match=match):
        if where == "fit":
            ann.fit(model, (xs, Y), epochs=1, progress=False)
        else:
            _, params, state = model.init(jax.random.key(0), (4,))
            ann.predict(model, params, state, xs)


# ------------------------------- case 3: probability losses on logit outputs

PROBS = [
    ("cross_entropy", ann.mlp([8, 3]), "softmax_cross_entropy", "softmax"),
    ("binary_cross_entropy", ann.dense(1), "sigmoid_binary_cross_entropy", "sigmoid"),
    ("bce", ann.serial(ann.dense(1), ann.dropout(0.1)), "sigmoid_binary", "sigmoid"),
    ("cross_entropy", ann.mlp([8, 3], "tanh", "relu"), "softmax_cross", "softmax"),
]


@pytest.mark.parametrize(("loss", "model", "use", "link"), PROBS)
def test_case03_probability_loss_on_a_logits_model_raises(
    no_training, loss, model, use, link
):
    y = Y if loss == "cross_entropy" else Y.astype(np.float32)
    match = (
        rf"loss: '\w+' expected probabilities, a model ending in a {link}, got a "
        rf"model whose last activation is '\w+'.* Use loss='{use}"
    )
    with pytest.raises(ValueError, match=match):
        ann.fit(model, (X, y), loss=loss, epochs=1, progress=False)
    with pytest.raises(ValueError, match=match):
        _, params, state = model.init(jax.random.key(0), (4,))
        ann.evaluate(model, params, state, (X, y), loss=loss)


@pytest.mark.parametrize(
    ("loss", "model"),
    [
        ("cross_entropy", ann.mlp([8, 3], output_activation="softmax")),
        ("binary_cross_entropy", ann.serial(ann.dense(1), ann.activation("sigmoid"))),
        # unknown last activation: a custom Layer and a flax module are trusted
        ("binary_cross_entropy", ann.Layer(*ann.dense(1, "sigmoid")[:2], "mine")),
        ("cross_entropy", ann.residual(ann.dense(4, "softmax"))),
    ],
)
def test_case03_probability_loss_on_probabilities_or_unknown_passes(
    no_training, loss, model
):
    y = Y if loss == "cross_entropy" else Y.astype(np.float32)
    with pytest.raises(Started):
        ann.fit(model, (X, y), loss=loss, epochs=1, progress=False)


def test_case03_from_flax_is_trusted(no_training):
    nn = pytest.importorskip("flax.linen")
    model = ann.from_flax(nn.Dense(3))
    with pytest.raises(Started):
        ann.fit(model, (X, Y), loss="cross_entropy", epochs=1, progress=False)


def test_case03_last_activation_reads_the_model():
    from annjax.training.inputs import last_activation

    assert last_activation(ann.mlp([8, 3])) == "identity"
    assert last_activation(ann.mlp([8, 3], output_activation="softmax")) == "softmax"
    assert last_activation(ann.serial(ann.dense(2, "sigmoid"), ann.flatten())) == (
        "sigmoid"
    )
    assert last_activation(ann.serial(ann.dense(2), ann.batch_norm())) == "identity"
    assert last_activation(ann.residual(ann.dense(4))) is None
    assert last_activation(_two_value_layer()) is None


# --------------------------------------- case 4: a metric of one per example


def abserr(y_true, y_pred):
    return abs(y_true - y_pred)  # one value per example: not a metric


def test_case04_per_example_metric_raises_naming_it_and_its_shape(no_training):
    yr = X[:, :1]
    match = r"metrics: 'abserr' expected a scalar .*got shape \(2, 1\) for a batch"
    with pytest.raises(ValueError, match=match):
        ann.fit(ann.dense(1), (X, yr), loss="mse", metrics=[abserr], progress=False)
    with pytest.raises(ValueError, match=match):
        ann.fit_many(ann.dense(1), (X, yr), loss="mse", metrics=[abserr], epochs=1)
    _, params, state = ann.dense(1).init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=match):
        ann.evaluate(ann.dense(1), params, state, (X, yr), loss="mse", metrics=[abserr])


def test_case04_a_scalar_metric_is_kept_and_equals_its_oracle():
    def mean_abs(y_true, y_pred):
        return jax.numpy.mean(jax.numpy.abs(y_true - y_pred))

    yr = X[:, :1]
    result = ann.fit(
        ann.dense(1), (X, yr), loss="mse", metrics=[mean_abs], epochs=2,
        batch_size=60, progress=False,
    )  # fmt: skip
    assert result.history["mean_abs"].shape == (2,)
    got = ann.evaluate(ann.dense(1), result.params, result.state, (X, yr),
                       loss="mse", metrics=[mean_abs])  # fmt: skip
    pred = np.asarray(ann.predict(ann.dense(1), result.params, result.state, X))
    np.testing.assert_allclose(got["mean_abs"], np.abs(yr - pred).mean(), rtol=1e-5)


# ------------------------------------------------- custom losses' contract


def no_reduction(y_true, y_pred):
    return ((y_true - y_pred) ** 2).mean()


def optax_style(logits, labels):
    return ((logits - labels) ** 2).mean()


def ignores_reduction(y_true, y_pred, reduction="mean"):
    return ((y_true - y_pred) ** 2).mean()


def per_example_2d(y_true, y_pred, reduction="mean"):
    v = (y_true - y_pred) ** 2  # (batch, 1): would broadcast against weights
    return v if reduction == "none" else v.mean()


@pytest.mark.parametrize("loss", [no_reduction, optax_style])
def test_custom_loss_without_reduction_raises_with_the_contract(no_training, loss):
    match = (
        rf"loss {loss.__name__}: expected a function loss\(y_true, y_pred, \*, "
        r"reduction='mean'\)"
    )
    with pytest.raises(TypeError, match=match):
        ann.fit(ann.dense(1), (X, X[:, :1]), loss=loss, progress=False)


@pytest.mark.parametrize(
    ("loss", "shape"), [(ignores_reduction, r"\(\)"), (per_example_2d, r"\(2, 1\)")]
)
def test_custom_loss_that_ignores_reduction_raises(no_training, loss, shape):
    match = (
        rf"loss {loss.__name__}: expected one value per example, shape \(2,\), for "
        rf"reduction='none' on a batch of 2, got shape {shape}"
    )
    with pytest.raises(ValueError, match=match):
        ann.fit(ann.dense(1), (X, X[:, :1]), loss=loss, progress=False)


def test_custom_loss_keeping_the_contract_trains_as_mse():
    def my_mse(y_true, y_pred, *, reduction="mean"):
        v = ((y_true - y_pred) ** 2).mean(axis=-1)
        return v if reduction == "none" else v.mean()

    kw = dict(epochs=2, batch_size=16, progress=False, key=jax.random.key(1))
    mine = ann.fit(ann.dense(1), (X, X[:, :1]), loss=my_mse, **kw)
    ref = ann.fit(ann.dense(1), (X, X[:, :1]), loss="mse", **kw)
    np.testing.assert_allclose(mine.history["loss"], ref.history["loss"], rtol=1e-5)


# ----------------------------------------- predict with the wrong feature count


def test_predict_with_x_of_another_feature_count_blames_the_data():
    model = ann.mlp([8, 2])
    _, params, state = model.init(jax.random.key(0), (4,))
    match = (
        r"x: expected examples of shape \(4,\), the model's input shape for these "
        r"params, got examples of shape \(5,\): the data does not fit the model"
    )
    with pytest.raises(ValueError, match=match):
        ann.predict(model, params, state, np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match=match.replace("x:", "data X:")):
        ann.evaluate(model, params, state, (np.ones((3, 5), np.float32), Y[:3]))


def test_predict_with_another_models_params_still_blames_the_params():
    _, params, state = ann.mlp([8, 2]).init(jax.random.key(0), (4,))
    with pytest.raises(ValueError, match=r"params: expected the params of this mo"):
        ann.predict(ann.mlp([6, 2]), params, state, X)


# --------------------------------------------- export of an integer-input model


def _bag():
    nn = pytest.importorskip("flax.linen")

    class Bag(nn.Module):
        @nn.compact
        def __call__(self, ids):
            return nn.Dense(2)(nn.Embed(20, 8)(ids).mean(axis=1))

    return ann.from_flax(Bag())


@pytest.mark.parametrize("input_dtype", [None, np.int32])
def test_export_of_an_integer_input_model_runs_as_predict(tmp_path, input_dtype):
    model = _bag()
    ids = RNG.randint(0, 20, (7, 5)).astype(np.int32)
    _, params, state = model.init(jax.random.key(0), (5,))
    path = ann.export(
        model, params, state, (5,), tmp_path / "bag", input_dtype=input_dtype
    )
    f = ann.load_exported(path)
    assert f.input_dtype == np.int32
    np.testing.assert_allclose(  # oracle: predict on the same ids
        f(ids), ann.predict(model, params, state, ids), rtol=1e-6
    )
    with pytest.raises(TypeError, match=r"x: expected integers .*got dtype float32"):
        f(ids.astype(np.float32) + 0.5)


def test_export_of_a_float_model_keeps_float32_and_refuses_a_bad_dtype(tmp_path):
    model = ann.dense(2)
    _, params, state = model.init(jax.random.key(0), (4,))
    f = ann.load_exported(ann.export(model, params, state, (4,), tmp_path / "d"))
    assert f.input_dtype == np.float32
    np.testing.assert_allclose(f(X), ann.predict(model, params, state, X), rtol=1e-6)
    with pytest.raises(TypeError, match="export input_dtype: expected an integer or"):
        ann.export(model, params, state, (4,), tmp_path / "e", input_dtype=complex)


# ------------------------------------------------------ on 8 (CPU) devices

DEVICES = 8


def _on_8_devices() -> dict:
    """What the 8-device cases give; run as ``python <this file>``."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    def message(fn) -> str:
        try:
            fn()
        except ValueError as exc:
            return str(exc)
        return "no error"

    mesh = Mesh(np.array(jax.devices()), ("data",))
    model = ann.mlp([8, 2])
    out = {
        "few": message(
            lambda: ann.fit(
                model, (X[:5], Y[:5]), batch_size=8, mesh=mesh, progress=False
            )
        ),
        "cut": message(
            lambda: ann.fit(
                model, (X[:12], Y[:12]), batch_size=16, mesh=mesh, progress=False
            )
        ),
    }
    _, params, state = model.init(jax.random.key(0), (4,))
    xs = X[:56]  # a multiple of 8: laid out as the user would
    laid = jax.device_put(xs, NamedSharding(mesh, P("data")))
    laid_y = jax.device_put(Y[:56], NamedSharding(mesh, P("data")))
    one = np.asarray(ann.predict(model, params, state, xs))
    out["predict_diff"] = float(
        np.max(np.abs(np.asarray(ann.predict(model, params, state, laid)) - one))
    )
    ref = ann.evaluate(model, params, state, (xs, Y[:56]), metrics=["accuracy"])
    got = ann.evaluate(model, params, state, (laid, laid_y), metrics=["accuracy"])
    out["evaluate_diff"] = max(abs(ref[k] - got[k]) for k in ref)
    return out


@pytest.fixture(scope="module")
def on_8_devices() -> dict:
    return on_cpu_devices([__file__], DEVICES)


def test_fewer_examples_than_data_devices_says_so(on_8_devices):
    assert on_8_devices["few"] == (
        "train_data: expected at least 8 examples, one per device of the mesh's "
        "'data' axis, got 5. Every device takes an equal part of each batch: use "
        "a mesh of at most 5 devices on 'data' (e.g. "
        "Mesh(np.array(jax.devices()[:5]), ('data',))), or more data."
    )


def test_a_batch_cut_to_the_data_names_the_batch_size_given(on_8_devices):
    assert on_8_devices["cut"] == (
        "batch_size: expected a multiple of the 8 devices of the mesh's 'data' "
        "axis, got 12 (batch_size=16 cut to the 12 examples). Every device takes "
        "an equal part of each batch: use batch_size=8."
    )


def test_predict_and_evaluate_follow_the_mesh_x_lies_on(on_8_devices):
    # oracle: the one-device result; 1e-5 for the per-device summation order
    assert on_8_devices["predict_diff"] < 1e-5
    assert on_8_devices["evaluate_diff"] < 1e-5


if __name__ == "__main__":
    print("RESULT " + json.dumps(_on_8_devices()))
