"""Tests for annjax.nn.model_summary.summary: a model's table of layers.

Oracles: the parameter and state counts of ``init`` itself; XLA's cost
analysis of the whole model, compiled in the test; the dense layer's FLOPs
formula 2·n·m + m (a matrix-vector product and the bias).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import annjax as ann

KEY = jax.random.key(0)


def _count(tree) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


def _model_flops(model, shape) -> float:
    """The oracle: XLA's cost analysis of the whole model on one example."""
    _, params, state = model.init(KEY, shape)
    x = jnp.zeros((1, *shape), jnp.float32)
    run = jax.jit(lambda p, s, xs: model.apply(p, s, xs)[0])
    return run.lower(params, state, x).compile().cost_analysis()["flops"]


def _cnn():
    return ann.serial(
        ann.conv2d(4, 3),
        ann.batch_norm(),
        ann.activation("relu"),
        ann.max_pool(2),
        ann.flatten(),
        ann.dense(5),
    )


def test_rows_of_an_mlp_and_the_dense_flops_formula():
    s = ann.summary(ann.mlp([16, 3]), (4,))
    assert [(r.path, r.kind, r.output_shape) for r in s.layers] == [
        ("dense_0", "dense", (16,)),
        ("relu_1", "relu", (16,)),
        ("dense_2", "dense", (3,)),
    ]
    assert [r.params for r in s.layers] == [4 * 16 + 16, 0, 16 * 3 + 3]
    assert s.layers[0].flops == 2 * 4 * 16 + 16
    assert s.layers[2].flops == 2 * 16 * 3 + 3
    assert s.output_shape == (3,)


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: ann.mlp([8, 8, 2]), (4,)),
        (_cnn, (8, 8, 1)),
    ],
    ids=["mlp", "cnn"],
)
def test_totals_equal_init_and_the_models_cost_analysis(make, shape):
    model = make()
    s = ann.summary(model, shape)
    _, params, state = model.init(KEY, shape)
    assert s.total_params == _count(params) == sum(r.params for r in s.layers)
    assert s.total_state == _count(state) == sum(r.state for r in s.layers)
    assert s.total_flops == _model_flops(model, shape)
    # each layer compiled alone: for a plain chain XLA counts the same ops
    assert sum(r.flops for r in s.layers) == s.total_flops


def _residual_net():
    block = ann.serial(ann.dense(8), ann.activation("relu"))
    return ann.serial(
        ann.dense(8), ann.activation("relu"), ann.residual(block), ann.dense(2)
    )


def test_a_residual_is_its_block_plus_a_rest_row_and_flops_within_5_percent():
    model = _residual_net()
    s = ann.summary(model, (4,))
    _, params, state = model.init(KEY, (4,))
    assert [r.path for r in s.layers] == [
        "dense_0",
        "relu_1",
        "residual_2/dense_0",
        "residual_2/relu_1",
        "residual_2",
        "dense_3",
    ]
    assert s.layers[4].kind == "residual (rest)"  # the sum x + F(x)
    assert s.total_params == _count(params) == sum(r.params for r in s.layers)
    assert s.total_state == _count(state) == 0
    assert s.total_flops == _model_flops(model, (4,))
    # Tolerance 5 %: compiled whole, XLA duplicates a cheap elementwise op
    # (relu_1, read by the block's dense and by the residual sum) into each
    # consumer's fusion and counts it once per copy, so the whole model
    # counts a little more (here 8 FLOPs of ~340) than its layers one by one.
    rows = sum(r.flops for r in s.layers)
    assert rows <= s.total_flops <= 1.05 * rows


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(5)(x)


