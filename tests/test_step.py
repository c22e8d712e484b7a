"""Tests of annjax.training.step: the pure train/eval steps and the train state.

One small model (``mlp([4, 3])`` on 5 features, 8 examples) and one jitted
step serve most tests, so the module compiles only a handful of programs.
Tolerances: a jitted or vmapped step may fuse or batch float32 arithmetic in
another order, so it agrees with the plain step to rtol 1e-5, not bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import annjax as ann

N, FEATURES, CLASSES = 8, 5, 3
RTOL = 1e-5
LOSS = "softmax_cross_entropy"
LR, L2 = 0.1, 0.1


@pytest.fixture(scope="module")
def model():
    return ann.mlp([4, CLASSES])


@pytest.fixture(scope="module")
def opt():
    return ann.sgd(LR, momentum=0.9)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, FEATURES)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
    return jnp.asarray(x), jnp.asarray(y)


@pytest.fixture(scope="module")
def ts(model, opt):
    return ann.init_train_state(model, opt, jax.random.key(0), (FEATURES,))[0]


@pytest.fixture(scope="module")
def step(model, opt):
    return ann.make_train_step(model, LOSS, opt, metrics=("accuracy",))


@pytest.fixture(scope="module")
def jstep(step):
    """The jitted step: one compilation serves every test that uses it."""
    return jax.jit(step)


@pytest.fixture(scope="module")
def l2_step(model, opt):
    return jax.jit(ann.make_train_step(model, LOSS, opt, metrics=("accuracy",), l2=L2))


def _host(tree):
    return jax.tree.map(np.array, tree)


def _assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _assert_trees_close(a, b, rtol: float = RTOL, atol: float = 1e-7) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _index(tree, i: int):
    return jax.tree.map(lambda a: a[i], tree)


# --- init_train_state --------------------------------------------------------


def test_init_train_state_fields_and_output_shape(model, opt, ts):
    again, out_shape = ann.init_train_state(model, opt, jax.random.key(0), (FEATURES,))
    assert out_shape == (CLASSES,)
    assert isinstance(ts, ann.TrainState)
    assert ts.step.shape == () and ts.step.dtype == jnp.int32 and int(ts.step) == 0
    _assert_trees_equal(again, ts)  # same key, same state
    _, params, state = jax.eval_shape(
        lambda k: model.init(k, (FEATURES,)), jax.random.key(0)
    )
    shapes = jax.tree.map(lambda a: (a.shape, a.dtype), (ts.params, ts.state))
    assert shapes == jax.tree.map(lambda a: (a.shape, a.dtype), (params, state))
    _assert_trees_equal(ts.opt_state, opt.init(ts.params))


def test_init_train_state_depends_on_the_key(model, opt, ts):
    other = ann.init_train_state(model, opt, jax.random.key(1), (FEATURES,))[0]
    assert not np.array_equal(ts.params["dense_0"]["w"], other.params["dense_0"]["w"])


# --- make_train_step ---------------------------------------------------------


def test_train_step_is_pure(jstep, ts, batch):
    before = _host((ts, batch))
    key = jax.random.key(3)
    first = jstep(ts, batch, key)
    second = jstep(ts, batch, key)
    _assert_trees_equal(first, second)
    _assert_trees_equal(_host((ts, batch)), before)  # inputs untouched
    new, logs = first
    assert int(new.step) == 1
    assert set(logs) == {"loss", "weight", "accuracy"}
    assert float(logs["weight"]) == N


def test_train_step_lowers_the_loss(jstep, ts, batch):
    new, logs = jstep(ts, batch, jax.random.key(0))
    _, later = jstep(new, batch, jax.random.key(1))
    assert float(later["loss"]) < float(logs["loss"])


def test_jitted_step_equals_plain_step(step, jstep, ts, batch):
    key = jax.random.key(3)
    _assert_trees_close(jstep(ts, batch, key), step(ts, batch, key))


def test_zero_weights_equal_the_step_on_the_subset(jstep, ts, batch):
    x, y = batch
    keep = np.array([1, 1, 0, 1, 0, 1, 1, 0], bool)
    w = jnp.asarray(keep, jnp.float32)
    key = jax.random.key(4)
    weighted, wlogs = jstep(ts, (x, y, w), key)
    subset, slogs = jstep(ts, (x[keep], y[keep]), key)
    _assert_trees_close(weighted, subset)
    assert float(wlogs["weight"]) == keep.sum() == float(slogs["weight"])
    np.testing.assert_allclose(wlogs["loss"], slogs["loss"], rtol=RTOL)
    # the metrics, too, count only the weighted examples
    np.testing.assert_allclose(wlogs["accuracy"], slogs["accuracy"], rtol=RTOL)


def test_train_step_equals_optax_on_the_loss_gradient(model, opt, jstep, ts, batch):
    x, y = batch

    @jax.jit
    def grads(params):
        def loss(p):
            pred, _ = model.apply(p, ts.state, x, train=True)
            return ann.losses.get(LOSS)(y, pred)

        return jax.grad(loss)(params)

    updates, _ = opt.update(grads(ts.params), ts.opt_state, ts.params)
    new, _ = jstep(ts, batch, jax.random.key(0))
    _assert_trees_close(new.params, optax.apply_updates(ts.params, updates))


def test_l2_in_the_step_adds_the_penalty_gradient(jstep, l2_step, ts, batch):
    key = jax.random.key(0)
    p0 = ts.params
    p_plain = jstep(ts, batch, key)[0].params
    p_reg = l2_step(ts, batch, key)[0].params
    # first SGD step (momentum trace still 0): w ← w − η (∇L + 2λw), b spared
    np.testing.assert_allclose(
        p_reg["dense_0"]["w"],
        p_plain["dense_0"]["w"] - LR * 2 * L2 * p0["dense_0"]["w"],
        rtol=RTOL,
        atol=1e-6,
    )
    np.testing.assert_array_equal(p_reg["dense_0"]["b"], p_plain["dense_0"]["b"])


# --- make_eval_step ----------------------------------------------------------


def test_eval_step_equals_loss_and_metrics_on_outputs(model, ts, batch):
    x, y = batch
    names = ("accuracy", "f1_macro")
    eval_step = ann.make_eval_step(model, LOSS, metrics=names)
    logs = jax.jit(eval_step)(ts.params, ts.state, batch)
    pred, _ = model.apply(ts.params, ts.state, x, train=False)
    assert set(logs) == {"loss", *names}
    np.testing.assert_allclose(logs["loss"], ann.losses.get(LOSS)(y, pred), rtol=RTOL)
    for name in names:
        np.testing.assert_allclose(
            logs[name], ann.metrics.get(name)(y, pred), rtol=RTOL
        )


# --- vmap: many models at once -----------------------------------------------


def test_vmap_over_train_states_equals_separate_steps(model, opt, step, jstep, batch):
    init_keys = jax.random.split(jax.random.key(10), 3)
    step_keys = jax.random.split(jax.random.key(11), 3)
    states = [ann.init_train_state(model, opt, k, (FEATURES,))[0] for k in init_keys]

    many = jax.jit(jax.vmap(step, in_axes=(0, None, 0)))
    new, logs = many(_stack(states), batch, step_keys)
    assert new.params["dense_0"]["w"].shape == (3, 4, FEATURES)
    for i, (ts_i, key_i) in enumerate(zip(states, step_keys, strict=True)):
        _assert_trees_close(_index((new, logs), i), jstep(ts_i, batch, key_i))


def test_vmap_over_l2_strength_equals_separate_steps(
    model, opt, jstep, l2_step, ts, batch
):
    key = jax.random.key(0)

    def run(lam):
        step = ann.make_train_step(model, LOSS, opt, metrics=("accuracy",), l2=lam)
        return step(ts, batch, key)

    swept = jax.jit(jax.vmap(run))(jnp.array([0.0, L2]))
    for i, one_step in enumerate([jstep, l2_step]):
        _assert_trees_close(_index(swept, i), one_step(ts, batch, key))
