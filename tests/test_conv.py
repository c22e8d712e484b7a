"""conv2d and resnet (annjax.nn.conv, annjax.nn.resnet).

Oracle: flax.linen.Conv with the same HWIO kernel, to 1e-5 (float32 sums of
at most 3·3·8 products, far below that); gradients by ``check_grads`` in
float64; He variance by sampling.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann


def _images(key, shape=(2, 9, 8, 3)):
    return jax.random.normal(key, shape)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"strides": 2},
        {"padding": "VALID"},
        {"padding": 1, "strides": (2, 1)},
        {"padding": ((1, 0), (2, 1))},
        {"dilation": 2},
        {"kernel_size": (3, 1), "use_bias": False},
    ],
)
def test_conv2d_matches_flax_conv_and_init_shape(key, kwargs):
    kwargs = dict(kwargs)
    size = kwargs.pop("kernel_size", 3)
    layer = ann.conv2d(5, size, **kwargs)
    shape, params, state = layer.init(key, (9, 8, 3))
    x = _images(jax.random.fold_in(key, 1))
    y, _ = layer.apply(params, state, x)
    flax_kwargs = {
        "strides": kwargs.get("strides", 1),
        "padding": kwargs.get("padding", "SAME"),
        "kernel_dilation": kwargs.get("dilation", 1),
        "use_bias": kwargs.get("use_bias", True),
    }
    if isinstance(flax_kwargs["padding"], int):
        p = flax_kwargs["padding"]
        flax_kwargs["padding"] = ((p, p), (p, p))
    ksize = (size, size) if isinstance(size, int) else size
    conv = nn.Conv(5, ksize, **flax_kwargs)
    flax_params = {"kernel": params["w"]}
    if "b" in params:
        flax_params["bias"] = params["b"] + 0.3  # a non-zero bias is checked too
        params = {**params, "b": flax_params["bias"]}
        y, _ = layer.apply(params, state, x)
    y_flax = conv.apply({"params": flax_params}, x)
    assert y.shape == (2, *shape)  # init predicts apply's shape
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_flax), atol=1e-5)


def test_conv2d_kernel_layout_is_flax_hwio(key):
    _, params, _ = ann.conv2d(4, (3, 2)).init(key, (6, 6, 5))
    flax_params = nn.Conv(4, (3, 2)).init(key, jnp.ones((1, 6, 6, 5)))["params"]
    assert params["w"].shape == flax_params["kernel"].shape == (3, 2, 5, 4)
    assert params["b"].shape == (4,)


def test_conv2d_activation_and_he_variance(key):
    layer = ann.conv2d(64, 3, activation="relu")
    assert layer.activation == "relu"
    _, params, _ = layer.init(key, (8, 8, 32))
    fan_in = 3 * 3 * 32
    # 3·3·32·64 = 18432 samples: the variance is within ~3% of 2/fan_in.
    assert float(jnp.var(params["w"])) == pytest.approx(2 / fan_in, rel=0.06)
    y, _ = layer.apply(params, {}, jnp.ones((1, 8, 8, 32)))
    assert float(jnp.min(y)) >= 0.0
    _, plain, _ = ann.conv2d(64, 3).init(key, (8, 8, 32))  # Xavier otherwise
    xavier = 2 / (fan_in + 3 * 3 * 64)
    assert float(jnp.var(plain["w"])) == pytest.approx(xavier, rel=0.06)


def test_conv2d_gradients_float64(check_grads64, key):
    layer = ann.conv2d(2, 3, strides=(2, 1), padding=1, dilation=(1, 2))
    _, params, _ = layer.init(key, (5, 6, 2))
    x = _images(jax.random.fold_in(key, 1), (2, 5, 6, 2))

    def f(w, b, x):
        return jnp.tanh(layer.apply({"w": w, "b": b}, {}, x)[0])

    check_grads64(f, (params["w"], params["b"], x))


def test_conv2d_equal_arguments_equal_layers():
    # Identity is the bound arguments as given: 3 and (3, 3) are two spellings
    # of one kernel, so they make unequal layers (one more compile, never a
    # wrong share).
    assert ann.conv2d(8, 3) == ann.conv2d(8, 3, padding="SAME")
    assert ann.conv2d(8, 3) != ann.conv2d(8, (3, 3))
    assert hash(ann.conv2d(8, 3)) == hash(ann.conv2d(8, 3))
    assert ann.conv2d(8, 3) != ann.conv2d(8, 3, strides=2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"features": 0}, ValueError, "conv2d features"),
        ({"features": 2.5}, TypeError, "conv2d features"),
        ({"kernel_size": 0}, ValueError, "conv2d kernel_size"),
        ({"kernel_size": (3, 3, 3)}, ValueError, "conv2d kernel_size"),
        ({"strides": 0}, ValueError, "conv2d strides"),
        ({"dilation": (1, 0)}, ValueError, "conv2d dilation"),
        ({"padding": "FULL"}, ValueError, "conv2d padding"),
        ({"padding": -1}, ValueError, "conv2d padding"),
        ({"padding": ((1, 1),)}, ValueError, "conv2d padding"),
        ({"activation": "nope"}, ValueError, "activation"),
        ({"w_init": "nope"}, ValueError, "initializer"),
        ({"b_init": "nope"}, ValueError, "initializer"),
    ],
)
def test_conv2d_argument_errors(kwargs, error, match):
    args = {"features": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=match):
        ann.conv2d(**args)


def test_conv2d_shape_errors(key):
    layer = ann.conv2d(4, 3)
    with pytest.raises(ValueError, match=r"conv2d input_shape: expected one image"):
        layer.init(key, (784,))
    with pytest.raises(ValueError, match="does not fit"):
        ann.conv2d(4, 5, padding="VALID").init(key, (3, 3, 1))
    _, params, state = layer.init(key, (8, 8, 3))
    with pytest.raises(ValueError, match=r"expected a batch of images .* 3 channels"):
        layer.apply(params, state, jnp.ones((2, 8, 8, 1)))
    with pytest.raises(ValueError, match="expected a batch of images"):
        layer.apply(params, state, jnp.ones((8, 8, 3)))


# ---------------------------------------------------------------------- resnet


def test_resnet_shapes_names_and_projection(key):
    model = ann.resnet((4, 8), blocks=2)
    shape, params, state = model.init(key, (12, 12, 1))
    assert shape == (10,)
    # the stage change halves the image, and its shortcut is a 1×1 projection
    shortcut = params["residual_7"]["shortcut"]
    assert shortcut["conv2d_0"]["w"].shape == (1, 1, 4, 8)
    assert "shortcut" not in params["residual_5"]  # same shape: identity
    strided = ann.resnet((4, 8), stem_stride=2)
    assert strided != model
    # a 3×3 image halves to 2×2 in the stem and to 1×1 in stage 2: still fits
    assert strided.init(key, (3, 3, 1))[0] == (10,)
    y, new_state = model.apply(params, state, jnp.ones((3, 12, 12, 1)), train=True)
    assert y.shape == (3, *shape)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(
        state
    )


def test_resnet_plain_twin_has_the_same_weight_layers(key):
    count = {}
    for residual in (True, False):
        model = ann.resnet((4, 8), blocks=1, residual=residual, batch_norm=False)
        _, params, _ = model.init(key, (8, 8, 1))
        paths = jax.tree_util.tree_flatten_with_path(params)[0]
        kernels = [p for p, leaf in paths if leaf.ndim == 4]
        count[residual] = len(kernels)
    # stem + 2 convs per block (+ one 1×1 projection with shortcuts)
    assert count[False] == 1 + 2 * 2
    assert count[True] == count[False] + 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": ()}, "resnet widths"),
        ({"widths": (4, 0)}, "resnet widths"),
        ({"blocks": 0}, "resnet blocks"),
        ({"num_classes": 0}, "resnet num_classes"),
        ({"stem_stride": 0}, "resnet stem_stride"),
    ],
)
def test_resnet_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ann.resnet(**kwargs)
