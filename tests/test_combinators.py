"""Tests for annjax.nn.combinators: serial, residual, mlp and the ``probe=`` taps.

Oracles: the children applied by hand (composition, key splitting, state
threading), NumPy for y = x + F(x), and an equivalent flax.linen module with the
same weights for a residual block.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from annjax import nn as layers
from annjax._types import Layer, Tap
from annjax.nn import combinators

KEY = jax.random.key(0)
pytestmark = pytest.mark.usefixtures("strict_promotion")
dense, activation = layers.dense, layers.activation
serial, residual, mlp = combinators.serial, combinators.residual, combinators.mlp


def _batch(shape, seed=0, loc=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(loc, scale, shape), jnp.float32)


def _shapes(tree):
    return jax.tree.map(lambda a: tuple(a.shape), tree)


def _allclose(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _named_model():
    """dense_0, relu_1, batch_norm_2, residual_3 (dense_0, relu_1), dense_4."""
    return serial(
        dense(3),
        activation("relu"),
        layers.batch_norm(),
        residual(serial(dense(3), activation("relu"))),
        dense(2),
    )


# --------------------------------------------------------------------- init shapes

# Few distinct widths (4 in, 3 hidden, 2 out): each new weight shape costs a
# compilation of the initializers, which dominates these small tests.
SHAPE_CASES = [
    ("serial", lambda: serial(dense(3), activation("tanh"), dense(2)), (4,)),
    ("serial (H, W, C)", lambda: serial(layers.flatten(), dense(3)), (2, 3, 4)),
    ("serial nested", _named_model, (4,)),
    ("residual identity", lambda: residual(serial(dense(3), activation("relu"))), (3,)),
    ("residual (t, n)", lambda: residual(dense(3)), (2, 3)),
    ("residual projection", lambda: residual(dense(3), projection="dense"), (4,)),
    (
        "residual projection layer",
        lambda: residual(dense(3), projection=dense(3, use_bias=False)),
        (4,),
    ),
    ("residual of batch_norm", lambda: residual(layers.batch_norm()), (2, 3, 4)),
    ("mlp", lambda: mlp([3, 3, 2]), (4,)),
    ("mlp batch_norm", lambda: mlp([3, 3, 2], batch_norm=True), (4,)),
    ("mlp dropout", lambda: mlp([3, 3, 2], dropout=0.2), (4,)),
    ("mlp residual", lambda: mlp([3, 3, 3, 2], residual=True), (4,)),
    (
        "mlp all flags",
        lambda: mlp([3, 3, 2], batch_norm=True, dropout=0.2, residual=True),
        (4,),
    ),
]


@pytest.mark.parametrize(
    ("make", "in_shape"),
    [c[1:] for c in SHAPE_CASES],
    ids=[c[0] for c in SHAPE_CASES],
)
@pytest.mark.parametrize("train", [False, True])
def test_init_shape_equals_apply_shape(make, in_shape, train):
    model = make()
    assert isinstance(model, Layer)
    out_shape, params, state = model.init(KEY, in_shape)
    x = _batch((5, *in_shape))
    y, new_state = model.apply(params, state, x, key=jax.random.key(1), train=train)
    assert y.shape == (5, *out_shape)
    assert _shapes(new_state) == _shapes(state)
    assert bool(jnp.all(jnp.isfinite(y)))


# ------------------------------------------------------------------------- serial


def test_serial_names_children_kind_index_and_nests_params_and_state():
    model = _named_model()
    assert model.kind == "serial"
    out_shape, params, state = model.init(KEY, (4,))
    assert out_shape == (2,)
    names = ["dense_0", "relu_1", "batch_norm_2", "residual_3", "dense_4"]
    assert list(params) == names
    assert list(state) == names
    assert _shapes(params) == {
        "dense_0": {"w": (3, 4), "b": (3,)},
        "relu_1": {},
        "batch_norm_2": {"scale": (3,), "bias": (3,)},
        "residual_3": {"dense_0": {"w": (3, 3), "b": (3,)}, "relu_1": {}},
        "dense_4": {"w": (2, 3), "b": (2,)},
    }
    assert _shapes(state) == {
        "dense_0": {},
        "relu_1": {},
        "batch_norm_2": {"mean": (3,), "var": (3,)},
        "residual_3": {"dense_0": {}, "relu_1": {}},
        "dense_4": {},
    }


def test_serial_is_the_composition_of_its_children():
    children = [dense(3), activation("relu"), dense(2, activation="sigmoid")]
    model = serial(*children)
    _, params, state = model.init(KEY, (4,))
    x = _batch((5, 4))
    y, _ = model.apply(params, state, x)
    h = x
    for i, child in enumerate(children):
        name = f"{child.kind}_{i}"
        h, _ = child.apply(params[name], state[name], h)
    _allclose(y, h, 0)


def test_serial_init_gives_each_child_its_own_key():
    _, params, _ = serial(dense(3), dense(3)).init(KEY, (3,))
    assert not np.allclose(params["dense_0"]["w"], params["dense_1"]["w"])


def test_serial_splits_the_key_once_per_child(key):
    drop = layers.dropout(0.5)
    model = serial(drop, drop)
    _, params, state = model.init(KEY, (100,))
    x = jnp.ones((100, 100), jnp.float32)
    y, _ = model.apply(params, state, x, key=key, train=True)
    # Exactly: child i gets jax.random.split(key, n)[i].
    k0, k1 = jax.random.split(key, 2)
    h, _ = drop.apply({}, {}, x, key=k0, train=True)
    h, _ = drop.apply({}, {}, h, key=k1, train=True)
    _allclose(y, h, 0)
    # Two independent masks keep 1/4 of 10^4 units (± 0.005, 1 σ), scaled by 4;
    # had both children got the same key, the second mask would repeat the
    # first and keep 1/2.
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - 0.25) < 0.03
    np.testing.assert_allclose(np.asarray(y)[kept], 4.0)


def test_serial_threads_state_through_every_batch_norm():
    children = [dense(3), layers.batch_norm(), activation("tanh"), layers.batch_norm()]
    model = serial(*children)
    _, params, state0 = model.init(KEY, (4,))
    x = _batch((5, 4), loc=2.0)
    _, state = model.apply(params, state0, x, train=True)
    h, manual = x, {}
    for i, child in enumerate(children):
        name = f"{child.kind}_{i}"
        h, manual[name] = child.apply(params[name], state0[name], h, train=True)
    for name in ("batch_norm_1", "batch_norm_3"):
        assert not np.allclose(state[name]["mean"], state0[name]["mean"])
        assert not np.allclose(state[name]["var"], state0[name]["var"])
        _allclose(state[name]["mean"], manual[name]["mean"], 0)
        _allclose(state[name]["var"], manual[name]["var"], 0)
    # Evaluation leaves the state as it was.
    _, same = model.apply(params, state, x)
    jax.tree.map(lambda a, b: _allclose(a, b, 0), same, state)


def test_probe_records_taps_nested_like_params_without_changing_outputs():
    model = _named_model()
    _, params, state = model.init(KEY, (4,))
    x = _batch((5, 4))
    y_plain, _ = model.apply(params, state, x, train=True, key=KEY)
    probe = {}
    y, _ = model.apply(params, state, x, train=True, key=KEY, probe=probe)
    _allclose(y, y_plain, 0)
    assert set(probe) == {"relu_1", "residual_3"}
    assert set(probe["residual_3"]) == {"relu_1"}
    outer, inner = probe["relu_1"], probe["residual_3"]["relu_1"]
    assert isinstance(outer, Tap) and isinstance(inner, Tap)
    assert (outer.activation, inner.activation) == ("relu", "relu")
    # The taps hold the activations' outputs.
    expected_outer = jax.nn.relu(x @ params["dense_0"]["w"].T + params["dense_0"]["b"])
    _allclose(outer.output, expected_outer)
    assert inner.output.shape == (5, 3)
    assert float(inner.output.min()) >= 0.0


def test_probe_nests_a_serial_inside_a_serial_under_its_name():
    model = serial(serial(dense(3), activation("sigmoid")), dense(2))
    _, params, state = model.init(KEY, (4,))
    assert list(params) == ["serial_0", "dense_1"]
    assert list(params["serial_0"]) == ["dense_0", "sigmoid_1"]
    probe = {}
    model.apply(params, state, _batch((5, 4)), probe=probe)
    assert list(probe) == ["serial_0"]
    assert list(probe["serial_0"]) == ["sigmoid_1"]
    assert probe["serial_0"]["sigmoid_1"].activation == "sigmoid"


def test_probe_taps_dense_layers_with_an_activation_and_works_under_jit():
    model = serial(dense(3, activation="tanh"), dense(2))
    _, params, state = model.init(KEY, (4,))

    @jax.jit
    def taps(params, state, x):
        probe = {}
        y, _ = model.apply(params, state, x, probe=probe)
        outputs = jax.tree.map(
            lambda t: t.output, probe, is_leaf=lambda t: isinstance(t, Tap)
        )
        return y, outputs

    x = _batch((5, 4))
    y, outputs = taps(params, state, x)
    assert set(outputs) == {"dense_0"}
    _allclose(
        outputs["dense_0"],
        jnp.tanh(x @ params["dense_0"]["w"].T + params["dense_0"]["b"]),
        1e-5,
    )
    _allclose(y, model.apply(params, state, x)[0], 1e-6)


# ----------------------------------------------------------------------- residual


def test_residual_is_x_plus_block_of_x():
    block = serial(dense(3), activation("tanh"))
    model = residual(block)
    assert model.kind == "residual"
    out_shape, params, state = model.init(KEY, (3,))
    assert out_shape == (3,)
    assert "shortcut" not in params
    x = _batch((5, 3))
    y, _ = model.apply(params, state, x)
    w, b = np.asarray(params["dense_0"]["w"]), np.asarray(params["dense_0"]["b"])
    expected = np.asarray(x) + np.tanh(np.asarray(x) @ w.T + b)
    _allclose(y, expected, 1e-5)


def test_residual_without_projection_rejects_a_shape_change_naming_both_shapes():
    model = residual(dense(3))
    with pytest.raises(ValueError, match=r"\(4,\).*\(3,\).*projection"):
        model.init(KEY, (4,))


def test_residual_dense_projection_is_a_learned_linear_shortcut():
    model = residual(serial(dense(3), activation("relu")), projection="dense")
    out_shape, params, state = model.init(KEY, (4,))
    assert out_shape == (3,)
    assert _shapes(params["shortcut"]) == {"w": (3, 4)}  # no bias: Px
    x = _batch((5, 4))
    y, new_state = model.apply(params, state, x)
    assert set(new_state) == set(state)
    block_out, _ = model.apply(
        {**params, "shortcut": {"w": jnp.zeros((3, 4))}}, state, x
    )
    p = np.asarray(params["shortcut"]["w"])
    _allclose(y, np.asarray(block_out) + np.asarray(x) @ p.T, 1e-5)


def test_residual_projection_layer_whose_shape_disagrees_raises():
    with pytest.raises(ValueError, match=r"projection.*\(2,\).*\(3,\)"):
        residual(dense(3), projection=dense(2)).init(KEY, (4,))


class _FlaxResidual(nn.Module):
    """x + W2 relu(W1 x + b1) + b2, with an optional bias-free projection of x."""

    width: int
    project: bool = False

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(self.width)(x))
        fx = nn.Dense(self.width)(h)
        shortcut = nn.Dense(self.width, use_bias=False)(x) if self.project else x
        return shortcut + fx


@pytest.mark.parametrize(("in_width", "project"), [(3, False), (4, True)])
def test_residual_matches_an_equivalent_flax_module(in_width, project):
    block = serial(dense(3), activation("relu"), dense(3, b_init="lecture_uniform"))
    model = residual(block, projection="dense" if project else None)
    _, params, state = model.init(KEY, (in_width,))
    flax_params = {
        "Dense_0": {"kernel": params["dense_0"]["w"].T, "bias": params["dense_0"]["b"]},
        "Dense_1": {"kernel": params["dense_2"]["w"].T, "bias": params["dense_2"]["b"]},
    }
    if project:
        flax_params["Dense_2"] = {"kernel": params["shortcut"]["w"].T}
    x = _batch((5, in_width))
    y, _ = model.apply(params, state, x)
    y_flax = _FlaxResidual(3, project).apply({"params": flax_params}, x)
    # Tolerance 1e-5: the same float32 products through two or three matmuls,
    # perhaps summed in another order; a missing skip or bias is O(1).
    _allclose(y, y_flax, 1e-5)


# ---------------------------------------------------------------------------- mlp


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, ["dense_0", "relu_1", "dense_2", "relu_3", "dense_4"]),
        ({"activation": "tanh"}, ["dense_0", "tanh_1", "dense_2", "tanh_3", "dense_4"]),
        (
            {"batch_norm": True, "dropout": 0.1},
            [
                *("dense_0", "batch_norm_1", "relu_2", "dropout_3"),
                *("dense_4", "batch_norm_5", "relu_6", "dropout_7", "dense_8"),
            ],
        ),
        ({"residual": True}, ["dense_0", "relu_1", "residual_2", "dense_3"]),
    ],
    ids=["default", "tanh", "batch_norm+dropout", "residual"],
)
def test_mlp_layer_names(kwargs, names):
    _, params, state = mlp([3, 3, 2], **kwargs).init(KEY, (4,))
    assert list(params) == names
    assert list(state) == names
    if kwargs.get("residual"):
        assert list(params["residual_2"]) == ["dense_0", "relu_1"]


def test_mlp_residual_with_all_flags_nests_the_whole_hidden_block():
    model = mlp([3, 3, 2], batch_norm=True, dropout=0.2, residual=True)
    _, params, state = model.init(KEY, (4,))
    inner = ["dense_0", "batch_norm_1", "relu_2", "dropout_3"]
    assert list(params) == [*inner, "residual_4", "dense_5"]
    assert list(params["residual_4"]) == inner
    assert _shapes(state["residual_4"]["batch_norm_1"]) == {"mean": (3,), "var": (3,)}


@pytest.mark.parametrize(
    ("hidden_activation", "hidden_var"),
    [("relu", 2.0 / 250), ("tanh", 2.0 / (250 + 1000))],
)
def test_mlp_default_inits(hidden_activation, hidden_var, key):
    model = mlp([1000, 250], activation=hidden_activation)
    _, params, _ = model.init(key, (250,))
    w_hidden = np.asarray(params["dense_0"]["w"], np.float64)
    w_out = np.asarray(params["dense_2"]["w"], np.float64)
    assert w_hidden.shape == (1000, 250) and w_out.shape == (250, 1000)
    # 250 000 samples each: sample variances within ~0.3 % (1 σ); He (2/fan_in)
    # and Xavier (2/(fan_in + fan_out)) differ by 25 % or more here.
    np.testing.assert_allclose(w_hidden.var(), hidden_var, rtol=0.03)
    # The output layer has no activation: Xavier/Glorot uniform.
    np.testing.assert_allclose(w_out.var(), 2.0 / 1250, rtol=0.03)
    assert np.abs(w_out).max() <= np.sqrt(6.0 / 1250)
    np.testing.assert_array_equal(np.asarray(params["dense_0"]["b"]), 0.0)


def test_mlp_w_init_overrides_every_layer():
    calls = []

    def halves(key, shape, dtype=jnp.float32):
        calls.append(tuple(shape))
        return jnp.full(shape, 0.5, dtype)

    _, params, _ = mlp([3, 3, 2], w_init=halves).init(KEY, (4,))
    assert calls == [(3, 4), (3, 3), (2, 3)]
    for name in ("dense_0", "dense_2", "dense_4"):
        np.testing.assert_array_equal(np.asarray(params[name]["w"]), 0.5)
    _, params, _ = mlp([3, 2], activation="tanh", w_init="zeros").init(KEY, (4,))
    for name in ("dense_0", "dense_2"):
        np.testing.assert_array_equal(np.asarray(params[name]["w"]), 0.0)


def test_mlp_output_activation():
    model = mlp([3, 2], output_activation="softmax")
    _, params, state = model.init(KEY, (4,))
    y, _ = model.apply(params, state, _batch((5, 4)))
    _allclose(jnp.sum(y, axis=-1), jnp.ones(5), 1e-6)


# ------------------------------------------------------------- acceptance and jit


def _acceptance_model():
    return serial(
        dense(256),
        activation("relu"),
        layers.dropout(0.5),
        layers.batch_norm(),
        residual(serial(dense(256), activation("relu"))),
        dense(10),
    )


def test_acceptance_model_runs_under_jit_without_retracing():
    model = _acceptance_model()
    out_shape, params, state = model.init(KEY, (64,))
    assert out_shape == (10,)
    assert list(params) == [
        "dense_0",
        "relu_1",
        "dropout_2",
        "batch_norm_3",
        "residual_4",
        "dense_5",
    ]
    traces = {"train": 0, "eval": 0}

    @jax.jit
    def train_step(params, state, x, key):
        traces["train"] += 1  # a Python side effect: runs only while tracing
        return model.apply(params, state, x, key=key, train=True)

    @jax.jit
    def eval_step(params, state, x):
        traces["eval"] += 1
        return model.apply(params, state, x)

    x = _batch((32, 64))
    y1, state1 = train_step(params, state, x, jax.random.key(1))
    # Same shapes, new data and key, and the state the first call returned (so
    # a dtype or weak-type drift in the state would show as a retrace).
    y2, _ = train_step(params, state1, _batch((32, 64), seed=1), jax.random.key(2))
    assert traces["train"] == 1
    assert y1.shape == y2.shape == (32, 10)
    assert bool(jnp.all(jnp.isfinite(y1))) and bool(jnp.all(jnp.isfinite(y2)))
    y1_other_key, _ = train_step(params, state, x, jax.random.key(3))
    assert not np.allclose(y1, y1_other_key)  # the dropout masks differ
    assert _shapes(state1) == _shapes(state)
    assert not np.allclose(state1["batch_norm_3"]["mean"], 0.0)

    e1, e_state = eval_step(params, state1, x)
    e2, _ = eval_step(params, state1, x)
    assert traces["eval"] == 1
    assert e1.shape == (32, 10)
    assert bool(jnp.all(jnp.isfinite(e1)))
    np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))  # deterministic
    jax.tree.map(lambda a, b: _allclose(a, b, 0), e_state, state1)
    # The compiled and the uncompiled paths agree (1e-5: XLA may fuse and
    # reorder float32 sums differently from op-by-op execution).
    _allclose(e1, model.apply(params, state1, x)[0], 1e-5)

    with pytest.raises(ValueError, match="key"):
        model.apply(params, state, x, train=True)


# ------------------------------------------------------------------------- errors


def test_serial_without_layers_raises():
    with pytest.raises(ValueError, match="serial: expected at least one layer"):
        serial()


@pytest.mark.parametrize("child", ["relu", nn.Dense(3), lambda x: x])
def test_serial_with_a_non_layer_child_raises_type_error(child):
    with pytest.raises(TypeError, match="serial child 1: expected an annjax Layer"):
        serial(dense(3), child)


def test_residual_with_a_non_layer_raises_type_error():
    with pytest.raises(TypeError, match="residual block"):
        residual(nn.Dense(3))
    with pytest.raises(TypeError, match="residual projection"):
        residual(dense(3), projection="conv")


def test_mlp_without_sizes_raises():
    with pytest.raises(ValueError, match="mlp sizes: expected at least one"):
        mlp([])


@pytest.mark.parametrize("sizes", [[8, 0], [0], [8, -2, 3]])
def test_mlp_width_below_one_raises(sizes):
    with pytest.raises(ValueError, match="mlp sizes: expected an integer >= 1"):
        mlp(sizes)


def test_mlp_non_integer_width_raises_type_error():
    with pytest.raises(TypeError, match="mlp sizes"):
        mlp([8, 2.5])


@pytest.mark.parametrize("rate", [1.5, -0.5])
def test_mlp_dropout_outside_unit_interval_raises(rate):
    with pytest.raises(ValueError, match=r"mlp dropout: expected .*\[0, 1\]"):
        mlp([8, 2], dropout=rate)
