"""Validators shared by every module, so that bad input reads the same everywhere.

Each raises ``ValueError`` (or ``TypeError`` for a wrong type) with the message
"<name>: expected …, got …" and, where there is one, the fix.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np


def fail(name: str, expected: str, got: Any, fix: str = "") -> ValueError:
    """Returns a ValueError with the uniform "expected …, got …" message."""
    message = f"{name}: expected {expected}, got {got!r}."
    if fix:
        message += f" {fix}"
    return ValueError(message)


def number(name: str, value: Any) -> float:
    """Returns ``value`` as a float, or raises TypeError for a non-number."""
    dtype = getattr(value, "dtype", None)
    if getattr(value, "ndim", None) == 0 and np.issubdtype(dtype, np.number):
        value = value.item()  # a 0-d NumPy or jax array holding a number
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}.")
    return float(value)


def positive(name: str, value: Any) -> float:
    """Returns ``value`` if it is a real number > 0."""
    v = number(name, value)
    if not v > 0:
        raise fail(name, "a number > 0", value)
    return v


def non_negative(name: str, value: Any) -> float:
    """Returns ``value`` if it is a real number >= 0."""
    v = number(name, value)
    if not v >= 0:
        raise fail(name, "a number >= 0", value)
    return v


def finite_positive(name: str, value: Any) -> float:
    """Returns ``value`` if it is a finite real number > 0 (a learning rate)."""
    v = number(name, value)
    if not (v > 0 and np.isfinite(v)):
        raise fail(name, "a finite number > 0", value)
    return v


def penalty(name: str, value: Any) -> np.ndarray:
    """Returns ``value`` (a number, or one per model) as a float array if every
    entry is finite and >= 0: the one check of ``l1``/``l2`` for fit and fit_many.

    An infinite penalty would turn the loss into inf and training into nan
    without naming its cause, so it is refused here.
    """
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError) as exc:
        raise fail(name, "a number or a 1-D sequence of numbers", value) from exc
    if not ((arr >= 0) & np.isfinite(arr)).all():
        raise fail(name, "finite values >= 0", value)
    return arr


def integer(name: str, value: Any, minimum: int | None = None) -> int:
    """Returns ``value`` if it is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {value!r}.")
    if minimum is not None and value < minimum:
        raise fail(name, f"an integer >= {minimum}", value)
    return int(value)


def probability(name: str, value: Any) -> float:
    """Returns ``value`` if it lies in [0, 1]."""
    v = number(name, value)
    if not 0.0 <= v <= 1.0:
        raise fail(name, "a probability in [0, 1]", value)
    return v


def one_of(name: str, value: Any, options: Iterable[str]) -> str:
    """Returns ``value`` if it is one of ``options``."""
    options = tuple(options)
    if value not in options:
        raise fail(name, f"one of {', '.join(map(repr, options))}", value)
    return value


def numeric_array(name: str, value: Any) -> np.ndarray | Any:
    """Returns ``value`` unchanged if it is (or converts to) a numeric array.

    Tracers and jax arrays pass through untouched; lists and NumPy arrays are
    checked for a numeric dtype, so ``"abc"`` fails with a TypeError that names
    the argument instead of an obscure error deep inside XLA.
    """
    if type(value).__module__.startswith("scipy.sparse"):
        raise TypeError(
            f"{name}: expected a dense array, got a scipy sparse "
            f"{type(value).__name__} of shape {value.shape}. annjax computes on "
            "dense arrays: pass X.toarray() (densify it in parts if it does not "
            "fit in memory)."
        )
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(value).dtype
        except Exception as exc:  # ragged lists and the like
            raise TypeError(
                f"{name}: expected a numeric array, got {value!r}."
            ) from exc
    # jnp.issubdtype: bfloat16 (ml_dtypes) is a number to JAX, not to NumPy
    if not (jax.numpy.issubdtype(dtype, jax.numpy.number) or dtype == np.bool_):
        raise TypeError(f"{name}: expected a numeric array, got dtype {dtype}.")
    return value


def shape_of(x: Any) -> tuple[int, ...]:
    """Returns the shape of an array-like without copying jax arrays to host."""
    shape = getattr(x, "shape", None)
    return tuple(shape) if shape is not None else np.shape(x)


def random_key(name: str, key: Any) -> Any:
    """Returns ``key`` if it is ONE jax.random key (typed, or a raw uint32 pair)."""
    dtype, shape = getattr(key, "dtype", None), shape_of(key)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == np.uint32 and shape == (2,)
    if not ((typed and shape == ()) or raw):
        raise fail(
            name,
            "one jax.random key",
            key,
            f"Pass {name}=jax.random.key(0) (any seed).",
        )
    return key


def lookup(kind: str, registry: dict, name: Any) -> Any:
    """Returns ``registry[name.lower()]``; a callable ``name`` passes through.

    The one lookup behind every ``get(name)`` registry (activations, losses,
    initializers, metrics), so an unknown name reads the same everywhere.

    Raises:
      ValueError: for an unknown name; the message lists the valid ones.
      TypeError: for anything that is neither a string nor a callable.
    """
    if callable(name):
        return name
    if not isinstance(name, str):
        raise TypeError(f"{kind}: expected a name or a callable, got {name!r}.")
    key = name.lower()
    if key not in registry:
        raise fail(kind, f"one of {', '.join(sorted(registry))}", name)
    return registry[key]
