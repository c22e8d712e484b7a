"""Layer equality comes from construction: ``layer_factory`` and its rule.

Every public layer factory is walked argument by argument: equal arguments
give equal layers (equal hashes, one compiled program), and changing any one
argument gives an unequal layer.
"""

import inspect

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiles

import annjax as ann
from annjax._types import Identity, argument_key

P = inspect.Parameter

# For each public layer factory: the arguments of a base layer, and for EVERY
# parameter of its signature, another value. The test below fails when a
# factory gains a parameter that is missing here.
FACTORIES = {
    "dense": (
        {"units": 3},
        {
            "units": 4,
            "activation": "relu",
            "w_init": "he_normal",
            "use_bias": False,
            "b_init": "uniform",
            "dtype": jnp.bfloat16,
            "param_dtype": jnp.bfloat16,
        },
    ),
    "dropout": ({"rate": 0.1}, {"rate": 0.2}),
    "flatten": ({}, {}),
    "activation": (
        {"fn": "leaky_relu"},
        {"fn": "relu", "kwargs": {"negative_slope": 0.2}},
    ),
    "batch_norm": (
        {},
        {
            "momentum": 0.9,
            "eps": 1e-3,
            "axis": 1,
            "dtype": jnp.bfloat16,
            "param_dtype": jnp.bfloat16,
        },
    ),
    "layer_norm": (
        {},
        {
            "eps": 1e-5,
            "use_scale": False,
            "use_bias": False,
            "dtype": jnp.bfloat16,
            "param_dtype": jnp.bfloat16,
        },
    ),
    "conv2d": (
        {"features": 4, "kernel_size": 3},
        {
            "features": 5,
            "kernel_size": 2,
            "strides": 2,
            "padding": "VALID",
            "dilation": 2,
            "activation": "relu",
            "use_bias": False,
            "w_init": "he_normal",
            "b_init": "uniform",
            "dtype": jnp.bfloat16,
            "param_dtype": jnp.bfloat16,
        },
    ),
    "max_pool": ({"window": 2}, {"window": 3, "strides": 1, "padding": "SAME"}),
    "avg_pool": (
        {"window": 2},
        {"window": 3, "strides": 1, "padding": "SAME", "count_include_pad": False},
    ),
    "global_avg_pool": ({}, {}),
    "residual": (
        {"block": ann.dense(3)},
        {"block": ann.dense(4), "projection": "dense"},
    ),
    "serial": (
        {"layers": (ann.dense(3), ann.activation("relu"))},
        {"layers": (ann.dense(3), ann.activation("tanh"))},
    ),
    "mlp": (
        {"sizes": [4, 2]},
        {
            "sizes": [5, 2],
            "activation": "tanh",
            "output_activation": "sigmoid",
            "dropout": 0.1,
            "batch_norm": True,
            "momentum": 0.9,
            "residual": True,
            "w_init": "xavier_normal",
            "dtype": jnp.bfloat16,
            "param_dtype": jnp.bfloat16,
        },
    ),
    "resnet": (
        {"widths": (4,)},
        {
            "widths": (4, 8),
            "blocks": 2,
            "num_classes": 3,
            "activation": "tanh",
            "batch_norm": False,
            "residual": False,
            "momentum": 0.5,
            "stem_stride": 2,
            "dtype": jnp.bfloat16,
            "param_dtype": jnp.bfloat16,
        },
    ),
    "mixed_precision": (
        {"model": ann.dense(3)},
        {
            "model": ann.dense(4),
            "compute_dtype": jnp.float16,
            "output_dtype": jnp.bfloat16,
        },
    ),
    "from_flax": (
        {"module": nn.Dense(3)},
        {
            "module": nn.Dense(4),
            "train_arg": None,
            "name": "head",
            "rngs": ("dropout", "noise"),
        },
    ),
}


def _build(name: str, arguments: dict) -> ann.Layer:
    """Calls the factory with ``arguments`` keyed by its parameter names."""
    factory = getattr(ann, name)
    args, kwargs = [], {}
    for p in inspect.signature(factory).parameters.values():
        if p.name not in arguments:
            continue
        if p.kind is P.VAR_POSITIONAL:
            args.extend(arguments[p.name])
        elif p.kind is P.VAR_KEYWORD:
            kwargs.update(arguments[p.name])
        else:
            kwargs[p.name] = arguments[p.name]
    return factory(*args, **kwargs)


NOT_FACTORIES = {"layer_factory", "summary", "Summary"}  # tools, not layers


