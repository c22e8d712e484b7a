"""Two-dimensional convolution on NHWC images, as a ``Layer(init, apply)``.

The math is :func:`_conv2d` (``jax.lax.conv_general_dilated``); :func:`conv2d`
wires the kernel, the bias and the shapes around it. Images are NHWC
(batch, height, width, channels), as in flax and TensorFlow; the kernel is
stored HWIO (height, width, in, out), flax's layout, so a flax ``Conv``'s
``kernel`` is an annjax ``w`` unchanged.

Examples:
  >>> import jax
  >>> import annjax as ann
  >>> conv = ann.conv2d(16, 3)                   # 3×3, SAME padding, stride 1
  >>> shape, params, state = conv.init(jax.random.key(0), (28, 28, 1))
  >>> shape, params["w"].shape
  ((28, 28, 16), (3, 3, 1, 16))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from annjax import _checks, activations, initializers
from annjax._types import Array, Key, Layer, Params, Shape, State, layer_factory
from annjax.nn.layers import compute_dtype, float_dtype, input_shape_of

__all__ = ["conv2d", "image_shape_of", "padding_of", "pair"]

Padding = str | tuple[tuple[int, int], tuple[int, int]]


def pair(name: str, value, minimum: int = 1) -> tuple[int, int]:
    """Returns ``value`` (an int or a pair of ints >= ``minimum``) as a pair."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise _checks.fail(name, "an int or a pair of ints", value)
        return tuple(_checks.integer(name, v, minimum=minimum) for v in value)
    v = _checks.integer(name, value, minimum=minimum)
    return v, v


def padding_of(name: str, padding) -> Padding:
    """Returns ``"SAME"``, ``"VALID"`` or ``((top, bottom), (left, right))``.

    An int p pads p on every side; a pair (ph, pw) pads ph rows above and below
    and pw columns left and right.
    """
    if isinstance(padding, str):
        return _checks.one_of(name, padding.upper(), ("SAME", "VALID"))
    if isinstance(padding, Sequence) and all(isinstance(p, Sequence) for p in padding):
        if len(padding) != 2:
            raise _checks.fail(name, "two (low, high) pairs", padding)
        return tuple(pair(name, p, minimum=0) for p in padding)
    ph, pw = pair(name, padding, minimum=0)
    return (ph, ph), (pw, pw)


def image_shape_of(name: str, input_shape) -> Shape:
    """Returns the shape of one NHWC example, (H, W, C), or raises ValueError."""
    shape = input_shape_of(name, input_shape)
    if len(shape) != 3:
        raise _checks.fail(
            f"{name} input_shape",
            "one image (height, width, channels), rank 3 without the batch axis",
            shape,
            "Reshape flat pixels to (H, W, C), e.g. X.reshape(-1, 28, 28, 1).",
        )
    return shape


def check_images(name: str, x: Array, channels: int | None = None) -> None:
    """Raises ValueError unless ``x`` is an NHWC batch with ``channels`` channels."""
    if x.ndim != 4 or (channels is not None and x.shape[-1] != channels):
        want = f"{channels} channels" if channels is not None else "C channels"
        raise ValueError(
            f"{name}: expected a batch of images (batch, height, width, {want}), "
            f"got x of shape {tuple(x.shape)}."
        )


def _conv2d(w: Array, b: Array | None, x: Array, strides, padding, dilation) -> Array:
    r"""Returns the cross-correlation z = x ⋆ W + b of an NHWC batch, W in HWIO.

    .. math:: z_{n,i,j,o} = b_o + \sum_{h,w,c} x_{n,\,s_1 i + d_1 h,\,s_2 j + d_2 w,\,c}
              \, W_{h,w,c,o}

    (s: strides, d: dilation; x padded first), what every deep-learning
    library calls a convolution.
    """
    z = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=strides,
        padding=padding,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return z if b is None else z + b


def _kernel_init(w_init, act_name):
    """Returns ``init(key, (H, W, I, O))`` from an annjax (out, in) initializer.

    annjax initializers read the shape as (…, out, in) with the leading axes as
    the receptive field, so the kernel is drawn as (H, W, O, I): fan_in =
    H·W·I and fan_out = H·W·O, as for flax's HWIO kernels; then transposed.
    """
    base = (
        initializers.get(w_init)
        if w_init is not None
        else initializers.default_for(act_name)
    )

    def init(key: Key, shape: Shape, dtype=jnp.float32) -> Array:
        h, w, i, o = shape
        return jnp.transpose(base(key, (h, w, o, i), dtype), (0, 1, 3, 2))

    return init


