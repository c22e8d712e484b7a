"""Tests for annjax.nn.flax_bridge.from_flax: flax.linen modules as annjax Layers.

Oracle: the wrapped module itself, called through flax's own ``init``/``apply``
with the same variables, rngs and mutable collections; the bridge adds no
arithmetic, so its outputs must equal flax's exactly.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from annjax import nn as layers
from annjax._types import Layer
from annjax.nn import combinators, flax_bridge

KEY = jax.random.key(0)
pytestmark = pytest.mark.usefixtures("strict_promotion")
from_flax = flax_bridge.from_flax


def _batch(shape, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(1.0, 2.0, shape), jnp.float32)


def _shapes(tree):
    return jax.tree.map(lambda a: tuple(a.shape), tree)


def _equal(a, b):
    jax.tree.map(
        lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), a, b
    )


class Block(nn.Module):
    """Dense → BatchNorm → ReLU → Dropout, driven by a ``train`` argument."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(3)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        return nn.Dropout(0.5, deterministic=not train)(x)


class DropNet(nn.Module):
    """Dense → Dropout, driven by a ``deterministic`` argument."""

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        return nn.Dropout(0.5)(nn.Dense(3)(x), deterministic=deterministic)


class MyCNNBlock(nn.Module):
    @nn.compact
    def __call__(self, x, training: bool = False):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not training)(x)
        return nn.relu(x)


# --------------------------------------------------------------------- init shapes

SHAPE_CASES = [
    ("Block", Block, (4,)),
    ("DropNet", DropNet, (4,)),
    ("Dense", lambda: nn.Dense(3), (4,)),
    ("Dense on (t, n)", lambda: nn.Dense(3), (2, 4)),
    ("conv (H, W, C)", MyCNNBlock, (5, 5, 2)),
]


@pytest.mark.parametrize(
    ("make", "in_shape"),
    [c[1:] for c in SHAPE_CASES],
    ids=[c[0] for c in SHAPE_CASES],
)
@pytest.mark.parametrize("train", [False, True])
def test_init_shape_equals_apply_shape(make, in_shape, train):
    layer = from_flax(make())
    assert isinstance(layer, Layer)
    out_shape, params, state = layer.init(KEY, in_shape)
    x = _batch((5, *in_shape))
    y, new_state = layer.apply(params, state, x, key=jax.random.key(1), train=train)
    assert y.shape == (5, *out_shape)
    assert _shapes(new_state) == _shapes(state)


# ------------------------------------------------------------ params, state, train


def test_params_are_the_params_collection_and_state_the_batch_stats():
    module = Block()
    out_shape, params, state = from_flax(module).init(KEY, (4,))
    assert out_shape == (3,)
    reference = module.init(KEY, jnp.zeros((1, 4)))
    assert _shapes(params) == _shapes(reference["params"])
    assert set(params) == {"Dense_0", "BatchNorm_0"}
    assert list(state) == ["batch_stats"]
    _equal(state, {"batch_stats": reference["batch_stats"]})  # zeros and ones


def test_evaluation_matches_flax_and_keeps_the_state():
    module = Block()
    layer = from_flax(module)
    _, params, state = layer.init(KEY, (4,))
    x = _batch((5, 4))
    y, new_state = layer.apply(params, state, x)  # no key needed in evaluation
    _equal(y, module.apply({"params": params, **state}, x, train=False))
    _equal(new_state, state)


def test_training_matches_flax_updates_batch_stats_and_depends_on_the_key():
    module = Block()
    layer = from_flax(module)
    _, params, state = layer.init(KEY, (4,))
    x = _batch((5, 4))
    key = jax.random.key(5)
    y, new_state = layer.apply(params, state, x, key=key, train=True)
    y_flax, updates = module.apply(
        {"params": params, **state},
        x,
        train=True,
        rngs={"dropout": key},
        mutable=["batch_stats"],
    )
    _equal(y, y_flax)
    _equal(new_state, dict(updates))
    stats, stats0 = new_state["batch_stats"], state["batch_stats"]
    assert not np.allclose(stats["BatchNorm_0"]["mean"], stats0["BatchNorm_0"]["mean"])
    y_other, _ = layer.apply(params, state, x, key=jax.random.key(6), train=True)
    assert not np.allclose(y, y_other)
    # Dropout really ran: some units are zero, survivors are scaled by 2.
    assert bool(jnp.any(y == 0.0))


