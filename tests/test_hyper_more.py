"""Named hyper-parameters beyond dropout: batch norm's momentum, label
smoothing and the EMA decay, each swept per model and equal to a ``fit``
with that value written directly."""

import inspect

import jax
import numpy as np
import optax
import pytest
from conftest import tiny_split

import annjax as ann

# Equal up to float rounding: a traced float32 value against a Python float
# (1 - 0.9 differs in the last bit of float32 between the two).
TOL = {"rtol": 1e-4, "atol": 1e-5}
KEYS = jax.random.split(jax.random.key(3), 2)
ARGS = {"optimizer": ann.sgd(0.1), "epochs": 2, "batch_size": 8, "progress": False}


@pytest.fixture(scope="module")
def data():
    return tiny_split()


def _close(a, b):
    for u, v in zip(
        jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True
    ):
        np.testing.assert_allclose(u, v, **TOL)


def _bn(momentum):
    return ann.serial(
        ann.dense(8), ann.batch_norm(momentum), ann.activation("relu"), ann.dense(3)
    )


def test_a_swept_batch_norm_momentum_equals_a_fit_with_that_momentum(data):
    momenta = [0.5, 0.9]
    swept = ann.fit_many(
        _bn(ann.hyper("m")), data[0], val_data=data[1], keys=KEYS,
        hyper={"m": momenta}, **ARGS,
    )  # fmt: skip
    for i, m in enumerate(momenta):
        alone = ann.fit(_bn(m), data[0], val_data=data[1], key=KEYS[i], **ARGS)
        picked = swept.select(i)
        _close(alone.params, picked.params)
        _close(alone.state, picked.state)  # the running statistics read m
        np.testing.assert_allclose(
            alone.history["val_loss"], picked.history["val_loss"], **TOL
        )
    # the momentum matters: the two models' running statistics differ
    assert not np.allclose(*swept.state["batch_norm_1"]["mean"])


def test_mlp_takes_the_momentum_as_a_number_or_a_hyper(data):
    direct = ann.fit(
        ann.mlp([8, 3], batch_norm=True, momentum=0.9), data[0], key=KEYS[0], **ARGS
    )
    named = ann.fit(
        ann.mlp([8, 3], batch_norm=True, momentum=ann.hyper("m")), data[0],
        key=KEYS[0], hyper={"m": 0.9}, **ARGS,
    )  # fmt: skip
    _close(direct.params, named.params)
    _close(direct.state, named.state)
    # mlp's default momentum is batch_norm's
    defaults = [
        inspect.signature(f).parameters["momentum"].default
        for f in (ann.mlp, ann.batch_norm)
    ]
    assert defaults[0] == defaults[1]


def test_a_swept_label_smoothing_equals_a_fit_with_that_smoothing(data):
    alphas = [0.0, 0.3]
    net = ann.mlp([8, 3])
    swept = ann.fit_many(
        net, data[0], val_data=data[1], keys=KEYS,
        label_smoothing=ann.hyper("ls"), hyper={"ls": alphas}, **ARGS,
    )  # fmt: skip
    for i, alpha in enumerate(alphas):
        alone = ann.fit(
            net, data[0], val_data=data[1], key=KEYS[i], label_smoothing=alpha,
            **ARGS,
        )  # fmt: skip
        picked = swept.select(i)
        _close(alone.params, picked.params)
        for name in ("loss", "val_loss"):  # val_loss smoothed by each model's α
            np.testing.assert_allclose(alone.history[name], picked.history[name], **TOL)
    np.testing.assert_array_equal(swept.hyper["ls"], np.float32(alphas))


def test_the_loss_takes_a_traced_smoothing_equal_to_optax():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(5, 4)).astype(np.float32)
    y = rng.integers(0, 4, 5)
    alphas = np.float32([0.0, 0.1, 0.5])

    def loss(alpha):  # traced: one α per vmapped model
        return ann.losses.softmax_cross_entropy(y, z, label_smoothing=alpha)

    got = jax.vmap(loss)(alphas)
    for a, value in zip(alphas, got, strict=True):
        targets = optax.smooth_labels(np.eye(4, dtype=np.float32)[y], float(a))
        want = optax.softmax_cross_entropy(z, targets).mean()
        np.testing.assert_allclose(value, want, rtol=1e-6)  # float32 rounding


