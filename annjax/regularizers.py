r"""L1 and L2 weight penalties over a params pytree, and the mask of what they touch.

A penalty Ω(θ) is added to the data loss, :math:`J(θ) = L(θ) + Ω(θ)`:

* L1 (lasso): :math:`Ω = λ \sum |w|`, gradient :math:`λ\,\operatorname{sign}(w)`;
  it pushes weights to exactly zero (sparse weights).
* L2 (ridge): :math:`Ω = λ \sum w^2`, gradient :math:`2λw`; it shrinks all
  weights towards zero in proportion to their size.

Only weights are penalised: biases and normalisation parameters shift or scale
activations, do not cause over-fitting through large fan-in sums, and
penalising them only hurts (a penalised batch-norm scale fights the layer's
purpose). :func:`default_mask` encodes that rule; :mod:`annjax.optim` reuses it
for weight decay.

**L2 in the loss versus decoupled weight decay.** With L2 in the loss the
optimizer sees the gradient :math:`∇L + 2λw` and transforms all of it: Adam
divides it by :math:`\sqrt{\hat v}`, so heavily updated weights are barely
regularised. Decoupled weight decay (``optax.add_decayed_weights``, AdamW)
leaves the gradient alone and shrinks the weights directly,
:math:`w ← w − η(\text{update}(∇L) + d\,w)`. For plain SGD the two coincide:

.. math:: w − η(∇L + 2λw) \quad\text{is SGD on } L + λ\sum w^2
          \quad\text{and SGD with weight decay } d = 2λ.

With momentum or Adam they differ, and decoupled decay is usually the better
regulariser (Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, 2019).

Examples:
  >>> import jax.numpy as jnp
  >>> import annjax as ann
  >>> params = {"dense_0": {"w": jnp.ones((2, 3)), "b": jnp.ones(2)}}
  >>> ann.regularizers.default_mask(params)
  {'dense_0': {'b': False, 'w': True}}
  >>> round(float(ann.regularizers.l2(params, 0.1)), 4)  # 6 weights, b spared
  0.6
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from annjax import _checks
from annjax._types import Params, PyTree

Array = jax.Array
Mask = PyTree | Callable[[Params], PyTree] | None

__all__ = ["default_mask", "l1", "l2"]

#: Leaf names that always denote a weight (annjax ``w``, flax ``kernel``, …).
_WEIGHT_NAMES = frozenset({"w", "kernel", "weight", "weights", "embedding"})
#: Leaf names that never do: biases, norm scales/offsets, running statistics.
_SPARED_NAMES = frozenset(
    {"b", "bias", "biases", "scale", "gamma", "beta", "offset", "mean", "var"}
)


#: Names of normalisation layers, lower case without ``_``: a path component
#: that is one of them, with an optional ``_<index>`` or ``<index>`` suffix
#: (``batch_norm_1``, ``BatchNorm_0``, ``LayerNorm_0``, ``layer_norm_2``,
#: ``GroupNorm_0``), is a normalisation layer. Whole components only:
#: ``abnormality_head`` and ``normalizing_flow`` are not.
_NORM_LAYERS = frozenset(
    {"batchnorm", "layernorm", "groupnorm", "instancenorm", "rmsnorm", "norm"}
)


def _is_norm_layer(name: str) -> bool:
    """Returns True if a path component names a normalisation layer."""
    base = re.sub(r"_?\d+$", "", name)
    return base.replace("_", "") in _NORM_LAYERS


def _key_name(entry: Any) -> str:
    """Returns the name of one step of a pytree path (dict key, attribute, index)."""
    return jax.tree_util.keystr((entry,), simple=True)


def _is_weight(path: tuple[Any, ...], leaf: Any) -> bool:
    """Returns True if the leaf at ``path`` is a weight; see :func:`default_mask`."""
    names = [_key_name(entry).lower() for entry in path]
    if any(_is_norm_layer(name) for name in names[:-1]):
        return False
    name = names[-1] if names else ""
    if name in _WEIGHT_NAMES:
        return True
    if name in _SPARED_NAMES:
        return False
    return np.ndim(leaf) >= 2


def default_mask(params: Params) -> PyTree:
    """Returns a pytree of bools, True for each leaf a penalty or decay applies to.

    The rule, applied to each leaf's path in order:

    1. under a normalisation layer (a path component that, lower-cased,
       without ``_`` and an ``_<index>`` suffix, is ``batchnorm``,
       ``layernorm``, ``groupnorm``, ``instancenorm``, ``rmsnorm`` or
       ``norm``: annjax ``batch_norm_1``, flax ``BatchNorm_0``,
       ``LayerNorm_0``, ``GroupNorm_0``, …): **not** penalised. Whole
       components, not substrings: ``abnormality_head`` and
       ``normalizing_flow`` are penalised as any other layer;
    2. leaf named ``w``, ``kernel``, ``weight``, ``weights`` or ``embedding``:
       penalised (annjax dense ``{"w", "b"}``, flax ``{"kernel", "bias"}``);
    3. leaf named ``b``, ``bias``, ``biases``, ``scale``, ``gamma``, ``beta``,
       ``offset``, ``mean`` or ``var``: not penalised;
    4. any other name: penalised if the leaf has 2 or more dimensions
       (weight matrices and conv kernels), not if it is a vector or scalar.

    Works on any pytree of arrays (nested dicts, flax ``FrozenDict``, lists),
    so it can be given to ``optax.add_decayed_weights(..., mask=default_mask)``.
    """
    return jax.tree_util.tree_map_with_path(_is_weight, params)


def _check_lam(lam: ArrayLike) -> None:
    """Raises if ``lam`` is not a scalar >= 0; tracers (vmapped λ) pass."""
    if np.ndim(lam) != 0:
        raise _checks.fail("lam", "a scalar", np.shape(lam))
    if isinstance(lam, jax.core.Tracer):
        return  # a traced λ (fit_many over hyper-parameters) is checked by its caller
    if isinstance(lam, bool) or not np.issubdtype(np.asarray(lam).dtype, np.number):
        raise TypeError(f"lam: expected a real number, got {lam!r}.")
    if not float(lam) >= 0:
        raise _checks.fail("lam", "a number >= 0", lam, "λ = 0 switches it off.")


def _as_bool(flag: Any) -> bool:
    """Returns a mask leaf as a Python bool, or raises TypeError."""
    if isinstance(flag, bool | np.bool_):
        return bool(flag)
    raise TypeError(f"mask: expected True or False at each leaf, got {flag!r}.")


def _selected_leaves(params: Params, mask: Mask) -> list[Array]:
    """Returns the leaves of ``params`` that ``mask`` selects.

    ``mask`` may be a prefix of ``params`` (one bool for a whole sub-tree), as
    in ``optax.masked``.
    """
    if mask is None:
        mask = default_mask(params)
    elif callable(mask):
        mask = mask(params)
    selected: list[Array] = []

    def visit(flag: Any, subtree: PyTree) -> None:
        if _as_bool(flag):
            selected.extend(jax.tree.leaves(subtree))

    try:
        jax.tree.map(visit, mask, params)
    except ValueError as exc:
        raise _checks.fail(
            "mask",
            "a pytree of bools with the structure of params (or a prefix of it)",
            jax.tree.structure(mask),
        ) from exc
    return selected


@functools.partial(jax.jit, static_argnames="term")
def _sum(leaves: list[Array], lam: Array, term: Callable[[Array], Array]) -> Array:
    """Returns λ Σ term(w) over ``leaves``, in their widest float dtype.

    One compiled call per params structure, instead of one op per leaf.
    """
    floats = [x.dtype for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)]
    default = jnp.dtype(jnp.result_type(float))  # float64 only when x64 is enabled
    dtype = max(floats, key=lambda d: d.itemsize, default=default)
    total = functools.reduce(
        jnp.add,
        [jnp.sum(term(x.astype(dtype))) for x in leaves],
        jnp.zeros((), dtype),
    )
    return jnp.asarray(lam).astype(dtype) * total


def _penalty(
    params: Params, lam: ArrayLike, mask: Mask, term: Callable[[Array], Array]
) -> Array:
    """Returns λ Σ term(w) over the leaves that ``mask`` selects."""
    _check_lam(lam)
    leaves = [jnp.asarray(leaf) for leaf in _selected_leaves(params, mask)]
    return _sum(leaves, lam, term)


def l1(params: Params, lam: ArrayLike, mask: Mask = None) -> Array:
    r"""Returns the L1 penalty λ Σ|w| over the masked leaves of ``params``.

    .. math:: Ω_1(θ) = λ \sum_{w \in \text{mask}} |w|, \qquad
              \frac{∂Ω_1}{∂w} = λ\,\operatorname{sign}(w)

    Args:
      params: a pytree of arrays.
      lam: λ ≥ 0, a Python number or a scalar array (may be traced, e.g. vmapped).
      mask: a pytree of bools with the structure of ``params`` (or a prefix of
        it), a callable ``params -> mask``, or None for :func:`default_mask`.

    Raises:
      ValueError: if λ < 0 or is not a scalar, or the mask does not fit params.
      TypeError: if λ is not a number or a mask leaf is not a bool.
    """
    return _penalty(params, lam, mask, jnp.abs)


def l2(params: Params, lam: ArrayLike, mask: Mask = None) -> Array:
    r"""Returns the L2 penalty λ Σw² over the masked leaves of ``params``.

    .. math:: Ω_2(θ) = λ \sum_{w \in \text{mask}} w^2, \qquad
              \frac{∂Ω_2}{∂w} = 2λw

    No factor ½: with SGD it equals weight decay ``2λ`` (module docstring).
    Arguments and errors as :func:`l1`.
    """
    return _penalty(params, lam, mask, jnp.square)