def test_training_without_a_key_raises():
    layer = from_flax(Block())
    _, params, state = layer.init(KEY, (4,))
    with pytest.raises(ValueError, match=r"key=jax\.random\.key"):
        layer.apply(params, state, _batch((5, 4)), train=True)


@pytest.mark.parametrize("train_arg", [False, "deterministic"])
def test_a_deterministic_argument_gets_not_train(train_arg):
    module = DropNet()
    layer = from_flax(module, train_arg=train_arg)
    _, params, state = layer.init(KEY, (4,))
    assert state == {}
    x = _batch((5, 4))
    dense_out = module.apply({"params": params}, x, deterministic=True)
    y_eval, _ = layer.apply(params, state, x)
    _equal(y_eval, dense_out)
    key = jax.random.key(2)
    y_train, same = layer.apply(params, state, x, key=key, train=True)
    assert same == {}
    _equal(
        y_train,
        module.apply({"params": params}, x, deterministic=False, rngs={"dropout": key}),
    )
    kept = np.asarray(y_train) != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(
        np.asarray(y_train)[kept], 2.0 * np.asarray(dense_out)[kept], rtol=1e-6
    )
    with pytest.raises(ValueError, match="key="):
        layer.apply(params, state, x, train=True)


def test_train_arg_none_passes_nothing():
    module = Block()
    layer = from_flax(module, train_arg=None)
    _, params, state = layer.init(KEY, (4,))
    x = _batch((5, 4))
    # The module runs with its own default (train=False): no rng is needed and
    # the batch statistics stay as they were.
    y, new_state = layer.apply(params, state, x, train=True)
    _equal(y, module.apply({"params": params, **state}, x))
    _equal(new_state, state)


def test_a_training_argument_is_detected():
    module = MyCNNBlock()
    layer = from_flax(module)
    _, params, state = layer.init(KEY, (5, 5, 2))
    x = _batch((5, 5, 5, 2))
    y, new_state = layer.apply(params, state, x, train=True)  # no dropout: no key
    y_flax, updates = module.apply(
        {"params": params, **state}, x, training=True, mutable=["batch_stats"]
    )
    _equal(y, y_flax)
    _equal(new_state, dict(updates))


def test_a_module_without_a_train_argument():
    module = nn.Dense(3)
    layer = from_flax(module)
    assert layer.kind == "dense"
    _, params, state = layer.init(KEY, (4,))
    assert state == {}
    assert _shapes(params) == {"kernel": (4, 3), "bias": (3,)}
    x = _batch((5, 4))
    y, _ = layer.apply(params, state, x, train=True)
    _equal(y, module.apply({"params": params}, x))


# -------------------------------------------------------------- names and serial


def test_kind_is_the_class_name_in_snake_case():
    assert from_flax(MyCNNBlock()).kind == "my_cnn_block"
    assert from_flax(Block()).kind == "block"
    assert from_flax(DropNet()).kind == "drop_net"
    assert from_flax(Block(), name="stem").kind == "stem"


def test_a_flax_module_inside_an_annjax_serial():
    model = combinators.serial(from_flax(Block()), layers.dense(2))
    out_shape, params, state = model.init(KEY, (4,))
    assert out_shape == (2,)
    assert list(params) == ["block_0", "dense_1"]
    assert _shapes(params["dense_1"]) == {"w": (2, 3), "b": (2,)}
    assert list(state["block_0"]) == ["batch_stats"]

    train_step = jax.jit(lambda p, s, x, k: model.apply(p, s, x, key=k, train=True))
    x = _batch((5, 4))
    y, new_state = train_step(params, state, x, jax.random.key(3))
    assert y.shape == (5, 2)
    assert bool(jnp.all(jnp.isfinite(y)))
    assert not np.allclose(
        new_state["block_0"]["batch_stats"]["BatchNorm_0"]["var"],
        state["block_0"]["batch_stats"]["BatchNorm_0"]["var"],
    )
    y_eval, same = jax.jit(model.apply)(params, new_state, x)
    assert y_eval.shape == (5, 2)
    _equal(same, new_state)
    h = Block().apply({"params": params["block_0"], **new_state["block_0"]}, x)
    w, b = params["dense_1"]["w"], params["dense_1"]["b"]
    np.testing.assert_allclose(
        np.asarray(y_eval), np.asarray(h @ w.T + b), rtol=1e-5, atol=1e-6
    )


