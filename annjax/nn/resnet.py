"""``resnet``: a small residual CNN for small images, and its plain twin.

Built only from the public layers (``conv2d``, ``batch_norm``, ``residual``,
``global_avg_pool``, ``dense``), so its params read like any other model's:
``residual_1/conv2d_0/w``, ``residual_1/shortcut/conv2d_0/w``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp

from annjax import _checks, activations
from annjax._types import Array, Layer, layer_factory
from annjax.activations import RELU_FAMILY
from annjax.nn.combinators import residual as _residual
from annjax.nn.combinators import serial
from annjax.nn.conv import conv2d
from annjax.nn.layers import activation as _activation
from annjax.nn.layers import dense
from annjax.nn.normalization import batch_norm as _batch_norm
from annjax.nn.pooling import global_avg_pool

__all__ = ["resnet"]


@layer_factory
def resnet(
    widths: Sequence[int] = (16, 32, 64),
    blocks: int = 1,
    num_classes: int = 10,
    activation: str | Callable[..., Array] = "relu",
    batch_norm: bool = True,
    residual: bool = True,
    momentum: float = 0.9,
    stem_stride: int = 1,
    *,
    dtype=None,
    param_dtype=jnp.float32,
) -> Layer:
    r"""Returns a ResNet for small images (He et al., 2016), or its plain twin.

    The network: a stem ``conv2d(widths[0], 3, stem_stride) → [bn] → f``;
    then for each stage width w, ``blocks`` basic blocks, each
    ``y = f(x + F(x))`` with ``F = conv3×3 → [bn] → f → conv3×3 → [bn]``; the
    first block of every stage after the first halves the image (stride 2)
    and its shortcut is a projection ``conv1×1 (stride 2) → [bn]``; finally
    ``global_avg_pool → dense(num_classes)`` (logits). With
    ``residual=False`` the same layers run without the shortcuts: the plain
    network of the same depth, 2 + 2 · len(widths) · blocks weight layers.

    Args:
      widths: the channels of each stage.
      blocks: basic blocks per stage (>= 1).
      num_classes: the outputs of the dense head.
      activation: f, a name or callable (He init for the ReLU family).
      batch_norm: whether to normalise after every convolution.
      residual: whether blocks add their shortcut (False: the plain network).
      stem_stride: the stem convolution's stride; 2 halves the image before
        the first stage (a 4× cheaper network on 28×28 digits).
      momentum: batch norm's running-statistics decay. 0.9 (not
        ``batch_norm``'s 0.99): small image sets give few steps per epoch, and
        slower statistics lag the weights (see ``diagnose``'s
        ``train_eval_gap``).
      dtype: the compute dtype of every convolution, batch norm and the
        dense head (see :func:`annjax.conv2d`); None: the images promoted
        with the params' dtype (integer pixels cast to it).
      param_dtype: the dtype of every param (float32 by default).

    Raises:
      ValueError: for an empty ``widths``, a width, ``blocks`` or
        ``num_classes`` < 1.

    Examples:
      >>> import jax
      >>> import annjax as ann
      >>> model = ann.resnet((16, 32), blocks=2)       # 10 weight layers
      >>> out, params, state = model.init(jax.random.key(0), (28, 28, 1))
      >>> out
      (10,)
    """
    widths = list(widths)
    if not widths:
        raise _checks.fail("resnet widths", "at least one stage width", widths)
    for w in widths:
        _checks.integer("resnet widths", w, minimum=1)
    blocks = _checks.integer("resnet blocks", blocks, minimum=1)
    num_classes = _checks.integer("resnet num_classes", num_classes, minimum=1)
    stem_stride = _checks.integer("resnet stem_stride", stem_stride, minimum=1)

    # f is its own layer (after batch norm), so the kernels get f's init here.
    w_init = "he_normal" if activations.name_of(activation) in RELU_FAMILY else None

    precision = {"dtype": dtype, "param_dtype": param_dtype}

    def conv_bn(width: int, size: int, stride: int = 1) -> list[Layer]:
        conv = conv2d(
            width,
            size,
            strides=stride,
            use_bias=not batch_norm,
            w_init=w_init,
            **precision,
        )
        return [conv, _batch_norm(momentum, **precision)] if batch_norm else [conv]

    def block(width: int, stride: int) -> list[Layer]:
        branch = serial(
            *conv_bn(width, 3, stride),
            _activation(activation),
            *conv_bn(width, 3),
        )
        if not residual:
            return [branch, _activation(activation)]
        projection = None
        if stride != 1 or width != previous:
            projection = serial(*conv_bn(width, 1, stride))
        return [_residual(branch, projection), _activation(activation)]

    layers = [*conv_bn(widths[0], 3, stem_stride), _activation(activation)]
    previous = widths[0]
    for i, width in enumerate(widths):
        for j in range(blocks):
            layers += block(width, 2 if i > 0 and j == 0 else 1)
            previous = width
    layers += [global_avg_pool(), dense(num_classes, **precision)]
    return serial(*layers)
