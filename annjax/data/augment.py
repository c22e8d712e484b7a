"""Image augmentation as pure, keyed, jittable functions on batches.

Every public function here is a factory: it checks its arguments once and
returns ``fn(key, x) -> x'`` on a batch ``x`` of shape ``(batch, H, W)`` or
``(batch, H, W, C)``. Random augmentations draw per example: ``key`` is split
once per image (``jax.random.split(key, batch)``, then ``vmap``), or one angle
per image is drawn, so every image gets its own flip, angle, window or noise.
Deterministic ones ignore ``key`` (None will do) but keep the signature, so
that :func:`compose` chains any of them. The returned functions
are jit-compiled (once per input shape) and remain plain JAX functions:
``jax.jit`` and ``jax.vmap`` work on them as they are, and
``fit(..., augment=fn)`` calls them inside its compiled step. A wrong input
rank raises ValueError when the function is traced.

Interpolating augmentations (rotation, resize, noise) return floating images;
integer images are converted to float32 first.

Examples:
  >>> import jax
  >>> from annjax import augment
  >>> fn = augment.compose(
  ...     augment.random_flip(), augment.random_crop(28, padding=2),
  ...     augment.gaussian_noise(0.05, clip=(0.0, 1.0)))
  >>> x = jax.numpy.zeros((64, 28, 28))
  >>> fn(jax.random.key(0), x).shape
  (64, 28, 28)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from annjax import _checks

Array = jax.Array
#: The type of every augmentation: ``fn(key, images) -> images``.
Augmentation = Callable[[Array, Array], Array]

__all__ = [
    "Augmentation",
    "compose",
    "crop",
    "flip_horizontal",
    "flip_vertical",
    "gaussian_noise",
    "pad",
    "random_crop",
    "random_flip",
    "random_rotation",
    "resize",
    "rotate",
]


# ------------------------------------------------ the math of rotate


def _rotate_image(image: Array, radians: Array) -> Array:
    r"""Returns one image (H, W, C) rotated counter-clockwise about its centre.

    Output pixel (r, c) samples the input, bilinearly, at the point rotated
    back by θ about the centre (c_y, c_x) = ((H−1)/2, (W−1)/2), with u = c − c_x
    and v = c_y − r (y pointing up):

    .. math:: u' = u\cos\theta + v\sin\theta, \qquad
              v' = -u\sin\theta + v\cos\theta

    Points outside the image read 0.
    """
    height, width = image.shape[0], image.shape[1]
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    r, c = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32),
        jnp.arange(width, dtype=jnp.float32),
        indexing="ij",
    )
    u, v = c - cx, cy - r
    cos, sin = jnp.cos(radians), jnp.sin(radians)
    rows = cy - (-u * sin + v * cos)
    cols = cx + (u * cos + v * sin)

    def channel(plane: Array) -> Array:
        return map_coordinates(plane, [rows, cols], order=1, mode="constant", cval=0.0)

    return jax.vmap(channel, in_axes=2, out_axes=2)(image)


def rotate_batch(x: Array, radians: Array) -> Array:
    """Returns every image of ``x`` (floating) rotated by its angle ``radians[i]``."""
    x4 = x if x.ndim == 4 else x[..., None]
    out = jax.vmap(_rotate_image)(x4, radians)
    return out if x.ndim == 4 else out[..., 0]


_H, _W = 1, 2  # the image axes of a batch (batch, H, W[, C])
_RESIZE_METHODS = ("nearest", "linear", "bilinear", "cubic", "bicubic", "lanczos3")
_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


# ------------------------------------------------------------------- helpers


def _images(name: str, x: Array) -> Array:
    """Returns ``x`` as an array after checking it is a batch of images."""
    x = jnp.asarray(_checks.numeric_array(name, x))
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected images of shape (batch, H, W) or (batch, H, W, C), "
            f"got shape {tuple(x.shape)}."
        )
    return x


def _floating(x: Array) -> Array:
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _per_example(fn: Callable[[Array, Array], Array], key: Array, x: Array) -> Array:
    """Returns ``fn(key_i, x_i)`` for every example i, each with its own key."""
    return jax.vmap(fn)(jax.random.split(key, x.shape[0]), x)


def _size(name: str, size: int | Sequence[int]) -> tuple[int, int]:
    """Returns ``size`` as (height, width) after checking both are >= 1."""
    pair = (size, size) if not isinstance(size, Sequence) else tuple(size)
    if len(pair) != 2:
        raise _checks.fail(name, "an int or a pair (height, width)", size)
    h = _checks.integer(f"{name}[0]", pair[0], minimum=1)
    w = _checks.integer(f"{name}[1]", pair[1], minimum=1)
    return h, w


def _padding(name: str, padding: int | Sequence[int]) -> tuple[int, int]:
    """Returns ``padding`` as (rows, columns) added on each side, both >= 0."""
    pair = (padding, padding) if not isinstance(padding, Sequence) else tuple(padding)
    if len(pair) != 2:
        raise _checks.fail(name, "an int or a pair (rows, columns)", padding)
    return (
        _checks.integer(f"{name}[0]", pair[0], minimum=0),
        _checks.integer(f"{name}[1]", pair[1], minimum=0),
    )


def _pad(x: Array, rows: int, cols: int, mode: str = "constant") -> Array:
    widths = [(0, 0), (rows, rows), (cols, cols)] + [(0, 0)] * (x.ndim - 3)
    return jnp.pad(x, widths, mode=mode)


# ---------------------------------------------------------------------- flips


def _flip(name: str, axis: int) -> Augmentation:
    def fn(key: Array, x: Array) -> Array:
        del key
        return jnp.flip(_images(name, x), axis=axis)

    return jax.jit(fn)


def flip_horizontal() -> Augmentation:
    """Returns ``fn(key, x)`` mirroring every image left–right (key unused)."""
    return _flip("flip_horizontal", _W)


def flip_vertical() -> Augmentation:
    """Returns ``fn(key, x)`` mirroring every image upside down (key unused)."""
    return _flip("flip_vertical", _H)


def random_flip(
    horizontal: bool = True, vertical: bool = False, p: float = 0.5
) -> Augmentation:
    """Returns ``fn(key, x)`` flipping each image with probability ``p``.

    Each example draws its own coin per enabled direction, so in a batch some
    images are flipped and others not.

    Raises:
      ValueError: ``p`` outside [0, 1], or neither direction enabled.
    """
    p = _checks.probability("p", p)
    if not (horizontal or vertical):
        raise _checks.fail(
            "random_flip", "horizontal or vertical to be True", (horizontal, vertical)
        )
    axes = [axis for axis, on in ((_H - 1, vertical), (_W - 1, horizontal)) if on]

    def one(key: Array, image: Array) -> Array:
        coins = jax.random.bernoulli(key, p, (len(axes),))
        for coin, axis in zip(coins, axes, strict=True):
            image = jnp.where(coin, jnp.flip(image, axis=axis), image)
        return image

    def fn(key: Array, x: Array) -> Array:
        return _per_example(one, key, _images("random_flip", x))

    return jax.jit(fn)


# ------------------------------------------------------------------ rotations


def rotate(angle: float) -> Augmentation:
    """Returns ``fn(key, x)`` rotating every image by ``angle`` degrees (key unused).

    Positive angles turn counter-clockwise, as ``np.rot90``. Multiples of 90°
    are exact (``jnp.rot90``, so four 90° turns give back the input bit for
    bit, in its own dtype); other angles interpolate bilinearly about the
    image centre and fill the uncovered corners with 0. On non-square images a
    quarter turn would change the shape, so there 90° and 270° interpolate too
    and keep (H, W).
    """
    degrees = _checks.number("angle", angle)
    quarter_turns = degrees / 90.0
    exact = quarter_turns == round(quarter_turns)
    k = round(quarter_turns) % 4

    def fn(key: Array, x: Array) -> Array:
        del key
        x = _images("rotate", x)
        if exact and (k % 2 == 0 or x.shape[_H] == x.shape[_W]):
            return jnp.rot90(x, k, axes=(_H, _W))
        radians = jnp.full((x.shape[0],), math.radians(degrees))
        return rotate_batch(_floating(x), radians)

    return jax.jit(fn)


def random_rotation(max_degrees: float) -> Augmentation:
    """Returns ``fn(key, x)`` rotating each image by its own uniform random angle.

    Each angle is drawn from U(−max_degrees, max_degrees), in degrees,
    counter-clockwise; bilinear interpolation about the centre, fill value 0.

    Raises:
      ValueError: ``max_degrees`` < 0.
    """
    limit = math.radians(_checks.non_negative("max_degrees", max_degrees))

    def fn(key: Array, x: Array) -> Array:
        x = _images("random_rotation", x)
        radians = jax.random.uniform(
            key, (x.shape[0],), minval=-limit, maxval=limit, dtype=jnp.float32
        )
        return rotate_batch(_floating(x), radians)

    return jax.jit(fn)


# ---------------------------------------------------------- pad, crop, resize


def pad(padding: int | Sequence[int], mode: str = "constant") -> Augmentation:
    """Returns ``fn(key, x)`` adding ``padding`` pixels on each side (key unused).

    Args:
      padding: an int, or (rows, columns) added above and below, left and right.
      mode: ``jnp.pad``'s mode; ``"constant"`` fills with 0.

    Raises:
      ValueError: negative padding, or an unknown mode.
    """
    rows, cols = _padding("padding", padding)
    _checks.one_of("mode", mode, _PAD_MODES)

    def fn(key: Array, x: Array) -> Array:
        del key
        return _pad(_images("pad", x), rows, cols, mode)

    return jax.jit(fn)


def crop(
    size: int | Sequence[int], top: int | None = None, left: int | None = None
) -> Augmentation:
    """Returns ``fn(key, x)`` cutting the window ``size`` out of every image.

    The window starts at row ``top`` and column ``left``; either left as None
    centres the window along that axis (rounding towards the top left).

    Raises:
      ValueError: size < 1 or offsets < 0 (at construction); a window that does
        not fit inside the image (when called).
    """
    h, w = _size("size", size)
    for name, offset in (("top", top), ("left", left)):
        if offset is not None:
            _checks.integer(name, offset, minimum=0)

    def fn(key: Array, x: Array) -> Array:
        del key
        x = _images("crop", x)
        r0 = (x.shape[_H] - h) // 2 if top is None else top
        c0 = (x.shape[_W] - w) // 2 if left is None else left
        if r0 < 0 or c0 < 0 or r0 + h > x.shape[_H] or c0 + w > x.shape[_W]:
            raise _checks.fail(
                "crop",
                f"a window inside the {x.shape[_H]}×{x.shape[_W]} image",
                f"rows {r0}:{r0 + h}, columns {c0}:{c0 + w}",
                "Lower size or the offsets.",
            )
        return x[:, r0 : r0 + h, c0 : c0 + w]

    return jax.jit(fn)


def random_crop(
    size: int | Sequence[int], padding: int | Sequence[int] = 0
) -> Augmentation:
    """Returns ``fn(key, x)`` cutting a random ``size`` window out of each image.

    Each image is first zero-padded by ``padding`` on every side, then each
    example draws its own top-left corner, uniformly among all windows that fit
    (``jax.lax.dynamic_slice``). ``random_crop(28, padding=4)`` on MNIST shifts
    every digit by up to 4 pixels.

    Raises:
      ValueError: size < 1 or padding < 0 (at construction); ``size`` larger
        than the padded image (when called).
    """
    h, w = _size("size", size)
    rows, cols = _padding("padding", padding)

    def fn(key: Array, x: Array) -> Array:
        x = _pad(_images("random_crop", x), rows, cols)
        if h > x.shape[_H] or w > x.shape[_W]:
            raise _checks.fail(
                "size",
                f"a window no larger than the padded image {x.shape[_H]}×{x.shape[_W]}",
                (h, w),
                "Lower size or raise padding.",
            )
        slack = (x.shape[_H] - h, x.shape[_W] - w)
        window = (h, w, *x.shape[3:])

        def one(key: Array, image: Array) -> Array:
            corner = jax.random.randint(key, (2,), 0, jnp.array(slack) + 1)
            start = (corner[0], corner[1], *([0] * (image.ndim - 2)))
            return jax.lax.dynamic_slice(image, start, window)

        return _per_example(one, key, x)

    return jax.jit(fn)


def resize(size: int | Sequence[int], method: str = "bilinear") -> Augmentation:
    """Returns ``fn(key, x)`` resampling every image to ``size`` (key unused).

    Uses ``jax.image.resize`` (antialiased when shrinking, for the linear and
    cubic methods); channels are kept.

    Raises:
      ValueError: size < 1, or an unknown method.
    """
    h, w = _size("size", size)
    _checks.one_of("method", method, _RESIZE_METHODS)

    def fn(key: Array, x: Array) -> Array:
        del key
        x = _floating(_images("resize", x))
        shape = (x.shape[0], h, w, *x.shape[3:])
        return jax.image.resize(x, shape, method=method)

    return jax.jit(fn)


# ---------------------------------------------------------- noise, compose


def gaussian_noise(std: float, clip: tuple[float, float] | None = None) -> Augmentation:
    r"""Returns ``fn(key, x)`` adding independent Gaussian noise to every pixel.

    .. math:: x' = x + \sigma\,\varepsilon, \qquad \varepsilon \sim N(0, 1)

    then, with ``clip=(lo, hi)``, x' is clipped to [lo, hi] (e.g. (0, 1) for
    images scaled to [0, 1]).

    Raises:
      ValueError: ``std`` < 0, or ``clip`` not a pair lo < hi.
    """
    sigma = _checks.non_negative("std", std)
    if clip is not None:
        if not isinstance(clip, Sequence) or len(clip) != 2:
            raise _checks.fail("clip", "None or a pair (lo, hi)", clip)
        clip = (_checks.number("clip[0]", clip[0]), _checks.number("clip[1]", clip[1]))
        if not clip[0] < clip[1]:
            raise _checks.fail("clip", "a pair (lo, hi) with lo < hi", clip)

    def one(key: Array, image: Array) -> Array:
        noisy = image + sigma * jax.random.normal(key, image.shape, image.dtype)
        return noisy if clip is None else jnp.clip(noisy, *clip)

    def fn(key: Array, x: Array) -> Array:
        return _per_example(one, key, _floating(_images("gaussian_noise", x)))

    return jax.jit(fn)


def compose(*fns: Augmentation) -> Augmentation:
    """Returns ``fn(key, x)`` applying ``fns`` in order, each with its own key.

    ``compose(f, g)(key, x) = g(k₂, f(k₁, x))`` with ``k₁, k₂`` split from
    ``key``; ``compose()`` is the identity.

    Raises:
      TypeError: an argument that is not callable.
    """
    for i, f in enumerate(fns):
        if not callable(f):
            raise TypeError(
                f"fns[{i}]: expected an augmentation fn(key, x), got {f!r}."
            )

    def fn(key: Array, x: Array) -> Array:
        if not fns:
            return x
        for f, k in zip(fns, jax.random.split(key, len(fns)), strict=True):
            x = f(k, x)
        return x

    return jax.jit(fn)