def test_two_flax_children_are_named_by_position():
    model = combinators.serial(from_flax(nn.Dense(3)), from_flax(nn.Dense(2)))
    _, params, _ = model.init(KEY, (4,))
    assert list(params) == ["dense_0", "dense_1"]
    assert _shapes(params["dense_1"]) == {"kernel": (3, 2), "bias": (2,)}


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize("train_arg", ["mode", "Train", True])
def test_an_invalid_train_arg_raises(train_arg):
    with pytest.raises(ValueError, match="from_flax train_arg: expected one of"):
        from_flax(Block(), train_arg=train_arg)


@pytest.mark.parametrize(
    "module",
    [nn.Dense, lambda x: x, layers.dense(3), "Dense"],
    ids=["class", "function", "annjax_layer", "string"],
)
def test_a_non_module_raises_type_error(module):
    with pytest.raises(TypeError, match=r"from_flax: expected a flax\.linen Module"):
        from_flax(module)


# ------------------------------------------------------------ random streams


class AlwaysDrops(nn.Module):
    """Dropout that is always on: no train argument (issue 21)."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(nn.Dropout(0.5, deterministic=False)(nn.Dense(8)(x)))


class Noisy(nn.Module):
    """Draws from two streams: a ``noise`` stream and dropout."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Dense(8)(x)
        if train:
            h = h + 0.1 * jax.random.normal(self.make_rng("noise"), h.shape)
        h = nn.Dropout(0.5, deterministic=not train)(h)
        return nn.Dense(2)(h)


class Draws(nn.Module):
    """Returns one uniform draw per stream, to see which key each got."""

    @nn.compact
    def __call__(self, x):
        a = jax.random.uniform(self.make_rng("dropout"), (x.shape[0],))
        b = jax.random.uniform(self.make_rng("noise"), (x.shape[0],))
        return jnp.stack([a, b], axis=1) + 0 * nn.Dense(1)(x)


def _xy(n=60):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4)).astype("f4")
    return X, (X[:, 0] > 0).astype("i4")


def test_always_on_dropout_initialises_and_trains_with_fits_key():
    import annjax as ann

    module = AlwaysDrops()
    layer = from_flax(module)
    _, params, state = layer.init(KEY, (4,))  # the shape check draws too
    x, key = _batch((5, 4)), jax.random.key(7)
    y, _ = layer.apply(params, state, x, key=key, train=True)
    _equal(y, module.apply({"params": params}, x, rngs={"dropout": key}))
    # fit's end-of-epoch check evaluates without a key: the fixed key, warned
    with pytest.warns(UserWarning, match="even in evaluation"):
        result = ann.fit(layer, _xy(), epochs=3, batch_size=20, progress=False)
    assert np.all(np.isfinite(result.history["loss"]))
    assert not np.allclose(
        result.params["Dense_0"]["kernel"], params["Dense_0"]["kernel"]
    )
    # MC dropout: it draws in evaluation too, from a fixed key (the same draw)
    with pytest.warns(UserWarning, match=r"even in evaluation.*jax\.random\.key\(0\)"):
        y_eval, _ = layer.apply(params, state, x)
    fixed = module.apply({"params": params}, x, rngs={"dropout": jax.random.key(0)})
    _equal(y_eval, fixed)


def test_named_streams_equal_flax_apply_with_split_keys():
    module = Noisy()
    layer = from_flax(module, rngs=("dropout", "noise"))
    _, params, state = layer.init(KEY, (4,))
    x, key = _batch((5, 4)), jax.random.key(3)
    y, _ = layer.apply(params, state, x, key=key, train=True)
    k_dropout, k_noise = jax.random.split(key)
    oracle = module.apply(
        {"params": params}, x, train=True, rngs={"dropout": k_dropout, "noise": k_noise}
    )
    _equal(y, oracle)
    y_other, _ = layer.apply(params, state, x, key=jax.random.key(4), train=True)
    assert not np.allclose(y, y_other)


def test_each_stream_gets_its_own_key_and_each_step_new_ones():
    layer = from_flax(Draws(), rngs=("dropout", "noise"))
    _, params, state = layer.init(KEY, (4,))
    x = _batch((50, 4))
    step1, _ = layer.apply(params, state, x, key=jax.random.key(1), train=True)
    step2, _ = layer.apply(params, state, x, key=jax.random.key(2), train=True)
    assert not np.allclose(step1[:, 0], step1[:, 1])  # dropout ≠ noise
    assert not np.allclose(step1, step2)  # step 1 ≠ step 2, in both streams
    assert not np.allclose(step1[:, 0], step2[:, 0])
    assert not np.allclose(step1[:, 1], step2[:, 1])


