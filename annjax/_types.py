"""The types every annjax module shares: the Layer protocol and its aliases."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

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
      identity: what the layer is, recorded by :func:`layer_factory` from
        its construction: an :class:`Identity` (the factory and its bound
        arguments, defaults applied), or None. Two layers with equal
        identities are equal and hash alike, so every compiled function keyed
        by the model (init, epoch, predict) is shared by equal models built
        separately; without an identity a layer is equal only to itself.

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
    identity: Identity | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        if self.identity is not None and other.identity is not None:
            return self.identity == other.identity
        return self is other or tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        if self.identity is not None:
            return hash(self.identity)
        return tuple.__hash__(self)


def init_result(name: str, out: Any) -> tuple[Shape, Params, State]:
    """Returns ``out``, what a Layer's ``init`` returned, if it keeps the protocol.

    Raises:
      TypeError: unless ``out`` is ``(output_shape, params, state)``, naming
        the layer and the protocol (a custom init returning two values).
    """
    if isinstance(out, tuple | list) and len(out) == 3:
        shape = out[0]
        if isinstance(shape, tuple | list) and all(
            isinstance(d, int) or hasattr(d, "__index__") for d in shape
        ):
            return tuple(out)
        got = f"an output shape {shape!r}"
    elif isinstance(out, tuple | list):
        got = f"{len(out)} values"
    else:
        got = type(out).__name__
    raise TypeError(
        f"{name}: expected init(key, input_shape) to return (output_shape, params, "
        f"state), the Layer protocol, got {got}. Return a tuple of ints as the "
        "shape of one example and {} for no params or no state, e.g. "
        "return (units,), params, {}."
    )


class Identity(NamedTuple):
    """A layer's identity: its factory and its bound arguments, defaults applied.

    Attributes:
      factory: the undecorated factory function (``dense``, ``serial``…).
      arguments: ``((name, key), …)`` in the signature's order, each value
        made hashable by :func:`argument_key`.
      built: the identity of the layer the factory returned, when it was
        itself made by a factory (``mlp`` builds a ``serial``), else None; it
        follows from the arguments, and :func:`children` reads it.
    """

    factory: Callable[..., Layer]
    arguments: tuple[tuple[str, Any], ...]
    built: Identity | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self.arguments)
        return f"{self.factory.__name__}({args})"

    @property
    def name(self) -> str:
        """The factory's name: ``"dense"``, ``"serial"``, ``"mlp"``…"""
        return self.factory.__name__

    def argument(self, name: str) -> Any:
        """Returns the bound argument ``name`` as recorded, sequences as tuples
        (their layers as layers); numbers, strings and layers as given."""
        return _decoded(dict(self.arguments)[name])


def _decoded(key: Any) -> Any:
    if isinstance(key, tuple) and key[:1] == ("sequence",):
        return tuple(_decoded(v) for v in key[1])
    return key


def _layers_in(value: Any) -> list[Layer]:
    if isinstance(value, Layer):
        return [value]
    if isinstance(value, tuple):
        return [layer for v in value for layer in _layers_in(v)]
    return []


def children(layer: Layer) -> tuple[Layer, ...]:
    """Returns the layers a layer is made of, in order; () for a leaf layer.

    They are the layers among its bound arguments (``serial``'s layers,
    ``residual``'s block and projection, the model ``mixed_precision``
    wraps), or, when it has none, those of the layer its factory built
    (``mlp`` and ``resnet`` build a ``serial``). Read from the identity that
    :func:`layer_factory` records, so no list of children is kept by hand.
    """
    identity = layer.identity
    while identity is not None:
        found = [
            child
            for name, _ in identity.arguments
            for child in _layers_in(identity.argument(name))
        ]
        if found:
            return tuple(found)
        identity = identity.built
    return ()


class _ByObject:
    """An unhashable argument compared by object identity (``is``).

    It keeps the object alive, so its ``id`` is never reused while a layer
    holds it.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByObject) and self.value is other.value

    def __hash__(self) -> int:
        return id(self.value)

    def __repr__(self) -> str:
        return f"<object {type(self.value).__name__} at {id(self.value):#x}>"


def argument_key(value: Any) -> Any:
    """Returns a hashable stand-in for one factory argument; the equality rule.

    - A :class:`Layer` stands for itself: it compares by its identity.
    - An array (NumPy or JAX, not a tracer) compares by value: its dtype,
      shape and bytes.
    - A list or tuple compares element by element (a list equals the tuple
      of the same elements, as the factories read both alike), a dict by its
      sorted items, a set as a frozenset (their elements by these rules).
    - Any other hashable value compares with its own ``==``: numbers,
      strings, dtypes, frozen dataclasses such as flax modules, and
      functions (initializers, activations), which Python compares by
      identity: the same function object is equal, a fresh ``lambda`` is not.
    - Anything else unhashable compares by object identity (``is``).
    """
    if isinstance(value, Layer):
        return value
    if isinstance(value, np.ndarray | jax.Array):
        try:
            array = np.asarray(value)
        except jax.errors.TracerArrayConversionError:  # an abstract value
            return _ByObject(value)
        return ("array", str(array.dtype), array.shape, array.tobytes())
    if isinstance(value, list | tuple):
        return ("sequence", tuple(argument_key(v) for v in value))
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: repr(item[0]))
        return ("dict", tuple((k, argument_key(v)) for k, v in items))
    if isinstance(value, set | frozenset):
        return frozenset(argument_key(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return _ByObject(value)
    return value


def layer_factory(factory: Callable[..., Layer]) -> Callable[..., Layer]:
    """Returns ``factory`` recording each layer's identity (``layer.identity``).

    Every annjax layer factory is decorated with it, so a layer's equality is
    derived from its construction and never from a list kept by hand: the
    arguments are bound to the factory's signature
    (``inspect.signature(factory).bind(...)``, then ``apply_defaults()``),
    each made hashable, and recorded with the factory. The equality rule per
    argument: a Layer compares by its identity; an array (NumPy or JAX) by its
    dtype, shape and bytes; a list, tuple, dict or set element by element;
    any other hashable value (numbers, strings, functions, flax modules) by
    its own ``==``; anything else unhashable by object identity (``is``).
    Equal arguments give equal layers, which share every compiled
    program keyed by the model; changing any one argument gives another
    layer. Use it on your own factories too.

    Examples:
      >>> import annjax as ann
      >>> @ann.layer_factory
      ... def scale(factor: float = 2.0) -> ann.Layer:
      ...     def init(key, input_shape):
      ...         return tuple(input_shape), {}, {}
      ...     def apply(params, state, x, *, key=None, train=False):
      ...         return factor * x, state
      ...     return ann.Layer(init, apply, "scale")
      >>> scale() == scale(2.0), scale() == scale(3.0)
      (True, False)
      >>> scale().identity
      scale(factor=2.0)
    """
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def make(*args: Any, **kwargs: Any) -> Layer:
        layer = factory(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = tuple(
            (name, argument_key(value)) for name, value in bound.arguments.items()
        )
        return layer._replace(identity=Identity(factory, arguments, layer.identity))

    return make


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
