"""``export`` and ``load_exported``: a trained model that runs without its code.

``export`` traces the model's evaluation-mode forward pass once, with a
symbolic batch dimension, and serializes it with ``jax.export`` (StableHLO)
together with its params and state, into one checksummed file written
atomically (the envelope of :mod:`.checkpoint`). ``load_exported`` needs
neither the model's code nor its ``Layer``: it deserializes the compiled
function and returns ``f(x) -> y``, for any batch size, on the platforms
named at export (CPU; CUDA where declared).

Examples:
  >>> import os, tempfile, jax, numpy as np, annjax as ann
  >>> X = np.random.default_rng(0).normal(size=(16, 4)).astype("f4")
  >>> model = ann.mlp([8, 3])
  >>> ts, _ = ann.init_train_state(model, ann.sgd(0.1), jax.random.key(0), (4,))
  >>> path = os.path.join(tempfile.mkdtemp(), "tiny.annx")
  >>> _ = ann.export(model, ts.params, ts.state, (4,), path)
  >>> f = ann.load_exported(path)  # in another process too, without the code
  >>> f(X).shape, f(X[:5]).shape  # any batch size
  ((16, 3), (5, 3))

It lives next to ``checkpoint`` because it keeps a run's outcome: a
checkpoint keeps the training (to resume it), an export keeps the model
(to use it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from annjax import _checks
from annjax._types import Array, Layer
from annjax.training import checkpoint as _ckpt

__all__ = ["ExportedModel", "export", "load_exported"]

_FORMAT = 1
_KIND = "exported"
_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def _check_export(model, input_shape, platforms) -> tuple[tuple, tuple]:
    """Returns ``(input_shape, platforms)`` checked, as tuples."""
    if not isinstance(model, Layer):
        raise TypeError(
            f"export model: expected an annjax Layer (ann.mlp, ann.serial…), "
            f"got {type(model).__name__}."
        )
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    if not isinstance(input_shape, Sequence) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape
    ):
        raise ValueError(
            "export input_shape: expected the shape of ONE example as positive "
            f"integers (no batch axis), e.g. (784,), got {input_shape!r}."
        )
    if isinstance(platforms, str):
        platforms = (platforms,)
    platforms = tuple(platforms)
    if not platforms or not set(platforms) <= set(_PLATFORMS):
        raise ValueError(
            f"export platforms: expected a non-empty subset of {_PLATFORMS}, got "
            f"{platforms!r}, e.g. platforms=('cpu', 'cuda')."
        )
    return tuple(input_shape), platforms


def export(
    model: Layer,
    params,
    state,
    input_shape: Sequence[int],
    path: str | os.PathLike,
    platforms: Sequence[str] = ("cpu",),
) -> Path:
    """Returns ``path`` after writing the model's inference function there.

    The function is ``x ↦ model.apply(params, state, x, train=False)[0]`` for
    ``x`` of shape ``(batch, *input_shape)`` float32, ``batch`` symbolic (any
    size at call time), exported with ``jax.export`` for each of
    ``platforms`` and stored with the params and state as its arguments.

    Args:
      model: the annjax Layer that was trained.
      params, state: its params and state (``result.params``,
        ``result.state``).
      input_shape: the shape of one example, no batch axis.
      path: the file to write (atomically; its folder is created).
      platforms: where ``load_exported`` may run it: ``"cpu"``, ``"cuda"``,
        ``"rocm"``, ``"tpu"``; one file serves them all. Calling it where
        the default device is another platform raises jax's ValueError
        ("exported for platforms … but it is used on …").

    Raises:
      TypeError, ValueError: for an invalid argument, before tracing; and
        whatever the model raises when traced on ``input_shape``.
    """
    input_shape, platforms = _check_export(model, input_shape, platforms)
    leaves, treedef = jax.tree_util.tree_flatten((params, state))
    leaves = [np.asarray(a) for a in leaves]

    def infer(arrays, x):
        p, s = jax.tree_util.tree_unflatten(treedef, arrays)
        return model.apply(p, s, x, train=False)[0]

    (batch,) = jax.export.symbolic_shape("batch")
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves]
    x_spec = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    exported = jax.export.export(jax.jit(infer), platforms=platforms)(specs, x_spec)
    body = {
        "exported": bytes(exported.serialize()),
        "arrays": {str(i): a for i, a in enumerate(leaves)},
        "input_shape": list(input_shape),
        "platforms": list(platforms),
    }
    return _ckpt.write(Path(path), _KIND, body, _FORMAT)


class ExportedModel:
    """An exported model loaded back: ``f(x) -> y``, with no model code.

    Attributes:
      input_shape: the shape of one example (no batch axis).
      platforms: the platforms it was exported for.
      exported: the ``jax.export.Exported`` (its ``mlir_module()`` shows
        the StableHLO).
    """

    def __init__(self, exported, arrays: list, input_shape: tuple, platforms: tuple):
        self.exported = exported
        self.input_shape = input_shape
        self.platforms = platforms
        self._arrays = [jnp.asarray(a) for a in arrays]

    def __call__(self, x) -> Array:
        """Returns the model's outputs on ``x`` of shape (batch, *input_shape)."""
        x = jnp.asarray(_checks.numeric_array("x", x), jnp.float32)
        if x.ndim == len(self.input_shape):
            raise ValueError(
                f"x: expected a batch of shape (batch, *{self.input_shape}), got "
                f"{x.shape}; for one example pass x[None]."
            )
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x: expected examples of shape {self.input_shape} (the "
                f"input_shape given to export), got {tuple(x.shape[1:])}."
            )
        return self.exported.call(self._arrays, x)

    def __repr__(self) -> str:
        return (
            f"ExportedModel(input_shape={self.input_shape}, platforms={self.platforms})"
        )


def load_exported(path: str | os.PathLike) -> ExportedModel:
    """Returns the callable ``f(x) -> y`` that :func:`export` wrote at ``path``.

    Raises:
      FileNotFoundError: if there is no file. ValueError: if it is no export,
        or its checksum does not match (a corrupted file).
    """
    _, body = _ckpt._read(
        Path(path),
        kinds=(_KIND,),
        fmt=_FORMAT,
        who="load_exported",
        what=f"an annjax export (format {_FORMAT}, written by ann.export)",
    )
    exported = jax.export.deserialize(bytearray(body["exported"]))
    arrays = body["arrays"]
    arrays = [np.asarray(arrays[k]) for k in sorted(arrays, key=int)]
    return ExportedModel(
        exported,
        arrays,
        tuple(int(d) for d in _ckpt._as_list(body["input_shape"])),
        tuple(str(p) for p in _ckpt._as_list(body["platforms"])),
    )
