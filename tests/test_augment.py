"""Tests of annjax.data.augment: exact properties, per-example randomness, jit/vmap.

Compilation dominates the run time, so the tests share a few augmentation
instances (each is jitted once per input shape) and two input shapes, X3 and
X4, made with NumPy (a jax.random call per shape would compile too).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from annjax.data import augment

KEY = jax.random.key(0)


def images(shape, seed=0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).random(shape, dtype=np.float32))


X3 = images((64, 6, 6))
X4 = images((64, 6, 6, 2), seed=1)

FLIP_H, FLIP_V = augment.flip_horizontal(), augment.flip_vertical()
RANDOM_FLIP = augment.random_flip()
RANDOM_CROP = augment.random_crop(6, padding=2)
RANDOM_ROTATION = augment.random_rotation(45)
NOISE = augment.gaussian_noise(0.1, clip=(0.0, 1.0))
# Every augmentation, with a setting that keeps 6 × 6 images 6 × 6.
SAME_SHAPE = {
    "flip_horizontal": FLIP_H,
    "flip_vertical": FLIP_V,
    "random_flip": RANDOM_FLIP,
    "rotate_90": augment.rotate(90),
    "rotate_30": augment.rotate(30),
    "random_rotation": RANDOM_ROTATION,
    "random_crop": RANDOM_CROP,
    "resize": augment.resize(6, method="cubic"),
    "gaussian_noise": NOISE,
    "compose": augment.compose(RANDOM_FLIP, RANDOM_CROP),
}
RANDOM = ["random_flip", "random_rotation", "random_crop", "gaussian_noise", "compose"]


def as_np(x) -> np.ndarray:
    return np.asarray(x)


# ------------------------------------------------------------ exact properties


@pytest.mark.parametrize("x", [X3, X4], ids=["3d", "4d"])
def test_flipping_twice_is_the_identity(x):
    np.testing.assert_array_equal(FLIP_H(KEY, x), np.flip(as_np(x), 2))
    np.testing.assert_array_equal(FLIP_V(KEY, x), np.flip(as_np(x), 1))
    for flip in (FLIP_H, FLIP_V):
        np.testing.assert_array_equal(flip(KEY, flip(KEY, x)), x)


@pytest.mark.parametrize("x", [X3, X4, images((2, 4, 7))], ids=["3d", "4d", "4x7"])
def test_rotation_by_zero_is_the_identity(x):
    np.testing.assert_array_equal(augment.rotate(0)(KEY, x), x)
    np.testing.assert_array_equal(augment.rotate(-360)(KEY, x), x)


def test_random_rotation_of_zero_degrees_is_the_identity(strict_promotion):
    np.testing.assert_array_equal(augment.random_rotation(0)(KEY, X3), X3)


@pytest.mark.parametrize("x", [X3, X4], ids=["3d", "4d"])
@pytest.mark.parametrize("k", [-1, 1, 2, 3])
def test_quarter_turns_equal_rot90(x, k):
    expected = np.rot90(as_np(x), k, axes=(1, 2))
    np.testing.assert_array_equal(augment.rotate(90 * k)(KEY, x), expected)


@pytest.mark.parametrize("x", [X3, X4], ids=["3d", "4d"])
def test_four_quarter_turns_are_exactly_the_identity(x):
    quarter, y = SAME_SHAPE["rotate_90"], x
    for _ in range(4):
        y = quarter(KEY, y)
    np.testing.assert_array_equal(y, x)


def test_interpolated_rotation_agrees_with_rot90():
    # Just off 90°, bilinear interpolation must land on np.rot90: a 1e-4°
    # error moves a pixel by < 1e-5 pixels, so atol 1e-4 on values in [0, 1).
    x = images((4, 7, 7, 2))
    expected = np.rot90(as_np(x), 1, axes=(1, 2))
    np.testing.assert_allclose(augment.rotate(90.0001)(KEY, x), expected, atol=1e-4)


def test_rotation_turns_counter_clockwise_fills_zero_and_makes_floats():
    rotate45 = augment.rotate(45)
    dot = np.zeros((1, 9, 9), np.uint8)
    dot[0, 4, 8] = 1  # right middle: 45° counter-clockwise is up and right
    turned = rotate45(KEY, jnp.asarray(dot))
    assert turned.dtype == jnp.float32
    assert np.unravel_index(np.argmax(turned[0]), (9, 9)) == (1, 7)
    ones = rotate45(KEY, jnp.ones((1, 9, 9), jnp.uint8))
    assert ones[0, 0, 0] == 0.0 and ones[0, 4, 4] == 1.0


def test_rotation_of_non_square_images_keeps_the_shape():
    x = images((2, 4, 6))
    assert augment.rotate(90)(KEY, x).shape == (2, 4, 6)
    expected = np.rot90(as_np(x), 2, axes=(1, 2))
    np.testing.assert_array_equal(augment.rotate(180)(KEY, x), expected)


def test_pad_and_crop():
    x = images((3, 6, 8, 2))
    padded = augment.pad(2)(KEY, x)
    assert padded.shape == (3, 10, 12, 2)
    np.testing.assert_array_equal(padded[:, 2:-2, 2:-2], x)
    assert float(jnp.abs(padded).sum()) == pytest.approx(float(x.sum()), rel=1e-5)
    assert augment.pad((1, 0), mode="edge")(KEY, x).shape == (3, 8, 8, 2)
    np.testing.assert_array_equal(augment.crop(4)(KEY, x), x[:, 1:5, 2:6])
    np.testing.assert_array_equal(augment.crop((2, 3), 4, 5)(KEY, x), x[:, 4:6, 5:8])
    np.testing.assert_array_equal(augment.crop((6, 8))(KEY, x), x)


def test_random_crop_takes_a_window_of_the_padded_input_per_example():
    # Distinct positive values, so a window determines its offset uniquely.
    x = np.arange(1, X3.size + 1, dtype=np.float32).reshape(X3.shape)
    out = as_np(RANDOM_CROP(KEY, jnp.asarray(x)))
    assert out.shape == (64, 6, 6)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    offsets = set()
    for i in range(64):
        matches = [
            (r, c)
            for r in range(5)
            for c in range(5)
            if np.array_equal(padded[i, r : r + 6, c : c + 6], out[i])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 10  # each example drew its own window among 25


def test_resize():
    out = augment.resize((8, 6))(KEY, jnp.full((2, 4, 4, 3), 0.25))
    assert out.shape == (2, 8, 6, 3)
    np.testing.assert_allclose(out, 0.25, rtol=1e-6)
    y = images((2, 4, 4))
    expected = jax.image.resize(y, (2, 8, 8), "nearest")
    np.testing.assert_array_equal(augment.resize(8, "nearest")(KEY, y), expected)
    ints = augment.resize(2)(KEY, jnp.ones((1, 4, 4), jnp.int32))
    assert ints.dtype == jnp.float32 and ints.shape == (1, 2, 2)


def test_gaussian_noise_has_the_requested_std(strict_promotion):
    # 1e5 values: the sample std of N(0, σ²) has relative s.d. 1/sqrt(2n) ≈
    # 0.22%, so a 2% tolerance fails only for a wrong σ. Old-style uint32 keys
    # work too.
    key = jax.random.PRNGKey(0)
    noise = as_np(augment.gaussian_noise(0.3)(key, jnp.zeros((1000, 10, 10))))
    assert abs(noise.std() / 0.3 - 1) < 0.02
    assert abs(noise.mean()) < 0.01 and noise.dtype == np.float32


def test_gaussian_noise_clips():
    out = as_np(NOISE(KEY, X3))
    assert out.min() == 0.0 and out.max() == 1.0  # some values were clipped
    assert 0.05 < np.std(out - as_np(X3)) < 0.1


def test_random_flip_probabilities():
    np.testing.assert_array_equal(augment.random_flip(p=0.0)(KEY, X3), X3)
    both = augment.random_flip(horizontal=True, vertical=True, p=1.0)(KEY, X3)
    np.testing.assert_array_equal(both, np.flip(as_np(X3), (1, 2)))


# ------------------------------------------------------------------ randomness


def test_random_flip_is_per_example():
    out, x = as_np(RANDOM_FLIP(KEY, X3)), as_np(X3)
    flipped = np.array(
        [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x, strict=True)]
    )
    same = np.array([np.array_equal(o, i) for o, i in zip(out, x, strict=True)])
    assert (flipped | same).all()
    assert 10 < flipped.sum() < 54  # Binomial(64, 1/2) lies inside w.p. 1 - 1e-7


def test_random_rotation_is_per_example():
    x = jnp.broadcast_to(X3[:1], X3.shape)
    out = as_np(RANDOM_ROTATION(KEY, x))
    assert len({o.tobytes() for o in out}) == 64


@pytest.mark.parametrize("name", RANDOM)
def test_same_key_same_result_other_key_other_result(name):
    fn = SAME_SHAPE[name]
    np.testing.assert_array_equal(fn(KEY, X3), fn(jax.random.key(0), X3))
    assert not np.array_equal(fn(KEY, X3), fn(jax.random.key(1), X3))


@pytest.mark.parametrize("name", sorted(SAME_SHAPE))
def test_shape_and_dtype_are_kept(name):
    for x in (X3, X4):
        out = SAME_SHAPE[name](KEY, x)
        assert out.shape == x.shape and out.dtype == x.dtype


@pytest.mark.parametrize("name", ["random_rotation", "gaussian_noise", "compose"])
def test_jit_and_vmap_over_keys(name):
    fn = SAME_SHAPE[name]
    keys = jax.random.split(KEY, 3)
    out = jax.jit(jax.vmap(fn, in_axes=(0, None)))(keys, X3)
    assert out.shape == (3, *X3.shape)
    for i in range(3):
        np.testing.assert_allclose(out[i], fn(keys[i], X3), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["random_crop", "rotate_30"])
def test_compiled_equals_uncompiled(name):
    # The factories return jitted functions; disable_jit runs them op by op.
    fn = SAME_SHAPE[name]
    with jax.disable_jit():
        plain = fn(KEY, X3)
    np.testing.assert_allclose(fn(KEY, X3), plain, rtol=1e-6, atol=1e-6)


def test_compose_applies_in_order_with_split_keys():
    x = images((2, 4, 6))
    crop_left = augment.crop((4, 3), 0, 0)
    np.testing.assert_array_equal(
        augment.compose(FLIP_H, crop_left)(KEY, x), np.flip(as_np(x), 2)[:, :, :3]
    )
    np.testing.assert_array_equal(
        augment.compose(crop_left, FLIP_H)(KEY, x), np.flip(as_np(x)[:, :, :3], 2)
    )
    k1, k2 = jax.random.split(KEY)
    np.testing.assert_array_equal(
        SAME_SHAPE["compose"](KEY, X3), RANDOM_CROP(k2, RANDOM_FLIP(k1, X3))
    )
    np.testing.assert_array_equal(augment.compose()(KEY, x), x)


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", sorted(SAME_SHAPE))
@pytest.mark.parametrize("shape", [(6, 6), (1, 2, 6, 6, 3)])
def test_wrong_rank_is_rejected(name, shape):
    match = r"expected images of shape \(batch, H, W\) or \(batch, H, W, C\), got shape"
    with pytest.raises(ValueError, match=match):
        SAME_SHAPE[name](KEY, jnp.zeros(shape))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: augment.random_flip(p=1.5), r"p: expected a probability in \[0, 1\]"),
        (lambda: augment.random_flip(False, False), "horizontal or vertical"),
        (lambda: augment.random_rotation(-1), "max_degrees: expected a number >= 0"),
        (lambda: augment.pad(-1), r"padding\[0\]: expected an integer >= 0"),
        (lambda: augment.pad((1, 2, 3)), "padding: expected an int or a pair"),
        (lambda: augment.pad(1, mode="zeros"), "mode: expected one of"),
        (lambda: augment.crop(0), r"size\[0\]: expected an integer >= 1"),
        (lambda: augment.crop(2, top=-1), "top: expected an integer >= 0"),
        (lambda: augment.crop(2, left=-1), "left: expected an integer >= 0"),
        (lambda: augment.random_crop((4, 0)), r"size\[1\]: expected an integer >= 1"),
        (lambda: augment.random_crop(4, -2), r"padding\[0\]: expected an integer >= 0"),
        (lambda: augment.resize(0), r"size\[0\]: expected an integer >= 1"),
        (lambda: augment.resize(4, method="area"), "method: expected one of"),
        (lambda: augment.gaussian_noise(-0.1), "std: expected a number >= 0"),
        (lambda: augment.gaussian_noise(0.1, clip=(1, 0)), "clip: expected a pair"),
        (lambda: augment.gaussian_noise(0.1, clip=0.5), "clip: expected None or"),
    ],
)
def test_bad_arguments_fail_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_types_fail_at_construction():
    with pytest.raises(TypeError, match="angle: expected a real number"):
        augment.rotate("90")
    with pytest.raises(TypeError, match=r"fns\[1\]: expected an augmentation"):
        augment.compose(FLIP_V, 3)


def test_windows_larger_than_the_image_fail_when_traced():
    with pytest.raises(ValueError, match=r"size: expected a window no larger than"):
        augment.random_crop(11, padding=2)(KEY, X3)
    with pytest.raises(ValueError, match=r"crop: expected a window inside the 6×6"):
        augment.crop(7)(KEY, X3)
    with pytest.raises(ValueError, match=r"crop: expected a window inside"):
        augment.crop(4, top=3)(KEY, X3)
