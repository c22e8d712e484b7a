"""max_pool, avg_pool and global_avg_pool (annjax.nn.pooling).

Oracle: flax.linen.max_pool / avg_pool with the same window, strides and
padding, to 1e-5 (one max or a mean of at most 9 numbers in float32);
gradients by ``check_grads`` in float64 (random inputs, so no ties in a max).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann

CASES = [
    (2, None, "VALID"),
    (3, 2, "SAME"),
    ((2, 3), (1, 2), "VALID"),
    (3, 1, 1),
    (2, 2, ((1, 0), (0, 1))),
]


def _flax_padding(padding):
    return (
        ((padding, padding), (padding, padding))
        if isinstance(padding, int)
        else padding
    )


@pytest.mark.parametrize(("window", "strides", "padding"), CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_matches_flax_and_init_shape(key, kind, window, strides, padding):
    factory = ann.max_pool if kind == "max" else ann.avg_pool
    layer = factory(window, strides, padding)
    shape, params, state = layer.init(key, (7, 6, 3))
    x = jax.random.normal(key, (2, 7, 6, 3))
    y, _ = layer.apply(params, state, x)
    pair = (window, window) if isinstance(window, int) else window
    stride = (
        pair
        if strides is None
        else strides
        if isinstance(strides, tuple)
        else (strides,) * 2
    )
    flax_fn = nn.max_pool if kind == "max" else nn.avg_pool
    y_flax = flax_fn(x, pair, strides=stride, padding=_flax_padding(padding))
    assert y.shape == (2, *shape)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_flax), atol=1e-5)


def test_strides_default_to_the_window(key):
    shape, _, _ = ann.max_pool(2).init(key, (28, 28, 4))
    assert shape == (14, 14, 4)  # Keras/PyTorch's default; flax's is stride 1


def test_avg_pool_without_padding_in_the_count_matches_flax(key):
    x = jax.random.normal(key, (2, 5, 5, 2))
    layer = ann.avg_pool(3, 2, "SAME", count_include_pad=False)
    y, _ = layer.apply({}, {}, x)
    y_flax = nn.avg_pool(x, (3, 3), (2, 2), "SAME", count_include_pad=False)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_flax), atol=1e-5)


def test_global_avg_pool_is_the_channel_mean(key):
    layer = ann.global_avg_pool()
    shape, params, state = layer.init(key, (5, 4, 6))
    x = jax.random.normal(key, (3, 5, 4, 6))
    y, _ = layer.apply(params, state, x)
    assert shape == (6,) and y.shape == (3, 6)
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(x).mean(axis=(1, 2)), atol=1e-6
    )


@pytest.mark.parametrize(
    "layer",
    [ann.max_pool(2, 1, "SAME"), ann.avg_pool(3, 2, 1), ann.global_avg_pool()],
)
def test_pooling_gradients_float64(check_grads64, key, layer):
    x = jax.random.normal(key, (2, 5, 4, 2))
    check_grads64(lambda x: layer.apply({}, {}, x)[0], (x,))


def test_equal_pooling_arguments_are_equal():
    assert ann.max_pool(2) == ann.max_pool(2, None, "VALID")  # defaults bound
    assert ann.max_pool(2) != ann.max_pool(2, 2)  # another spelling: unequal
    assert ann.max_pool(2) != ann.avg_pool(2)
    assert ann.global_avg_pool() == ann.global_avg_pool()


@pytest.mark.parametrize("factory", [ann.max_pool, ann.avg_pool])
@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0,), ValueError, "window"),
        ((2.0,), TypeError, "window"),
        ((2, 0), ValueError, "strides"),
        ((2, (1, 2, 3)), ValueError, "strides"),
        ((2, 1, "FULL"), ValueError, "padding"),
        ((2, 1, -1), ValueError, "padding"),
    ],
)
def test_pooling_argument_errors(factory, args, error, match):
    with pytest.raises(error, match=match):
        factory(*args)


@pytest.mark.parametrize(
    "layer", [ann.max_pool(2), ann.avg_pool(2), ann.global_avg_pool()]
)
def test_pooling_shape_errors(key, layer):
    with pytest.raises(ValueError, match="input_shape: expected one image"):
        layer.init(key, (16, 3))
    with pytest.raises(ValueError, match="expected a batch of images"):
        layer.apply({}, {}, jnp.ones((4, 4, 3)))


def test_pooling_window_larger_than_the_image(key):
    with pytest.raises(ValueError, match="does not fit"):
        ann.max_pool(5).init(key, (3, 3, 1))
