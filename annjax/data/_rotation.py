"""Bilinear rotation of images about their centre (the math of ``augment.rotate``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

Array = jax.Array


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
