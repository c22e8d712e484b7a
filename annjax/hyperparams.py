"""Named hyper-parameters: an argument whose value comes, per model, from the run.

``ann.hyper("p")`` stands in for a number in a layer's or a loss's arguments
(``ann.dropout(ann.hyper("p"))``); the run gives it its value:
``fit(..., hyper={"p": 0.3})`` for one model, ``fit_many(..., hyper={"p":
[0.1, 0.3, 0.5]})`` for one model each. The value is an array inside the
compiled step, so every model of a sweep shares one compiled program.

What can be a named hyper-parameter:

- ``ann.dropout(rate)`` and ``ann.mlp(dropout=...)``: the dropout rate;
- ``ann.batch_norm(momentum)`` and ``ann.mlp(batch_norm=True, momentum=...)``:
  the running statistics' momentum;
- ``fit(label_smoothing=...)`` (and ``ann.losses.softmax_cross_entropy``'s
  ``label_smoothing``): the label smoothing α;
- ``fit(ema=...)``: the decay of the params' moving average.

An optimizer's own hyper-parameters (learning rate, betas, momentum, weight
decay) are not ``ann.hyper``: inject them with ``optax.inject_hyperparams``
and ``hyper=`` sets them by their names.

How the value reaches the layer: the train step traces the model inside
:func:`bind`, a context that maps names to the step's per-model values while
JAX traces it; the layer's ``apply`` reads its argument through :func:`value`.
The binding exists only during that trace (a ``contextvars`` variable set
and reset around it), so nothing global outlives a call, and a function
traced outside any binding sees each hyper-parameter's ``default`` (or
raises if it has none).

Examples:
  >>> import annjax as ann
  >>> from annjax import hyperparams
  >>> p = ann.hyper("p")
  >>> p
  hyper('p')
  >>> with hyperparams.bind({"p": 0.25}):
  ...     hyperparams.value(p)
  0.25
  >>> hyperparams.value(0.5)  # a plain number is its own value
  0.5
  >>> with hyperparams.recording() as record:
  ...     _ = hyperparams.value(p)
  >>> sorted(record.used), sorted(record.required)
  (['p'], ['p'])
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["Hyper", "bind", "hyper", "recording", "value"]


@dataclasses.dataclass(frozen=True)
class Hyper:
    """A named hyper-parameter (see :func:`hyper`); hashable, compares by value."""

    name: str
    default: float | None = None

    def __repr__(self) -> str:
        if self.default is None:
            return f"hyper({self.name!r})"
        return f"hyper({self.name!r}, default={self.default!r})"


def hyper(name: str, default: float | None = None) -> Hyper:
    """Returns a named hyper-parameter, to pass where a layer or loss takes a number.

    Args:
      name: the key of ``fit``'s / ``fit_many``'s ``hyper=`` that gives its
        value; a non-empty string.
      default: the value when the run gives none (None: the run must).

    Raises:
      TypeError: for a name that is not a non-empty string.

    Examples:
      >>> import annjax as ann
      >>> ann.hyper("p", default=0.3)
      hyper('p', default=0.3)
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"hyper name: expected a non-empty string, got {name!r}.")
    if default is not None:
        from annjax import _checks

        default = _checks.number(f"hyper {name!r} default", default)
    return Hyper(name, default)


class _Binding:
    """Values by name; the names looked up while it was bound, with the
    checks their readers gave."""

    def __init__(self, values: Mapping[str, Any] | None):
        self.values, self.used, self.required = values, {}, set()


_BOUND: contextvars.ContextVar[_Binding | None] = contextvars.ContextVar(
    "annjax_hyper", default=None
)


def value(arg: Any, check: Callable[[float], Any] | None = None) -> Any:
    """Returns ``arg``'s value: the bound value of a :class:`Hyper`, else ``arg``.

    ``check(number)`` is the reader's validation of one value (raising
    ValueError for a bad one); :func:`recording` collects it, so the run
    checks every model's value before anything compiles.

    Raises:
      ValueError: for a :class:`Hyper` with no bound value and no default.
    """
    if not isinstance(arg, Hyper):
        return arg
    binding = _BOUND.get()
    if binding is not None:
        checks = binding.used.setdefault(arg.name, [])
        if check is not None:
            checks.append(check)
        if arg.default is None:
            binding.required.add(arg.name)
        if binding.values is None:  # recording: any number does
            if arg.default is None:
                return 0.5
            if check is not None:  # a default outside its reader's range
                check(arg.default)
            return arg.default
        if arg.name in binding.values:
            return binding.values[arg.name]
    if arg.default is not None:
        return arg.default
    given = sorted(binding.values) if binding is not None and binding.values else []
    raise ValueError(
        f"hyper {arg.name!r}: expected a value from the run, got none (given: "
        f"{given}). Pass fit(..., hyper={{{arg.name!r}: value}}) or "
        f"fit_many(..., hyper={{{arg.name!r}: [values]}}), or give "
        f"ann.hyper({arg.name!r}, default=...)."
    )


@contextlib.contextmanager
def bind(values: Mapping[str, Any]) -> Iterator[None]:
    """Binds ``values`` (name → number or traced array) to the hyper-parameters
    read by :func:`value` inside the ``with`` block."""
    token = _BOUND.set(_Binding(dict(values)))
    try:
        yield
    finally:
        _BOUND.reset(token)


@contextlib.contextmanager
def recording() -> Iterator[_Binding]:
    """Yields a record of the hyper-parameters read inside the ``with`` block
    (each read gets its default, or 0.5): ``.used`` maps each name to the
    checks its readers gave, ``.required`` names those without a default.
    Trace a function in it to learn which names it uses."""
    binding = _Binding(None)
    token = _BOUND.set(binding)
    try:
        yield binding
    finally:
        _BOUND.reset(token)
