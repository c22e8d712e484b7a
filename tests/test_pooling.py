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


@pytest.mark.parametrize(
    ("shape", "window"), [((3, 8, 8, 4), 2), ((2, 9, 7, 3), (2, 3)), ((2, 6, 6, 1), 3)]
)
@pytest.mark.parametrize("ties", [False, True])
def test_tiling_max_pool_equals_reduce_window_with_its_gradient(shape, window, ties):
    # max_pool whose windows tile the image runs as a reshape with a gradient
    # of its own: the same values and gradient as reduce_window, bit for bit,
    # ties included (each window's gradient to its first maximal pixel), and
    # the rows and columns that fill no whole window get no gradient
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    if ties:  # ReLU-like inputs: many windows with several equal maxima
        x = np.maximum(np.round(x), 0.0)
    k = (window, window) if isinstance(window, int) else window
    layer = ann.max_pool(window)
    y, pull = jax.vjp(lambda x: layer.apply({}, {}, x)[0], x)
    y_rw, pull_rw = jax.vjp(
        lambda x: jax.lax.reduce_window(
            x, -jnp.inf, jax.lax.max, (1, *k, 1), (1, *k, 1), "VALID"
        ),
        x,
    )
    g = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_rw))
    np.testing.assert_array_equal(np.asarray(pull(g)[0]), np.asarray(pull_rw(g)[0]))
    if ties:
        assert np.asarray(pull(g)[0]).astype(bool).sum() == y.size  # one per window


def test_tiling_max_pool_gradient_float64(check_grads64, key):
    x = jax.random.normal(key, (2, 5, 7, 2), jnp.float64)  # 5, 7: a remainder
    check_grads64(lambda x: ann.max_pool(2).apply({}, {}, x)[0], (x,))
