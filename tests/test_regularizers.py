"""Tests of annjax.regularizers: NumPy values, gradients, masks, optax equivalence."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import FrozenDict
from jax.test_util import check_grads

from annjax import regularizers

pytestmark = pytest.mark.usefixtures("strict_promotion")

PENALTIES = [
    (regularizers.l1, np.abs),
    (regularizers.l2, np.square),
]


def _params(seed: int = 0) -> dict:
    """An annjax-style params tree: dense layers, a batch norm, a residual block."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    return {
        "dense_0": {"w": normal(4, 3), "b": normal(4)},
        "batch_norm_1": {"scale": normal(4), "bias": normal(4)},
        "relu_2": {},
        "residual_3": {"dense_0": {"w": normal(4, 4), "b": normal(4)}},
        "dense_4": {"w": normal(2, 4), "b": normal(2)},
    }


def _weights(params: dict) -> list[np.ndarray]:
    return [np.asarray(params[k]["w"], np.float64) for k in ("dense_0", "dense_4")] + [
        np.asarray(params["residual_3"]["dense_0"]["w"], np.float64)
    ]


# --- default mask -------------------------------------------------------------


def test_default_mask_on_annjax_params():
    assert regularizers.default_mask(_params()) == {
        "dense_0": {"w": True, "b": False},
        "batch_norm_1": {"scale": False, "bias": False},
        "relu_2": {},
        "residual_3": {"dense_0": {"w": True, "b": False}},
        "dense_4": {"w": True, "b": False},
    }


class _FlaxNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=True)(x)
        x = nn.LayerNorm()(x)
        x = nn.Embed(10, 3)(jnp.zeros(2, jnp.int32)).sum() + x
        return nn.Dense(2)(x.reshape(x.shape[0], -1))


def test_default_mask_on_flax_params_penalises_kernels_only():
    # Shapes are all the mask needs, so trace init instead of running it.
    variables = jax.eval_shape(
        _FlaxNet().init, jax.random.key(0), jnp.ones((1, 5, 5, 1))
    )
    mask = regularizers.default_mask(variables["params"])
    flat = {
        "/".join(str(getattr(k, "key", k)) for k in path): flag
        for path, flag in jax.tree_util.tree_flatten_with_path(mask)[0]
    }
    assert flat == {
        "Conv_0/kernel": True,
        "Conv_0/bias": False,
        "BatchNorm_0/scale": False,
        "BatchNorm_0/bias": False,
        "LayerNorm_0/scale": False,
        "LayerNorm_0/bias": False,
        "Embed_0/embedding": True,
        "Dense_0/kernel": True,
        "Dense_0/bias": False,
    }
    # batch statistics are spared by name too, should a user pass them
    stats = regularizers.default_mask(variables["batch_stats"])
    assert not any(jax.tree.leaves(stats))


def test_default_mask_rule_for_other_names_and_containers():
    params = {
        "layer_norm_0": {"w": jnp.ones((3, 3))},  # under a norm layer: spared
        "custom": {"A": jnp.ones((2, 3)), "u": jnp.ones(3), "gamma": jnp.ones((2, 2))},
        "perceptron": {"w": jnp.ones(3)},  # a weight vector, by name
    }
    assert regularizers.default_mask(params) == {
        "layer_norm_0": {"w": False},
        "custom": {"A": True, "u": False, "gamma": False},
        "perceptron": {"w": True},
    }
    assert regularizers.default_mask([jnp.ones((2, 2)), jnp.ones(2)]) == [True, False]
    frozen = regularizers.default_mask(FrozenDict({"d": {"kernel": jnp.ones((2, 2))}}))
    assert jax.tree.leaves(frozen) == [True]


# --- values and gradients -----------------------------------------------------


@pytest.mark.parametrize(("penalty", "term"), PENALTIES)
@pytest.mark.parametrize("lam", [0.0, 0.01, 1.5])
def test_value_matches_numpy_over_weights_only(penalty, term, lam):
    params = _params()
    expected = lam * sum(term(w).sum() for w in _weights(params))
    np.testing.assert_allclose(penalty(params, lam), expected, rtol=1e-5)


@pytest.mark.parametrize(("penalty", "term"), PENALTIES)
def test_jit_and_vmap_over_lambda(penalty, term):
    params = _params()
    base = sum(term(w).sum() for w in _weights(params))
    lams = jnp.array([0.0, 0.1, 2.0])
    np.testing.assert_allclose(
        jax.vmap(lambda lam: penalty(params, lam))(lams), lams * base, rtol=1e-5
    )
    np.testing.assert_allclose(jax.jit(penalty)(params, 0.1), 0.1 * base, rtol=1e-5)


def test_gradients_are_lambda_sign_w_and_two_lambda_w():
    params, lam = _params(), 0.3
    g1 = jax.jit(jax.grad(regularizers.l1))(params, lam)
    g2 = jax.jit(jax.grad(regularizers.l2))(params, lam)
    mask = regularizers.default_mask(params)
    for m, w, d1, d2 in zip(
        jax.tree.leaves(mask),
        jax.tree.leaves(params),
        jax.tree.leaves(g1),
        jax.tree.leaves(g2),
        strict=True,
    ):
        w = np.asarray(w)
        np.testing.assert_allclose(d1, lam * np.sign(w) * m, rtol=1e-6)
        np.testing.assert_allclose(d2, 2 * lam * w * m, rtol=1e-6)


