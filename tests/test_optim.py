"""Tests of annjax.optim: optax chains clip → decay → step, checked against optax.

Oracle tolerances: annjax builds the very same optax transformations, so the
updates agree to float32 rounding (rtol 1e-6); the L2/decay equivalences differ
only by the order of two float32 additions (rtol 1e-6).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import annjax as ann

RTOL = 1e-6


def _params() -> dict:
    """Returns a small params tree with a dense layer and a batch-norm layer."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    return {
        "dense_0": {
            "w": jax.random.normal(k1, (3, 4)),
            "b": jax.random.normal(k2, (3,)),
        },
        "batch_norm_1": {"scale": jnp.full((3,), 1.5), "bias": jnp.full((3,), 0.5)},
        "dense_2": {"w": jax.random.normal(k3, (2, 3)), "b": jnp.ones((2,))},
    }


def _grads(seed: int) -> dict:
    """Returns a gradient tree like ``_params()``, reproducible from ``seed``."""
    params = _params()
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noise = [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, noise)


def _run(opt: optax.GradientTransformation, grads_seq, params=None) -> list[dict]:
    """Returns the updates ``opt`` produces for each gradient tree in turn."""
    params = _params() if params is None else params
    opt_state = opt.init(params)
    out = []
    for grads in grads_seq:
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out


def _assert_trees_close(a, b, rtol: float = RTOL, atol: float = 0.0) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _global_norm(tree) -> float:
    return float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree))))


GRADS = [_grads(1), _grads(2), _grads(3)]


@pytest.mark.parametrize(
    "opt", [ann.sgd(0.1), ann.sgd(0.1, momentum=0.9), ann.adam(1e-3), ann.adamw(1e-3)]
)
def test_factories_return_optax_transformations(opt):
    assert isinstance(opt, optax.GradientTransformation)
    updates = _run(opt, GRADS[:1])[0]
    assert jax.tree.structure(updates) == jax.tree.structure(_params())


@pytest.mark.parametrize(
    ("ours", "reference"),
    [
        (ann.sgd(0.1), optax.sgd(0.1)),
        (ann.sgd(0.1, momentum=0.9), optax.sgd(0.1, momentum=0.9)),
        (
            ann.sgd(0.1, momentum=0.9, nesterov=True),
            optax.sgd(0.1, momentum=0.9, nesterov=True),
        ),
        (ann.adam(1e-2), optax.adam(1e-2)),
        (ann.adam(1e-2, b1=0.5, b2=0.9, eps=1e-6), optax.adam(1e-2, 0.5, 0.9, 1e-6)),
    ],
    ids=["sgd", "momentum", "nesterov", "adam", "adam_betas"],
)
def test_updates_equal_optax(ours, reference):
    # three steps, so momentum and Adam's moment estimates matter
    _assert_trees_close(_run(ours, GRADS), _run(reference, GRADS))


def test_adamw_equals_optax_adamw_with_default_mask():
    reference = optax.adamw(1e-2, weight_decay=0.1, mask=ann.regularizers.default_mask)
    _assert_trees_close(
        _run(ann.adamw(1e-2, weight_decay=0.1), GRADS), _run(reference, GRADS)
    )


def test_clip_norm_clips_the_global_norm():
    big = jax.tree.map(lambda g: 10.0 * g, GRADS[0])
    assert _global_norm(big) > 1.0
    ours = _run(ann.sgd(1.0, clip_norm=1.0), [big])[0]
    clipped, _ = optax.clip_by_global_norm(1.0).update(big, optax.EmptyState())
    _assert_trees_close(ours, jax.tree.map(jnp.negative, clipped))
    assert _global_norm(ours) == pytest.approx(1.0, rel=1e-5)


def test_clip_norm_leaves_small_gradients_alone():
    small = jax.tree.map(lambda g: 1e-3 * g, GRADS[0])
    ours = _run(ann.sgd(1.0, clip_norm=1.0), [small])[0]
    _assert_trees_close(ours, jax.tree.map(jnp.negative, small))