def test_fit_trains_a_module_with_a_noise_stream():
    import annjax as ann

    layer = from_flax(Noisy(), rngs=("dropout", "noise"))
    result = ann.fit(layer, _xy(), epochs=3, batch_size=20, progress=False)
    assert np.all(np.isfinite(result.history["loss"]))
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_a_stream_not_named_raises_naming_the_fix():
    layer = from_flax(Noisy())  # only "dropout"
    _, params, state = layer.init(KEY, (4,))
    with pytest.raises(ValueError, match=r"rngs=\(\.\.\.\).*\['dropout'\]"):
        layer.apply(params, state, _batch((5, 4)), key=KEY, train=True)


@pytest.mark.parametrize(
    ("rngs", "match"),
    [
        (("dropout", "dropout"), "distinct stream names"),
        (("params",), "other than 'params'"),
        ((1,), "a tuple of stream names"),
        ("", "a tuple of stream names"),
        (3, "a tuple of stream names"),
    ],
)
def test_invalid_rngs_raise(rngs, match):
    with pytest.raises(ValueError, match=f"from_flax rngs: expected.*{match}"):
        from_flax(Noisy(), rngs=rngs)


def test_a_single_stream_name_is_accepted():
    layer = from_flax(Noisy(), rngs="noise", train_arg=None)
    assert layer.apply is not None
    assert from_flax(Noisy(), rngs="noise") != from_flax(Noisy(), rngs="dropout")


# ------------------------------------------------------------------- flax.nnx


def _nnx_net(seed=0):
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(4, 8, rngs=rngs)
            self.norm = nnx.BatchNorm(8, momentum=0.9, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)
            self.out = nnx.Linear(8, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(self.drop(nnx.relu(self.norm(self.dense(x)))))

    return Net(nnx.Rngs(seed, dropout=seed + 1))


def test_nnx_module_in_evaluation_equals_calling_it():
    module = _nnx_net()
    layer = from_flax(module)
    assert layer.kind == "net"
    out_shape, params, state = layer.init(KEY, (4,))
    assert out_shape == (2,)
    assert _shapes(params) == {
        "dense": {"kernel": (4, 8), "bias": (8,)},
        "norm": {"scale": (8,), "bias": (8,)},
        "out": {"kernel": (8, 2), "bias": (2,)},
    }
    assert _shapes(state) == {"norm": {"mean": (8,), "var": (8,)}}
    x = _batch((5, 4))
    y, same = layer.apply(params, state, x)
    module.eval()
    _equal(y, module(x))
    _equal(same, state)


def test_nnx_module_in_training_equals_calling_it_with_the_reseeded_stream():
    from flax import nnx

    module = _nnx_net()
    layer = from_flax(module)
    _, params, state = layer.init(KEY, (4,))
    x, key = _batch((6, 4)), jax.random.key(9)
    y, new_state = layer.apply(params, state, x, key=key, train=True)
    module.train()
    nnx.reseed(module, dropout=key)
    _equal(y, module(x))  # the oracle: nnx calling the module itself
    _equal(
        new_state,
        {"norm": {"mean": module.norm.mean[...], "var": module.norm.var[...]}},
    )
    y_other, _ = layer.apply(params, state, x, key=jax.random.key(10), train=True)
    assert not np.allclose(y, y_other)
    with pytest.raises(ValueError, match=r"in training mode.*key=None"):
        layer.apply(params, state, x, train=True)


def test_fit_trains_an_nnx_module_and_its_params_are_plain_dicts():
    import annjax as ann

    layer = from_flax(_nnx_net())
    result = ann.fit(layer, _xy(), epochs=3, batch_size=20, progress=False)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert isinstance(result.params["dense"]["kernel"], jax.Array)


def test_nnx_through_the_linen_bridge_draws_params_from_the_key():
    from flax import nnx

    layer = from_flax(nnx.bridge.to_linen(nnx.Linear, 4, 3))
    _, p1, _ = layer.init(jax.random.key(1), (4,))
    _, p2, _ = layer.init(jax.random.key(2), (4,))
    assert not np.allclose(jax.tree.leaves(p1)[-1], jax.tree.leaves(p2)[-1])
    y, _ = layer.apply(p1, {}, _batch((5, 4)))
    assert y.shape == (5, 3)


def test_an_unknown_nnx_stream_raises():
    with pytest.raises(
        ValueError, match=r"from_flax rngs: expected streams of the nnx"
    ):
        from_flax(_nnx_net(), rngs=("noise",))