def test_check_grads_in_float64(x64):
    # Weights away from 0, the kink of |w|.
    w = jnp.array([[0.7, -1.2, 0.4], [-0.3, 2.0, -0.9]], jnp.float64)
    params = {"d": {"w": w, "b": jnp.array([0.5, -0.5], jnp.float64)}}
    # Second order for L2 only: away from the kink, L1's second derivative is 0.
    for penalty, order in ((regularizers.l1, 1), (regularizers.l2, 2)):
        assert penalty(params, 0.25).dtype == jnp.float64
        check_grads(jax.jit(lambda p, f=penalty: f(p, 0.25)), (params,), order=order)


# --- masks ----------------------------------------------------------------------


def test_explicit_prefix_and_callable_masks():
    params = _params()
    everything = sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(params))
    all_true = jax.tree.map(lambda _: True, params)
    np.testing.assert_allclose(regularizers.l2(params, 1.0, all_true), everything, 1e-5)
    prefix = {k: k == "dense_4" for k in params}  # one flag per layer
    np.testing.assert_allclose(
        regularizers.l2(params, 1.0, prefix),
        float(
            jnp.sum(params["dense_4"]["w"] ** 2) + jnp.sum(params["dense_4"]["b"] ** 2)
        ),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        regularizers.l1(params, 2.0, lambda p: jax.tree.map(lambda _: False, p)), 0.0
    )
    np.testing.assert_allclose(
        regularizers.l1(params, 2.0, regularizers.default_mask),
        regularizers.l1(params, 2.0),
    )


def test_params_without_weights_give_zero():
    assert float(regularizers.l2({"b": jnp.ones(3)}, 1.0)) == 0.0
    assert float(regularizers.l1({}, 1.0)) == 0.0


# --- L2 in the loss versus decoupled weight decay --------------------------------


def _data_loss(params, x, y):
    h = jnp.tanh(x @ params["dense_0"]["w"].T + params["dense_0"]["b"])
    return jnp.mean((h @ params["dense_1"]["w"].T + params["dense_1"]["b"] - y) ** 2)


def _one_step(optimizer, loss, params, *args):
    @jax.jit
    def step(params, *args):
        grads = jax.grad(loss)(params, *args)
        updates, _ = optimizer.update(grads, optimizer.init(params), params)
        return optax.apply_updates(params, updates)

    return step(params, *args)


@pytest.fixture
def problem():
    rng = np.random.default_rng(1)
    params = {
        "dense_0": {"w": rng.normal(size=(5, 3)), "b": rng.normal(size=5)},
        "dense_1": {"w": rng.normal(size=(1, 5)), "b": rng.normal(size=1)},
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    x = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(16, 1)), jnp.float32)
    return params, x, y


def test_l2_in_loss_equals_weight_decay_two_lambda_for_sgd(problem):
    params, x, y = problem
    lam, lr = 0.05, 0.1

    def regularised(p, x, y):
        return _data_loss(p, x, y) + regularizers.l2(p, lam)

    via_loss = _one_step(optax.sgd(lr), regularised, params, x, y)
    decayed = optax.chain(
        optax.add_decayed_weights(2 * lam, mask=regularizers.default_mask),
        optax.sgd(lr),
    )
    via_decay = _one_step(decayed, _data_loss, params, x, y)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        via_loss,
        via_decay,
    )
    # and the mask spared the biases: with no data gradient they do not move
    plain = _one_step(optax.sgd(lr), _data_loss, params, x, y)
    np.testing.assert_array_equal(via_decay["dense_0"]["b"], plain["dense_0"]["b"])


def test_l2_in_loss_differs_from_weight_decay_for_adam(problem):
    params, x, y = problem
    lam, lr = 0.05, 0.1

    def regularised(p, x, y):
        return _data_loss(p, x, y) + regularizers.l2(p, lam)

    # Adam rescales the 2λw in the gradient; AdamW, w ← w − η(adam(∇L) + d·w),
    # does not.
    adamw = optax.adamw(lr, weight_decay=2 * lam, mask=regularizers.default_mask)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes dtypes
        via_loss = _one_step(optax.adam(lr), regularised, params, x, y)
        via_decay = _one_step(adamw, _data_loss, params, x, y)
    gap = np.abs(np.asarray(via_loss["dense_0"]["w"] - via_decay["dense_0"]["w"]))
    assert gap.max() > 1e-3


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize("penalty", [regularizers.l1, regularizers.l2])
def test_errors(penalty):
    params = _params()
    with pytest.raises(ValueError, match=r"lam: expected a number >= 0, got -0\.1"):
        penalty(params, -0.1)
    with pytest.raises(ValueError, match="lam: expected a number >= 0, got nan"):
        penalty(params, float("nan"))
    with pytest.raises(ValueError, match=r"lam: expected a scalar, got \(2,\)"):
        penalty(params, np.array([0.1, 0.2]))
    with pytest.raises(TypeError, match="lam: expected a real number"):
        penalty(params, "0.1")
    with pytest.raises(TypeError, match="lam: expected a real number"):
        penalty(params, True)
    with pytest.raises(ValueError, match="mask: expected a pytree of bools"):
        penalty(params, 0.1, {"dense_0": True})
    with pytest.raises(TypeError, match="mask: expected True or False"):
        penalty(params, 0.1, jax.tree.map(lambda _: 1, params))
