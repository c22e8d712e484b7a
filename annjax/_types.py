"""The types every annjax module shares: the Layer protocol and its aliases."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Array = jax.Array
Key = jax.Array
Shape = tuple[int, ...]
Params = Any  # a pytree (nested dict) of arrays
State = Any  # a pytree (nested dict) of arrays: batch-norm statistics and the like
PyTree = Any


class Layer(NamedTuple):
    """A layer as a pair of pure functions, in the shape of an optax transformation.

    Attributes:
      init: ``init(key, input_shape) -> (output_shape, params, state)``. The shape
        is that of ONE example (no batch axis), so every shape mistake surfaces
        before any data flows.
      apply: ``apply(params, state, x, *, key=None, train=False) -> (y, state)``
        on a batch ``x`` of shape ``(batch, *input_shape)``.
      kind: the short name ``serial`` uses to name the child (``dense`` gives
        ``dense_0``); for an activation layer, the activation's name.
      activation: the name of the activation applied last inside the layer (or
        None); the gradient-flow profiler reads it to measure dead and saturated
        units.
      config: a hashable description of the layer's structure (its factory's
        name and arguments; a combinator's children), or None. Two layers
        with equal configs are equal and hash alike, so every compiled
        function keyed by the model (init, epoch, predict) is shared by equal
        models built separately; without a config a layer is equal only to
        itself.

    Combinators (``serial``, ``residual``) also accept ``probe=``, a dict that
    collects the outputs of activation layers while the step is traced; see
    :mod:`annjax.nn.combinators`.

    Optional keyword ``weights=``: an ``apply`` that computes statistics over
    the batch (``batch_norm``) accepts ``weights``, the per-example weights
    of shape (batch,), and weights its statistics with them (0: padding that
    must not count). Combinators accept it and forward it to the children
    that accept it (:func:`takes_weights`); the train step passes its
    example weights to a model that accepts it.
    """

    init: Callable[..., tuple[Shape, Params, State]]
    apply: Callable[..., tuple[Array, State]]
    kind: str = "layer"
    activation: str | None = None
    config: tuple | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        if self.config is not None and other.config is not None:
            return (self.kind, self.config) == (other.kind, other.config)
        return self is other or tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        if self.config is not None:
            return hash((self.kind, self.config))
        return tuple.__hash__(self)


COMBINATOR_KINDS = frozenset({"serial", "residual"})


def takes_weights(layer: Layer) -> bool:
    """Returns whether ``layer.apply`` accepts the keyword ``weights=``."""
    try:
        parameters = inspect.signature(layer.apply).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False
    return "weights" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def takes_probe(layer: Layer) -> bool:
    """Returns whether ``layer.apply`` records activation taps into ``probe=``.

    The combinators do, and so does ``from_flax`` (the activations a flax
    module applies); the profiler passes such a layer its own probe dict.
    """
    if layer.kind in COMBINATOR_KINDS:
        return True
    try:
        return "probe" in inspect.signature(layer.apply).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def weights_kwarg(layer: Layer, weights) -> dict:
    """Returns ``{"weights": weights}`` for a layer that takes them, else ``{}``."""
    return {} if weights is None or not takes_weights(layer) else {"weights": weights}


class Tap(NamedTuple):
    """The output of an activation, recorded by a combinator into ``probe``.

    Attributes:
      activation: the activation's registry name (``"relu"``, ``"sigmoid"``…).
      output: the layer's output for the batch, shape (batch, ...).
    """

    activation: str
    output: Array