def test_a_flax_module_is_summarised_by_its_submodules():
    model = ann.serial(ann.from_flax(CNN()), ann.dense(2))
    s = ann.summary(model, (6, 6, 1))
    _, params, _ = model.init(KEY, (6, 6, 1))
    rows = {r.path: r for r in s.layers}
    assert list(rows) == [
        "cnn_0/Conv_0",
        "cnn_0/BatchNorm_0",
        "cnn_0/Dense_0",
        "cnn_0",
        "dense_1",
    ]
    assert rows["cnn_0/Conv_0"].kind == "Conv"
    assert rows["cnn_0/Conv_0"].output_shape == (6, 6, 4)
    for name in ("Conv_0", "BatchNorm_0", "Dense_0"):
        assert rows[f"cnn_0/{name}"].params == _count(params["cnn_0"][name])
    assert rows["cnn_0/BatchNorm_0"].state == 8  # mean and var of 4 channels
    assert rows["cnn_0/Dense_0"].flops == 2 * 144 * 5 + 5
    # the rest: what the module computes between submodules (its ReLU)
    assert rows["cnn_0"].params == 0 and rows["cnn_0"].flops == 6 * 6 * 4
    assert s.total_params == _count(params)
    assert s.total_flops == _model_flops(model, (6, 6, 1))
    assert sum(r.flops for r in s.layers) == s.total_flops


def test_str_is_a_table_with_every_row_and_the_total():
    s = ann.summary(_cnn(), (8, 8, 1))
    text = str(s)
    lines = text.splitlines()
    assert lines[1].split() == [
        "path",
        "kind",
        "output",
        "shape",
        "params",
        "state",
        "FLOPs",
    ]
    for row in s.layers:
        assert any(line.startswith(row.path) for line in lines)
    assert lines[-1].split()[0] == "total"
    assert f"{s.total_params:,}" in lines[-1]
    assert f"{s.total_flops:,.0f}" in lines[-1]


def test_a_bare_layer_is_one_row_named_model():
    s = ann.summary(ann.dense(3), (4,))
    assert [(r.path, r.params) for r in s.layers] == [("model", 15)]


@pytest.mark.parametrize("shape", [(0,), "28", (2.5,), 4, (True,)])
def test_an_invalid_input_shape_raises(shape):
    with pytest.raises(ValueError, match="summary input_shape: expected the shape"):
        ann.summary(ann.mlp([2]), shape)


def test_a_non_layer_raises():
    with pytest.raises(TypeError, match="summary model: expected an annjax Layer"):
        ann.summary(CNN(), (4,))


def test_integer_inputs_with_dtype():
    model = ann.serial(ann.from_flax(nn.Embed(10, 3)), ann.flatten(), ann.dense(2))
    s = ann.summary(model, (5,), dtype="int32")
    assert [r.output_shape for r in s.layers][:2] == [(5, 3), (15,)]
    assert s.total_params == 10 * 3 + 15 * 2 + 2


def test_an_nnx_module_is_summarised_by_its_submodules():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(4, 16, rngs=rngs)
            self.norm = nnx.BatchNorm(16, rngs=rngs)
            self.out = nnx.Linear(16, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.norm(self.dense(x))))

    model = ann.serial(ann.from_flax(Net(nnx.Rngs(0))), ann.dense(3))
    s = ann.summary(model, (4,))
    _, params, state = model.init(KEY, (4,))
    rows = {r.path: r for r in s.layers}
    assert list(rows) == ["net_0/dense", "net_0/norm", "net_0/out", "net_0", "dense_1"]
    assert rows["net_0/dense"].kind == "Linear"
    assert rows["net_0/dense"].output_shape == (16,)
    assert rows["net_0/dense"].flops == 2 * 4 * 16 + 16
    for name in ("dense", "norm", "out"):
        assert rows[f"net_0/{name}"].params == _count(params["net_0"][name])
    assert rows["net_0/norm"].state == _count(state["net_0"]["norm"]) == 32
    assert rows["net_0"].params == 0 and rows["net_0"].flops == 16  # the ReLU
    assert s.total_params == _count(params)
    assert s.total_flops == _model_flops(model, (4,))
    assert sum(r.flops for r in s.layers) == s.total_flops
