"""How ``fit_many`` runs its models: in one compiled program, or ``fit``'s per model.

Four ways, each giving every model exactly what its own ``fit`` would:

* ``"vmap"``: ``jax.vmap`` over the model axis: one batched program (batched
  matrix products; one kernel per layer for all models);
* ``"unroll"``: a Python loop over the models inside the one ``jit``: N
  copies of the single-model program side by side, which XLA schedules as
  it likes (a larger program to compile);
* ``"map"``: ``jax.lax.map`` over the model axis: the single-model program
  once, in a loop over the models (the smallest program, no parallelism);
* ``"sequential"``: ``fit``'s own one-model program, compiled once (and
  shared with ``fit``), called for each model by the loop
  (:func:`annjax.training.loop.epochs_of`), the models side by side on
  threads on one device; the models' states are split and stacked on the
  host around it (:func:`models_of`, :func:`stacked`).

``"auto"`` (:func:`choose`) is the rule measured by ``benchmarks/vectorize.py``
and the ``sweep-cnn`` workload of ``benchmarks/run.py`` on this project's
CPU (see ``docs/sweeps.md``): on XLA:CPU a vmapped convolution (one kernel
per model, batched) runs several times slower than the models' convolutions
one by one, ``lax.map`` of a convolution slower still, and the unrolled
program compiles N copies of the convolutions (cold, slower than a loop of
``fit`` calls, which compile one), so a model with a convolution on the
CPU runs ``"sequential"``: the compilation of a loop of ``fit`` calls,
without their per-call setup, and the models' epochs on threads, which fill
the cores that one small model's program leaves idle. Everything else, and every
model on a GPU or TPU (expected, not measured here: no accelerator was
available), is vmapped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from annjax import _checks
from annjax._types import Layer
from annjax.nn.tracing import primitives

__all__ = ["IN_PROGRAM", "WAYS", "choose", "models_of", "over_models", "stacked"]

#: The ways that run every model inside one compiled program (:func:`over_models`).
IN_PROGRAM = ("vmap", "unroll", "map")
#: The ways to run the models; ``fit_many(vectorize=...)`` also takes "auto".
#: ``"sequential"`` runs ``fit``'s own one-model program once per model
#: (driven by the loop, :func:`annjax.training.loop.run_epoch`).
WAYS = (*IN_PROGRAM, "sequential")


def choose(
    value: str,
    model: Layer,
    input_shape: Sequence[int],
    mesh,
    streamed: bool = False,
) -> str:
    """Returns the way to run the models: ``value``, or the ``"auto"`` rule.

    ``"auto"``: ``"sequential"`` for a model with a convolution on the CPU
    and no ``"model"`` mesh axis; ``"vmap"`` otherwise (and on a mesh that
    splits the models over devices, which places the model axis). Streamed
    training data (``streamed``) is one pass shared by all the models, so
    it runs in one program: a convolution on the CPU is then unrolled.

    Raises:
      ValueError: for a value that is not "auto" or one of :data:`WAYS`, and
        for ``"sequential"`` with streamed data or a ``"model"`` mesh axis.

    Examples:
      >>> import annjax as ann
      >>> from annjax.training.vectorize import choose
      >>> choose("auto", ann.mlp([4, 2]), (3,), None)
      'vmap'
      >>> choose("map", ann.mlp([4, 2]), (3,), None)
      'map'
    """
    value = _checks.one_of("vectorize", value, ("auto", *WAYS))
    split = mesh is not None and "model" in mesh.axis_names
    if value == "sequential" and (streamed or split):
        raise _checks.fail(
            "vectorize",
            "a way that runs the models in one program (vmap, unroll, map)",
            f"sequential with {'streamed data' if streamed else 'a model mesh axis'}",
            "The models share one pass over streamed data, and a mesh's "
            '"model" axis places them side by side: use vectorize="auto".',
        )
    if value != "auto":
        return value
    if split:
        return "vmap"
    device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
    convolves = "conv_general_dilated" in primitives(model, tuple(input_shape))
    if device.platform != "cpu" or not convolves:
        return "vmap"
    return "unroll" if streamed else "sequential"


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


def models_of(tree: Any, n: int) -> list:
    """Returns ``tree``'s ``n`` models: one tree per index of its leading
    model axis (through the host: one transfer, nothing compiled).

    Examples:
      >>> import jax.numpy as jnp
      >>> from annjax.training.vectorize import models_of
      >>> w = jnp.arange(4.0).reshape(2, 2)
      >>> [t["w"].tolist() for t in models_of({"w": w}, 2)]
      [[0.0, 1.0], [2.0, 3.0]]
    """
    host = jax.device_get(_key_data(tree))
    parts = [jax.tree_util.tree_map(lambda a, i=i: a[i], host) for i in range(n)]
    return [_keys_back(jax.device_put(p), tree) for p in parts]


def stacked(trees: Sequence[Any]) -> Any:
    """Returns the trees of :func:`models_of` stacked back on a leading axis
    (through the host, nothing compiled)."""
    host = jax.device_get([_key_data(t) for t in trees])
    out = jax.device_put(jax.tree_util.tree_map(lambda *a: np.stack(a), *host))
    return _keys_back(out, trees[0])


def _is_key(a) -> bool:
    return hasattr(a, "dtype") and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def _key_data(tree: Any) -> Any:
    """Returns ``tree`` with its typed keys as their raw data."""
    return jax.tree_util.tree_map(
        lambda a: jax.random.key_data(a) if _is_key(a) else a, tree
    )


def _keys_back(tree: Any, like: Any) -> Any:
    """Returns ``tree`` with the leaves that are keys in ``like`` wrapped back."""
    return jax.tree_util.tree_map(
        lambda a, k: (
            jax.random.wrap_key_data(a, impl=jax.random.key_impl(k))
            if _is_key(k)
            else a
        ),
        tree,
        like,
    )


def over_models(fn: Callable, in_axes: tuple, how: str) -> Callable:
    """Returns ``fn`` applied to every model: the arguments whose ``in_axes``
    entry is 0 carry a leading model axis (None: shared by all); every output
    gets a leading model axis. ``how`` is one of :data:`IN_PROGRAM`.

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