def test_clip_value_clips_each_element():
    grads = jax.tree.map(lambda g: 3.0 * g, GRADS[0])
    ours = _run(ann.sgd(1.0, clip_value=0.5), [grads])[0]
    expected = jax.tree.map(lambda g: -jnp.clip(g, -0.5, 0.5), grads)
    _assert_trees_close(ours, expected)
    assert max(float(jnp.max(jnp.abs(u))) for u in jax.tree.leaves(ours)) == 0.5


@pytest.mark.parametrize(
    "opt",
    [
        ann.sgd(0.1, weight_decay=0.5),
        ann.sgd(0.1, momentum=0.9, weight_decay=0.5),
        ann.adam(1e-3, weight_decay=0.5),
        ann.adamw(1e-3, weight_decay=0.5),
    ],
    ids=["sgd", "momentum", "adam", "adamw"],
)
def test_weight_decay_spares_biases_and_batch_norm(opt):
    params = _params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates = _run(opt, [zeros], params)[0]
    new = optax.apply_updates(params, updates)
    for layer in ("dense_0", "dense_2"):
        assert jnp.all(jnp.abs(new[layer]["w"]) < jnp.abs(params[layer]["w"]))
        np.testing.assert_array_equal(new[layer]["b"], params[layer]["b"])
    for leaf in ("scale", "bias"):
        np.testing.assert_array_equal(
            new["batch_norm_1"][leaf], params["batch_norm_1"][leaf]
        )


def test_plain_sgd_weight_decay_shrinks_by_one_minus_lr_times_decay():
    params = _params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    new = optax.apply_updates(params, _run(ann.sgd(0.1, weight_decay=0.5), [zeros])[0])
    np.testing.assert_allclose(
        new["dense_0"]["w"], 0.95 * params["dense_0"]["w"], rtol=RTOL
    )


def test_custom_decay_mask_is_used():
    params = _params()
    zeros = jax.tree.map(jnp.zeros_like, params)

    def only_biases(p):
        return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "b", p)

    opt = ann.sgd(0.1, weight_decay=0.5, decay_mask=only_biases)
    new = optax.apply_updates(params, _run(opt, [zeros], params)[0])
    np.testing.assert_array_equal(new["dense_0"]["w"], params["dense_0"]["w"])
    np.testing.assert_allclose(new["dense_0"]["b"], 0.95 * params["dense_0"]["b"])


# --- weight decay against the L2 penalty in the loss -------------------------

LAM = 0.05


def _data_loss(params):
    """A smooth loss of every leaf, so that each leaf gets a gradient."""
    return sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(params))


def _l2_grads(params):
    return jax.grad(lambda p: _data_loss(p) + ann.regularizers.l2(p, LAM))(params)


def _one_step(opt, grads_fn, params):
    grads = grads_fn(params)
    updates, _ = opt.update(grads, opt.init(params), params)
    return optax.apply_updates(params, updates)