def test_a_swept_ema_decay_equals_a_fit_with_that_decay(data):
    decays = [0.5, 0.9]
    net = ann.mlp([8, 3])
    swept = ann.fit_many(
        net, data[0], val_data=data[1], keys=KEYS, ema=ann.hyper("d"),
        hyper={"d": decays}, validate_on="ema", **ARGS,
    )  # fmt: skip
    for i, decay in enumerate(decays):
        alone = ann.fit(
            net, data[0], val_data=data[1], key=KEYS[i], ema=decay,
            validate_on="ema", **ARGS,
        )  # fmt: skip
        picked = swept.select(i)
        _close(alone.params, picked.params)
        _close(alone.ema_params, picked.ema_params)
        np.testing.assert_allclose(
            alone.history["val_loss"], picked.history["val_loss"], **TOL
        )
    named = ann.fit(
        net, data[0], key=KEYS[1], ema=ann.hyper("d"), hyper={"d": 0.9}, **ARGS
    )
    _close(named.ema_params, swept.select(1).ema_params)


@pytest.mark.parametrize(
    ("transform", "name", "values"),
    [(optax.sgd, "momentum", [0.9, 0.0]), (optax.adamw, "weight_decay", [0.0, 0.5])],
)
def test_an_injected_optimizer_argument_is_swept(data, transform, name, values):
    def optimizer(v):
        return optax.inject_hyperparams(transform)(learning_rate=0.05, **{name: v})

    args = {**ARGS, "optimizer": optimizer(values[0])}
    many = ann.fit_many(
        ann.mlp([8, 3]), data[0], keys=KEYS, hyper={name: values}, **args
    )
    alone = ann.fit(
        ann.mlp([8, 3]), data[0], key=KEYS[1],
        **{**ARGS, "optimizer": optimizer(values[1])},
    )  # fmt: skip
    _close(alone.params, many.select(1).params)


@pytest.mark.parametrize(
    ("model", "kwargs", "match"),
    [
        (_bn(ann.hyper("m")), {"hyper": {"m": [0.9, 1.5]}}, "batch_norm momentum"),
        (
            ann.mlp([8, 3], batch_norm=True, momentum=ann.hyper("m")),
            {"hyper": {"m": [-0.1, 0.9]}},
            "batch_norm momentum",
        ),
        (_bn(ann.hyper("m", default=1.5)), {}, "batch_norm momentum"),
        (
            ann.mlp([8, 3]),
            {"label_smoothing": ann.hyper("ls"), "hyper": {"ls": [-0.1, 0.1]}},
            "label_smoothing",
        ),
        (
            ann.mlp([8, 3]),
            {"ema": ann.hyper("d"), "hyper": {"d": [0.9, 1.0]}},
            "ema: expected a decay",
        ),
        (ann.mlp([8, 3]), {"ema": ann.hyper("d")}, r"ema=ann\.hyper\('d'\)"),
        (_bn(ann.hyper("m")), {"hyper": {"m": [0.9, 0.9], "x": [1, 2]}}, "'x'"),
        (
            ann.mlp([8, 3]),
            {"loss": "mse", "label_smoothing": ann.hyper("ls")},
            "label_smoothing: expected loss='softmax_cross_entropy'",
        ),
    ],
)
def test_bad_specs_are_refused_before_anything_compiles(data, model, kwargs, match):
    with ann.count_compiles() as compiles, pytest.raises(ValueError, match=match):
        ann.fit_many(model, data[0], keys=KEYS, **{**ARGS, **kwargs})
    assert compiles.requests == 0


def test_fit_refuses_a_bad_single_value_before_anything_compiles(data):
    with ann.count_compiles() as compiles:
        with pytest.raises(ValueError, match="batch_norm momentum"):
            ann.fit(_bn(ann.hyper("m")), data[0], hyper={"m": 1.0}, **ARGS)
        with pytest.raises(ValueError, match="ema: expected a decay"):
            ann.fit(
                ann.mlp([8, 3]), data[0], ema=ann.hyper("d"), hyper={"d": 1.0}, **ARGS
            )
        with pytest.raises(ValueError, match="label_smoothing"):
            ann.fit(
                ann.mlp([8, 3]), data[0], label_smoothing=ann.hyper("ls"),
                hyper={"ls": 1.5}, **ARGS,
            )  # fmt: skip
    assert compiles.requests == 0
