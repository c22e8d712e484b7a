"""Pooling layers on NHWC images: ``max_pool``, ``avg_pool``, ``global_avg_pool``.

The math is one ``jax.lax.reduce_window`` over the spatial axes
(:func:`_pool`), except for the usual max pool whose windows tile the image
(stride = window, no padding): a reshape and a max with a derivative rule of
its own (:func:`_tiled_max`). The conventions (``"VALID"`` padding, padded
pixels never win a max and count as zeros in an average) are flax's
``flax.linen.max_pool`` / ``avg_pool``, except that the strides default to
the window, as in Keras and PyTorch (flax and stax default to 1): ``max_pool(2)``
halves an image.

Examples:
  >>> import jax
  >>> import annjax as ann
  >>> pool = ann.max_pool(2)                     # 2×2 windows, stride 2
  >>> pool.init(jax.random.key(0), (28, 28, 16))[0]
  (14, 14, 16)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from annjax._types import Array, Key, Layer, Params, Shape, State, layer_factory
from annjax.nn.conv import check_images, image_shape_of, padding_of, pair
from annjax.nn.layers import float_input

__all__ = ["avg_pool", "global_avg_pool", "max_pool"]


def _pool(x: Array, init, op, window, strides, padding) -> Array:
    """Returns ``op`` reduced over each (window) patch of an NHWC batch."""
    pad = padding if isinstance(padding, str) else ((0, 0), *padding, (0, 0))
    return jax.lax.reduce_window(x, init, op, (1, *window, 1), (1, *strides, 1), pad)


def _max(x: Array, window, strides, padding) -> Array:
    r"""Returns y_{n,i,j,c} = max over the window of x (padding counts as −∞)."""
    if strides == window and padding in ("VALID", ((0, 0), (0, 0))):
        return _tiled_max(x, window)
    return _pool(x, -jnp.inf, jax.lax.max, window, strides, padding)


def _tiles(x: Array, window) -> Array:
    """Returns x's whole (k_h, k_w) tiles as (N, H/k_h, k_h, W/k_w, k_w, C)
    (the rows and columns that fill no whole tile left out, as VALID does)."""
    (kh, kw), (n, h, w, c) = window, x.shape
    return x[:, : h // kh * kh, : w // kw * kw].reshape(n, h // kh, kh, w // kw, kw, c)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _tiled_max(x: Array, window) -> Array:
    """Returns the max pool of windows that tile x (stride = window, VALID).

    The same values and the same derivatives as ``reduce_window``: each
    window's tangent is its first maximal pixel's (row-major order), so its
    gradient goes there alone, as XLA's ``select_and_scatter`` sends it.
    Written by hand because XLA:CPU runs that ``select_and_scatter`` slowly:
    with a reshape, a max and an argmax, a whole training step of
    conv32-BN-pool-conv64-BN-pool-dense128 (batch 64) runs 2.6× faster on
    the 2-core test machine, with the same params after every step
    (``python benchmarks/max_pool.py``). A JVP rule, not a VJP, so that
    forward mode and Hessian-vector products work too.
    """
    return _tiles(x, window).max(axis=(2, 4))


@_tiled_max.defjvp
def _tiled_max_jvp(window, primals, tangents):
    (x,), (t,) = primals, tangents

    def windows(a):  # (N, H/k_h, W/k_w, C, k_h·k_w), each window row-major
        return _tiles(a, window).transpose(0, 1, 3, 5, 2, 4).reshape(*y.shape, -1)

    y = _tiled_max(x, window)
    flat = windows(x)
    first = jnp.argmax(flat, axis=-1)[..., None] == jnp.arange(flat.shape[-1])
    return y, jnp.where(first, windows(t), jnp.zeros((), t.dtype)).sum(axis=-1)


def _avg(x: Array, window, strides, padding, count_include_pad: bool) -> Array:
    r"""Returns the window means; padding counts as zeros in the mean when
    ``count_include_pad`` (flax's default), else each mean is over real pixels."""
    total = _pool(x, 0.0, jax.lax.add, window, strides, padding)
    if count_include_pad:
        return total / (window[0] * window[1])
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    return total / _pool(ones, 0.0, jax.lax.add, window, strides, padding)


def _pooling(name: str, fn, window, strides, padding, extra: tuple) -> Layer:
    window = pair(f"{name} window", window)
    strides = window if strides is None else pair(f"{name} strides", strides)
    pad = padding_of(f"{name} padding", padding)

    def run(x: Array) -> Array:
        return fn(x, window, strides, pad, *extra)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        shape = image_shape_of(name, input_shape)
        out = jax.eval_shape(run, jax.ShapeDtypeStruct((1, *shape), jnp.float32))
        if 0 in out.shape:
            raise ValueError(
                f"{name}: a {window} window with padding {padding!r} does not "
                f"fit an image of shape {shape}; use a smaller window or "
                "padding='SAME'."
            )
        return tuple(out.shape[1:]), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        x = float_input(x)
        check_images(name, x)
        return run(x), state

    return Layer(init, apply, name)


@layer_factory
def max_pool(
    window: int | tuple[int, int],
    strides: int | tuple[int, int] | None = None,
    padding: str | int | tuple = "VALID",
) -> Layer:
    r"""Returns a max-pooling layer: the largest value of each window, per channel.

    .. math:: y_{n,i,j,c} = \max_{0 \le h < k_h,\, 0 \le w < k_w}
              x_{n,\, s_h i + h,\, s_w j + w,\, c}

    Args:
      window: k or (k_h, k_w).
      strides: s or (s_h, s_w); None (default) is the window (no overlap).
      padding: ``"VALID"`` (default), ``"SAME"``, an int, a pair, or
        ``((top, bottom), (left, right))``; padded pixels never win.

    Raises:
      ValueError: for a non-positive window or stride, an unknown padding; at
        init for an input that is not one (H, W, C) image or smaller than the
        window; when applied, for a batch that is not NHWC.
    """
    return _pooling("max_pool", _max, window, strides, padding, ())


@layer_factory
def avg_pool(
    window: int | tuple[int, int],
    strides: int | tuple[int, int] | None = None,
    padding: str | int | tuple = "VALID",
    count_include_pad: bool = True,
) -> Layer:
    r"""Returns an average-pooling layer: the mean of each window, per channel.

    .. math:: y_{n,i,j,c} = \frac{1}{k_h k_w} \sum_{h, w}
              x_{n,\, s_h i + h,\, s_w j + w,\, c}

    Args:
      window, strides, padding: as :func:`max_pool`.
      count_include_pad: whether padded zeros count in the mean (flax's
        default); False divides by the number of real pixels in the window.
    """
    return _pooling(
        "avg_pool", _avg, window, strides, padding, (bool(count_include_pad),)
    )


@layer_factory
def global_avg_pool() -> Layer:
    r"""Returns the layer (batch, H, W, C) → (batch, C): each channel's mean.

    .. math:: y_{n,c} = \frac{1}{HW} \sum_{i,j} x_{n,i,j,c}

    The usual bridge from the convolutional stack to a dense head: it has no
    params and works for any image size.
    """

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        del key
        return (image_shape_of("global_avg_pool", input_shape)[-1],), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del params, key, train
        x = float_input(x)
        check_images("global_avg_pool", x)
        return jnp.mean(x, axis=(1, 2)), state

    return Layer(init, apply, "global_avg_pool")