def test_every_public_layer_factory_is_walked():
    public = {
        name
        for name in ann.nn.__all__
        if name != "layer_factory"
        and isinstance(getattr(ann.nn, name), type(ann.dense))
        and hasattr(getattr(ann.nn, name), "__wrapped__")
    }
    plain = [
        name
        for name in ann.nn.__all__
        if name not in public and name not in NOT_FACTORIES
    ]
    assert plain == []  # every public factory records its identity
    assert public == set(FACTORIES)
    for name, (base, other) in FACTORIES.items():
        parameters = set(inspect.signature(getattr(ann, name)).parameters)
        assert set(base) | set(other) <= parameters, name


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_equal_arguments_equal_layers(name):
    base, _ = FACTORIES[name]
    a, b = _build(name, base), _build(name, base)
    assert a is not b
    assert a == b
    assert not a != b  # noqa: SIM202
    assert hash(a) == hash(b)
    assert isinstance(a.identity, Identity)
    assert a.identity.factory is getattr(ann, name).__wrapped__


@pytest.mark.parametrize(
    "name, parameter",
    [
        (name, p)
        for name in sorted(FACTORIES)
        for p in inspect.signature(getattr(ann, name)).parameters
    ],
)
def test_changing_one_argument_gives_another_layer(name, parameter):
    base, other = FACTORIES[name]
    assert parameter in other, f"{name}: no other value for {parameter!r}"
    changed = _build(name, {**base, parameter: other[parameter]})
    assert changed != _build(name, base)


def test_defaults_applied():
    assert ann.dense(3) == ann.dense(3, None, None, True, "zeros")
    assert ann.batch_norm() == ann.batch_norm(momentum=0.99)
    assert ann.mlp([4, 2]) == ann.mlp((4, 2))  # a list reads as the tuple


def test_argument_rule_functions_by_identity():
    def init(key, shape, dtype=jnp.float32):
        return jnp.zeros(shape, dtype)

    assert ann.dense(3, w_init=init) == ann.dense(3, w_init=init)
    other = lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype)  # noqa: E731
    assert ann.dense(3, w_init=init) != ann.dense(3, w_init=other)


def test_argument_rule_arrays_by_value_other_objects_by_identity():
    @ann.layer_factory
    def shift(offset, extra=None) -> ann.Layer:
        def init(key, shape):
            return tuple(shape), {}, {}

        def apply(params, state, x, *, key=None, train=False):
            return x + offset, state

        return ann.Layer(init, apply, "shift")

    assert shift(np.arange(3.0)) == shift(np.arange(3.0))
    f4 = np.arange(3, dtype="f4")
    assert shift(f4) == shift(jnp.arange(3, dtype=jnp.float32))  # NumPy or JAX
    assert shift(np.arange(3.0)) != shift(np.arange(3.0) + 1)
    assert shift(np.arange(3.0)) != shift(f4)  # the dtype
    assert shift(np.zeros((2, 3))) != shift(np.zeros((3, 2)))  # shape
    thing = bytearray(b"x")  # unhashable, not an array: by identity
    assert shift(0.0, thing) == shift(0.0, thing)
    assert shift(0.0, thing) != shift(0.0, bytearray(b"x"))
    assert shift(0.0, {"a": [1, 2]}) == shift(0.0, {"a": (1, 2)})
    assert argument_key(ann.dense(3)) == ann.dense(3)


def test_layer_without_identity_equals_only_itself():
    def init(key, shape):
        return tuple(shape), {}, {}

    layer = ann.Layer(init, lambda p, s, x, **k: (x, s))
    same = ann.Layer(layer.init, layer.apply)
    assert layer.identity is None
    assert layer == layer and layer != ann.Layer(init, lambda p, s, x, **k: (x, s))
    assert layer == same  # the same two functions
    assert layer != ann.dense(3)


def test_equal_models_share_compiled_code():
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("f4")
    y = (x[:, 0] > 0).astype("i4")

    def fit(model):
        return ann.fit(model, (x, y), epochs=1, batch_size=8, progress=False)

    def model(width):
        return ann.serial(ann.dense(width, "relu"), ann.batch_norm(), ann.dense(2))

    first = fit(model(5))
    assert compiles(lambda: fit(model(5))) == 0  # built anew, equal
    assert compiles(lambda: fit(model(6))) > 0  # one argument differs
    second = fit(model(5))
    np.testing.assert_array_equal(
        first.params["dense_0"]["w"], second.params["dense_0"]["w"]
    )