def _steps(opt, grads_fn, params, n):
    state = opt.init(params)
    for _ in range(n):
        updates, state = opt.update(grads_fn(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_plain_sgd_weight_decay_equals_l2_in_the_loss():
    # Without momentum, decoupled decay λ' = 2λ is exactly the L2 gradient 2λw.
    params = _params()
    with_decay = _steps(
        ann.sgd(0.1, weight_decay=2 * LAM), jax.grad(_data_loss), params, 3
    )
    with_l2 = _steps(ann.sgd(0.1), _l2_grads, params, 3)
    _assert_trees_close(with_decay, with_l2, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("decayed", "plain"),
    [
        (ann.sgd(0.1, momentum=0.9, weight_decay=2 * LAM), ann.sgd(0.1, momentum=0.9)),
        (ann.adam(0.1, weight_decay=2 * LAM), ann.adam(0.1)),
        (ann.adamw(0.1, weight_decay=2 * LAM), ann.adam(0.1)),
    ],
    ids=["momentum", "adam", "adamw"],
)
def test_decoupled_decay_differs_from_l2_under_momentum_and_adam(decayed, plain):
    # The L2 gradient goes through the momentum / Adam's rescaling; decoupled
    # decay does not (after 3 steps, so momentum has built up).
    params = _params()
    decoupled = _steps(decayed, jax.grad(_data_loss), params, 3)
    with_l2 = _steps(plain, _l2_grads, params, 3)
    w_gap = jnp.max(jnp.abs(decoupled["dense_0"]["w"] - with_l2["dense_0"]["w"]))
    assert w_gap > 1e-4
    # biases are spared by both, so they move alike
    np.testing.assert_allclose(
        decoupled["dense_0"]["b"], with_l2["dense_0"]["b"], rtol=1e-5, atol=1e-7
    )


def test_decoupled_decay_is_applied_outside_the_momentum():
    # w ← w − α (v + λ w) with v the momentum of the gradients alone.
    params = _params()
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    new = _steps(
        ann.sgd(0.1, momentum=0.9, weight_decay=0.5), lambda p: zero, params, 2
    )
    w0 = params["dense_0"]["w"]
    np.testing.assert_allclose(new["dense_0"]["w"], w0 * (1 - 0.05) ** 2, rtol=1e-6)


def test_unhashable_arguments_build_a_fresh_optimizer():
    opt = ann.sgd(jnp.float32(0.1))
    assert opt is not ann.sgd(jnp.float32(0.1))
    params = _params()
    assert jax.tree_util.tree_structure(opt.init(params)) is not None


# --- schedules and memoisation ----------------------------------------------


def test_learning_rate_schedule_is_followed():
    schedule = optax.linear_schedule(1.0, 0.0, transition_steps=10)
    grads = jax.tree.map(jnp.ones_like, _params())
    updates = _run(ann.sgd(schedule), [grads, grads, grads])
    for step, upd in enumerate(updates):
        np.testing.assert_allclose(
            upd["dense_0"]["w"], -(1.0 - step / 10) * grads["dense_0"]["w"], rtol=RTOL
        )


def test_adam_accepts_a_schedule():
    schedule = optax.exponential_decay(1e-2, transition_steps=1, decay_rate=0.5)
    _assert_trees_close(
        _run(ann.adam(schedule), GRADS), _run(optax.adam(schedule), GRADS)
    )


def test_factories_are_memoised():
    assert ann.sgd(0.1) is ann.sgd(0.1)
    assert ann.sgd(0.1, momentum=0.9) is ann.sgd(0.1, momentum=0.9)
    assert ann.adam(1e-3) is ann.adam(1e-3)
    assert ann.adamw(1e-3) is ann.adamw(1e-3)
    assert ann.sgd(0.1) is not ann.sgd(0.2)
    assert ann.adam(1e-3) is not ann.adamw(1e-3)


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (ann.sgd, {"learning_rate": 0.0}, "learning_rate"),
        (ann.sgd, {"learning_rate": -0.1}, "learning_rate"),
        (ann.adam, {"learning_rate": 0.0}, "learning_rate"),
        (ann.adamw, {"learning_rate": -1.0}, "learning_rate"),
        (ann.sgd, {"learning_rate": 0.1, "momentum": 1.0}, "momentum"),
        (ann.sgd, {"learning_rate": 0.1, "momentum": -0.1}, "momentum"),
        (ann.sgd, {"learning_rate": 0.1, "weight_decay": -1e-4}, "weight_decay"),
        (ann.adam, {"weight_decay": -1e-4}, "weight_decay"),
        (ann.adamw, {"weight_decay": -1e-4}, "weight_decay"),
        (ann.sgd, {"learning_rate": 0.1, "clip_norm": 0.0}, "clip_norm"),
        (ann.adam, {"clip_norm": -1.0}, "clip_norm"),
        (ann.sgd, {"learning_rate": 0.1, "clip_value": 0.0}, "clip_value"),
        (ann.adam, {"b1": 1.0}, "b1"),
        (ann.adam, {"b1": -0.1}, "b1"),
        (ann.adamw, {"b2": 1.0}, "b2"),
        (ann.adam, {"b2": 1.5}, "b2"),
        (ann.adam, {"eps": 0.0}, "eps"),
    ],
)
def test_invalid_hyper_parameters_raise(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (ann.sgd, {"learning_rate": "0.1"}, "learning_rate"),
        (ann.sgd, {"learning_rate": 0.1, "momentum": "0.9"}, "momentum"),
        (ann.adam, {"b1": None}, "b1"),
    ],
)
def test_wrong_types_raise_type_error(factory, kwargs, match):
    with pytest.raises(TypeError, match=match):
        factory(**kwargs)