@layer_factory
def conv2d(
    features: int,
    kernel_size: int | tuple[int, int],
    strides: int | tuple[int, int] = 1,
    padding: str | int | tuple = "SAME",
    dilation: int | tuple[int, int] = 1,
    activation: str | Callable[..., Array] | None = None,
    use_bias: bool = True,
    w_init: str | Callable[..., Array] | None = None,
    b_init: str | Callable[..., Array] = "zeros",
    *,
    dtype=None,
    param_dtype=jnp.float32,
) -> Layer:
    r"""Returns a 2-D convolution layer y = f(x ⋆ W + b) on NHWC images.

    .. math:: y = f(x \star W + b), \qquad W \in \mathbb{R}^{k_h \times k_w
              \times C_{in} \times C_{out}},\; b \in \mathbb{R}^{C_{out}}

    Each output channel is one filter slid over the image: the dense layer's
    Wx + b with weights shared across positions.

    Args:
      features: C_out, the number of filters (output channels).
      kernel_size: k or (k_h, k_w).
      strides: s or (s_h, s_w), the step between windows.
      padding: ``"SAME"`` (output size ⌈in / stride⌉), ``"VALID"`` (no
        padding), an int p (p on every side), a pair (p_h, p_w), or
        ``((top, bottom), (left, right))``.
      dilation: d or (d_h, d_w): the kernel's taps are d apart (atrous).
      activation: a name from :func:`annjax.activations.get`, a callable, or
        None; the profiler measures dead/saturated channels of it.
      use_bias: whether to add b.
      w_init: the kernel initializer, a name or an annjax initializer (it is
        called with the shape (k_h, k_w, C_out, C_in), annjax's (out, in)
        convention, and transposed to HWIO; fan_in = k_h·k_w·C_in). Default:
        He normal for the ReLU family, Xavier uniform otherwise, as ``dense``.
      b_init: the bias initializer.
      dtype: the dtype of the computation (x, W and b are cast to it), e.g.
        ``jnp.bfloat16``; None (the default): float inputs promoted with the
        params' dtype (bfloat16 images with float32 params compute in
        float32), integer images (uint8 pixels) cast to the params' dtype.
        The meaning of ``flax.linen.Conv``'s ``dtype``.
      param_dtype: the dtype of W and b (float32 by default).

    Returns:
      A Layer with params ``{"w": (k_h, k_w, C_in, C_out), "b": (C_out,)}``
      (HWIO, flax's layout) and no state; input (H, W, C_in) per example.

    Raises:
      ValueError: for a non-positive size, stride or dilation, an unknown
        padding, activation or initializer; at init for an input that is not
        one (H, W, C) image or a kernel larger than the padded image; when
        applied, for a batch that is not NHWC with C_in channels.
      TypeError: for a ``dtype`` or ``param_dtype`` that is not a dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import annjax as ann
      >>> conv = ann.conv2d(4, 3, activation="relu", dtype=jnp.bfloat16)
      >>> shape, params, state = conv.init(jax.random.key(0), (8, 8, 1))
      >>> params["w"].dtype, shape                      # float32 params
      (dtype('float32'), (8, 8, 4))
      >>> pixels = jnp.zeros((2, 8, 8, 1), jnp.uint8)   # integer images work
      >>> conv.apply(params, state, pixels)[0].dtype
      dtype(bfloat16)
    """
    features = _checks.integer("conv2d features", features, minimum=1)
    kernel = pair("conv2d kernel_size", kernel_size)
    strides = pair("conv2d strides", strides)
    dilation = pair("conv2d dilation", dilation)
    pad = padding_of("conv2d padding", padding)
    f = activations.get(activation) if activation is not None else None
    act_name = activations.name_of(activation)
    w_init_fn = _kernel_init(w_init, act_name)
    b_init_fn = initializers.get(b_init)
    dtype = float_dtype("conv2d dtype", dtype)
    param_dtype = float_dtype("conv2d param_dtype", param_dtype)

    def init(key: Key, input_shape: Shape) -> tuple[Shape, Params, State]:
        shape = image_shape_of("conv2d", input_shape)
        w_key, b_key = jax.random.split(key)
        w_shape = (*kernel, shape[-1], features)
        params = {"w": w_init_fn(w_key, w_shape, param_dtype)}
        if use_bias:
            params["b"] = b_init_fn(b_key, (features,), param_dtype)
        x = jax.ShapeDtypeStruct((1, *shape), param_dtype)
        out = jax.eval_shape(lambda x: _conv2d(params["w"], None, x, *geometry), x)
        if 0 in out.shape:
            raise ValueError(
                f"conv2d: a {kernel} kernel (dilation {dilation}, padding "
                f"{padding!r}) does not fit an image of shape {shape}; use "
                "padding='SAME' or a smaller kernel."
            )
        return tuple(out.shape[1:]), params, {}

    geometry = (strides, pad, dilation)

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        x = jnp.asarray(x)
        check_images("conv2d", x, params["w"].shape[2])
        ct = compute_dtype(dtype, x, params["w"])
        b = params.get("b")
        b = None if b is None else b.astype(ct)
        z = _conv2d(params["w"].astype(ct), b, x.astype(ct), *geometry)
        return (z if f is None else f(z)), state

    return Layer(init, apply, "conv2d", act_name)
