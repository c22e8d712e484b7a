"""Tests of the gradient-flow profiler against NumPy norms, closed-form
saturation limits and a hand-written ``jax.grad``; and of the history keys
``fit(track_gradients=True)`` records."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann
from annjax._types import Tap
from annjax.analysis import profiler


def init(model, key, shape):
    """Returns ``(params, state)``; one compiled init instead of many eager ops."""
    _, params, state = jax.jit(model.init, static_argnums=1)(key, shape)
    return params, state


def tree(key, scale=1.0):
    """Returns a params-shaped tree: two dense layers, a relu, a residual block."""
    k = jax.random.split(key, 6)
    return {
        "dense_0": {
            "w": scale * jax.random.normal(k[0], (4, 3)),
            "b": jax.random.normal(k[1], (4,)),
        },
        "relu_1": {},
        "residual_2": {
            "dense_0": {
                "w": jax.random.normal(k[2], (4, 4)),
                "b": jax.random.normal(k[3], (4,)),
            },
            "shortcut": {"w": jax.random.normal(k[4], (4, 4))},
        },
        "dense_3": {"w": jax.random.normal(k[5], (2, 4))},
    }


def numpy_norm(*leaves) -> float:
    return float(np.linalg.norm(np.concatenate([np.ravel(x) for x in leaves])))


def layer_leaves(t):
    return {
        "dense_0": (t["dense_0"]["w"], t["dense_0"]["b"]),
        "residual_2/dense_0": (
            t["residual_2"]["dense_0"]["w"],
            t["residual_2"]["dense_0"]["b"],
        ),
        "residual_2/shortcut": (t["residual_2"]["shortcut"]["w"],),
        "dense_3": (t["dense_3"]["w"],),
    }


def test_layer_stats_match_numpy_norms(key):
    k1, k2, k3 = jax.random.split(key, 3)
    grads, params, updates = tree(k1), tree(k2, scale=3.0), tree(k3)
    stats = jax.jit(profiler.layer_stats)(grads, params, updates)
    g, p, u = layer_leaves(grads), layer_leaves(params), layer_leaves(updates)
    expected = {}
    for layer in g:  # relu_1 has no params, so no entry
        expected[f"grad_norm/{layer}"] = numpy_norm(*g[layer])
        expected[f"param_norm/{layer}"] = numpy_norm(*p[layer])
        expected[f"update_ratio/{layer}"] = numpy_norm(*u[layer]) / numpy_norm(
            *p[layer]
        )
    assert set(stats) == set(expected)
    for name, value in expected.items():
        # float32 sums of a few dozen squares: ~1e-6 relative error.
        np.testing.assert_allclose(float(stats[name]), value, rtol=1e-5, err_msg=name)


def test_layer_norms_of_a_bare_layer_use_the_root_name():
    norms = profiler.layer_norms({"w": jnp.full((2, 2), 2.0), "b": jnp.ones(1)})
    assert list(norms) == ["model"]
    np.testing.assert_allclose(float(norms["model"]), np.sqrt(4 * 4 + 1), rtol=1e-6)


def test_dead_fraction_of_a_relu_tap_with_known_dead_columns(key):
    y = jax.nn.relu(jax.random.normal(key, (32, 8)) + 3.0)  # every unit alive
    y = y.at[:, jnp.array([1, 4, 6])].set(0.0)  # three units dead on the batch
    y = y.at[0, 7].set(0.0)  # zero on one example only: still alive
    stats = profiler.activation_stats({"relu_1": Tap("relu", y)})
    assert list(stats) == ["dead_fraction/relu_1"]
    assert float(stats["dead_fraction/relu_1"]) == pytest.approx(3 / 8)


def test_dead_fraction_of_an_image_activation_counts_channels(key):
    # (batch, H, W, C): a unit is a channel, dead when ≤ 0 for every example
    # AND every position (its filter is shared by all positions).
    y = jax.nn.relu(jax.random.normal(key, (4, 5, 5, 6)) + 3.0)
    y = y.at[..., jnp.array([0, 3])].set(0.0)  # two channels dead everywhere
    y = y.at[:, :, :, 1].set(0.0).at[2, 4, 4, 1].set(1.0)  # alive at one position
    y = y.at[:, 0, 0, 2].set(0.0)  # one dead position: the channel lives
    stats = profiler.activation_stats({"conv2d_0": Tap("relu", y)})
    assert float(stats["dead_fraction/conv2d_0"]) == pytest.approx(2 / 6)


def test_gradient_flow_of_a_conv_stack_matches_a_hand_written_grad(key):
    model = ann.serial(
        ann.conv2d(3, 3, activation="relu"),
        ann.max_pool(2),
        ann.conv2d(4, 3, strides=2),
        ann.global_avg_pool(),
        ann.dense(2),
    )
    params, state = init(model, key, (8, 8, 2))
    x = jax.random.normal(key, (5, 8, 8, 2))
    y = jnp.arange(5) % 2
    flow = ann.gradient_flow(model, params, state, (x, y))

    def loss(p):
        logits = model.apply(p, state, x)[0]
        return ann.losses.get("softmax_cross_entropy")(y, logits)

    grads = jax.grad(loss)(params)
    for layer in ("conv2d_0", "conv2d_2", "dense_4"):
        expected = numpy_norm(*jax.tree_util.tree_leaves(grads[layer]))
        assert flow[f"grad_norm/{layer}"] == pytest.approx(expected, rel=1e-5)
    assert 0.0 <= flow["dead_fraction/conv2d_0"] <= 1.0
    assert not any(k.endswith(("max_pool_1", "global_avg_pool_3")) for k in flow)


@pytest.mark.parametrize("name", ["leaky_relu", "elu", "gelu", "swish"])
def test_units_that_keep_a_gradient_below_zero_are_never_dead(name):
    y = -jnp.ones((4, 3))  # negative everywhere, yet f' > 0 there
    assert profiler.activation_stats({"a_0": Tap(name, y)}) == {}


@pytest.mark.parametrize(
    "name, f, limit",
    [
        # σ'(z) = 1 / (4 cosh²(z/2)) < 0.05·¼  ⇔  |z| > 2 arccosh(1/(2√0.0125))
        ("sigmoid", jax.nn.sigmoid, 2 * np.arccosh(1 / (2 * np.sqrt(0.0125)))),
        # tanh'(z) = 1 / cosh²(z) < 0.05  ⇔  |z| > arccosh(1/√0.05)
        ("tanh", jnp.tanh, np.arccosh(1 / np.sqrt(0.05))),
    ],
)
def test_saturation_fraction_matches_the_closed_form_limit(key, name, f, limit):
    z = 4.0 * jax.random.normal(key, (256, 16))
    stats = profiler.activation_stats({"act_0": Tap(name, f(z))})
    expected = np.mean(np.abs(np.asarray(z)) > limit)
    # A point within float32 rounding of the limit may fall either way.
    near = np.mean(np.abs(np.abs(np.asarray(z)) - limit) < 1e-3)
    assert abs(float(stats["saturation/act_0"]) - expected) <= near + 1e-9
    assert 0.2 < expected < 0.8  # the test exercises both sides


def test_probe_collects_nested_taps(key):
    model = ann.mlp([6, 6, 3], activation="tanh", residual=True)
    params, state = init(model, key, (5,))
    x = jax.random.normal(key, (7, 5))

    @jax.jit
    def probed(params, state, x):
        y, _, probe = profiler.probe_apply(model, params, state, x)
        return y, model.apply(params, state, x)[0], profiler.activation_stats(probe)

    y, plain, stats = probed(params, state, x)
    np.testing.assert_allclose(y, plain, rtol=1e-6)
    assert set(stats) == {
        "saturation/tanh_1",
        "saturation/residual_2/tanh_1",
    }


def test_gradient_flow_matches_a_hand_written_grad(key):
    model = ann.serial(ann.dense(4), ann.activation("tanh"), ann.dense(2))
    params, state = init(model, key, (3,))
    kx, ky = jax.random.split(jax.random.fold_in(key, 1))
    x, y = jax.random.normal(kx, (16, 3)), jax.random.normal(ky, (16, 2))

    def loss(p):  # y = W₂ tanh(W₀ x + b₀) + b₂, mean squared error
        h = jnp.tanh(x @ p["dense_0"]["w"].T + p["dense_0"]["b"])
        out = h @ p["dense_2"]["w"].T + p["dense_2"]["b"]
        return jnp.mean(jnp.square(out - y))

    grads = jax.jit(jax.grad(loss))(params)
    flow = profiler.gradient_flow(model, params, state, (x, y), "mse")
    h = np.tanh(np.asarray(x @ params["dense_0"]["w"].T + params["dense_0"]["b"]))
    for layer in ("dense_0", "dense_2"):
        leaves = (grads[layer]["w"], grads[layer]["b"])
        np.testing.assert_allclose(
            flow[f"grad_norm/{layer}"], numpy_norm(*leaves), 1e-5
        )
        leaves = (params[layer]["w"], params[layer]["b"])
        np.testing.assert_allclose(
            flow[f"param_norm/{layer}"], numpy_norm(*leaves), 1e-6
        )
    expected = np.mean(1 - h**2 < 0.05)
    assert flow["saturation/tanh_1"] == pytest.approx(expected, abs=1e-6)


def test_gradient_flow_compiles_once_per_model(key):
    model = ann.serial(ann.dense(3), ann.activation("relu"), ann.dense(2))
    params, state = init(model, key, (4,))
    x, y = jnp.ones((8, 4)), jnp.zeros((8, 2))
    profiler.gradient_flow(model, params, state, (x, y), "mse")
    size = profiler._measure._cache_size()
    profiler.gradient_flow(model, params, state, (x + 1, y), "mse")
    assert profiler._measure._cache_size() == size


class FlaxMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(nn.relu(nn.Dense(4)(x)))


def test_gradient_flow_on_a_flax_model_uses_its_module_paths(key):
    model = ann.from_flax(FlaxMLP())
    params, state = init(model, key, (3,))
    x, y = jnp.ones((5, 3)), jnp.array([0, 1, 1, 0, 1])
    flow = profiler.gradient_flow(model, params, state, (x, y))
    grad_keys = {k for k in flow if k.startswith("grad_norm/")}
    assert grad_keys == {"grad_norm/Dense_0", "grad_norm/Dense_1"}
    assert {"param_norm/Dense_0", "param_norm/Dense_1"} <= set(flow)
    assert all(np.isfinite(v) for v in flow.values())


@pytest.mark.parametrize(
    "model, layers, taps",
    [
        (
            ann.mlp([8, 8, 3]),
            ["dense_0", "dense_2", "dense_4"],
            ["dead_fraction/relu_1", "dead_fraction/relu_3"],
        ),
        (
            ann.mlp([8, 8, 3], residual=True, batch_norm=True),
            [
                "dense_0",
                "batch_norm_1",
                "residual_3/dense_0",
                "residual_3/batch_norm_1",
                "dense_4",
            ],
            ["dead_fraction/relu_2", "dead_fraction/residual_3/relu_2"],
        ),
        (
            ann.serial(
                ann.conv2d(3, 3, activation="relu"),
                ann.max_pool(2),
                ann.conv2d(4, 3),
                ann.batch_norm(),
                ann.activation("relu"),
                ann.global_avg_pool(),
                ann.dense(3),
            ),
            ["conv2d_0", "conv2d_2", "batch_norm_3", "dense_6"],
            ["dead_fraction/conv2d_0", "dead_fraction/relu_4"],
        ),
    ],
    ids=["mlp", "residual-batch-norm", "conv-stack"],
)
def test_fit_history_keys(key, model, layers, taps):
    shape = (4, 4, 2) if layers[0].startswith("conv2d") else (5,)
    x = np.asarray(jax.random.normal(key, (24, *shape)))
    y = np.arange(24) % 3
    result = ann.fit(
        model,
        (x, y),
        val_data=(x, y),
        epochs=2,
        batch_size=8,
        track_gradients=True,
        progress=False,
        key=key,
    )
    h = result.history
    expected = {"loss", "val_loss", "lr", *taps}  # lr: the injected rate
    for kind in ("grad_norm", "param_norm", "update_ratio"):
        expected |= {f"{kind}/{layer}" for layer in layers}
    expected |= {k.replace("/", "_max/", 1) for k in expected if "/" in k}
    if any("batch_norm" in layer for layer in layers):  # a model with state
        expected.add("train_eval_loss")
    assert set(h) == expected
    assert all(v.shape == (2,) and np.all(np.isfinite(v)) for v in h.values())
    for layer in layers:
        assert h[f"grad_norm_max/{layer}"][0] >= h[f"grad_norm/{layer}"][0] > 0
