"""How ``fit_many`` runs its models inside one compiled program.

Three ways, each giving every model exactly what its own ``fit`` would:

* ``"vmap"``: ``jax.vmap`` over the model axis: one batched program (batched
  matrix products; one kernel per layer for all models);
* ``"unroll"``: a Python loop over the models inside the one ``jit``: N
  copies of the single-model program side by side, which XLA schedules as
  it likes (a larger program to compile);
* ``"map"``: ``jax.lax.map`` over the model axis: the single-model program
  once, in a loop over the models (the smallest program, no parallelism).

``"auto"`` (:func:`choose`) is the rule measured by
``benchmarks/vectorize.py`` on this project's CPU (see
``benchmarks/README.md``): on XLA:CPU a vmapped convolution (one kernel per
model, batched) runs several times slower than the models' convolutions one
by one, and ``lax.map`` of a convolution slower still, so a model with a
convolution on the CPU is unrolled; everything else, and every model on a
GPU or TPU (expected, not measured here: no accelerator was available), is
vmapped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from annjax import _checks
from annjax._types import Layer
from annjax.nn.tracing import primitives

__all__ = ["WAYS", "choose", "over_models"]

#: The ways to run the models; ``fit_many(vectorize=...)`` also takes "auto".
WAYS = ("vmap", "unroll", "map")


def choose(value: str, model: Layer, input_shape: Sequence[int], mesh) -> str:
    """Returns the way to run the models: ``value``, or the ``"auto"`` rule.

    ``"auto"``: ``"unroll"`` for a model with a convolution on the CPU and no
    ``"model"`` mesh axis; ``"vmap"`` otherwise (and on a mesh that splits
    the models over devices, which places the model axis).

    Raises:
      ValueError: for a value that is not "auto" or one of :data:`WAYS`.

    Examples:
      >>> import annjax as ann
      >>> from annjax.training.vectorize import choose
      >>> choose("auto", ann.mlp([4, 2]), (3,), None)
      'vmap'
      >>> choose("map", ann.mlp([4, 2]), (3,), None)
      'map'
    """
    value = _checks.one_of("vectorize", value, ("auto", *WAYS))
    if value != "auto":
        return value
    if mesh is not None and "model" in mesh.axis_names:
        return "vmap"
    device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
    convolves = "conv_general_dilated" in primitives(model, tuple(input_shape))
    return "unroll" if device.platform == "cpu" and convolves else "vmap"


def _split(args: tuple, axes: tuple) -> tuple[list, Callable[[Any], tuple]]:
    """Returns ``(mapped, rebuild)``: the arguments (or parts of tuple
    arguments) whose axis is 0, and ``rebuild(mapped)`` giving the arguments
    back with those replaced (``axes`` as ``jax.vmap``'s ``in_axes``)."""
    mapped: list = []

    def part(arg, axis):
        if axis is None:
            return lambda it: arg
        if isinstance(axis, tuple):
            parts = [part(a, ax) for a, ax in zip(arg, axis, strict=True)]

            def tuple_of(it):
                items = [p(it) for p in parts]
                return type(arg)(*items) if hasattr(arg, "_fields") else tuple(items)

            return tuple_of
        mapped.append(arg)
        return next

    parts = [part(a, ax) for a, ax in zip(args, axes, strict=True)]

    def rebuild(values) -> tuple:
        it = iter(values)
        return tuple(p(it) for p in parts)

    return mapped, rebuild


def over_models(fn: Callable, in_axes: tuple, how: str) -> Callable:
    """Returns ``fn`` applied to every model: the arguments whose ``in_axes``
    entry is 0 carry a leading model axis (None: shared by all); every output
    gets a leading model axis. ``how`` is one of :data:`WAYS`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from annjax.training.vectorize import over_models
      >>> f = over_models(lambda w, x: w * x, (0, None), "unroll")
      >>> f(jnp.array([1.0, 2.0]), 3.0)
      Array([3., 6.], dtype=float32)
    """
    if how == "vmap":
        return jax.vmap(fn, in_axes=in_axes)

    def run(*args):
        mapped, rebuild = _split(args, in_axes)
        if how == "map":
            return jax.lax.map(lambda m: fn(*rebuild(m)), mapped)
        n = jax.tree_util.tree_leaves(mapped)[0].shape[0]
        outs = [
            fn(*rebuild(jax.tree_util.tree_map(lambda a, i=i: a[i], mapped)))
            for i in range(n)
        ]
        return jax.tree_util.tree_map(lambda *o: jnp.stack(o), *outs)

    return run
