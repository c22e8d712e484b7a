"""Optimizers: optax chains in the order clip → decay → step.

annjax writes no optimizer arithmetic: each factory returns an
``optax.GradientTransformation`` built with ``optax.chain``, so it works with
any optax tooling, and :func:`annjax.fit` accepts any optax transformation in
its place. Learning rates may be numbers or optax schedules.

Weight decay here is the *decoupled* form (Loshchilov & Hutter, 2019): the
term λ w joins the update after momentum or Adam's scaling and before the
learning rate, w ← w − α (d + λ w), d the optimizer's direction; so the chain
is clip → direction → decay → learning rate. ``fit(l2=λ)`` instead adds
λ Σ w² to the loss (see :mod:`annjax.regularizers`), whose gradient 2 λ w
goes through momentum and Adam's rescaling. For plain SGD the two coincide
when ``weight_decay = 2 λ``; with momentum or Adam they differ.

Decay spares biases and normalisation parameters by default (the mask is
:func:`annjax.regularizers.default_mask`, read off the parameter paths).

The factories are memoised: ``ann.sgd(0.1)`` returns the same object each
time, so a second ``fit`` with an equal optimizer reuses the compiled epoch
(arguments that cannot be hashed, such as an array, just build a new one).

Examples:
  >>> import jax.numpy as jnp, annjax as ann
  >>> params = {"dense_0": {"w": jnp.ones((2, 3)), "b": jnp.zeros(2)}}
  >>> opt = ann.sgd(0.1, momentum=0.9, weight_decay=1e-4, clip_norm=1.0)
  >>> opt_state = opt.init(params)
  >>> round(float(ann.optim.learning_rate(opt_state)), 6)
  0.1
  >>> ann.sgd(0.1) is ann.sgd(0.1)  # memoised: equal optimizers share programs
  True
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import optax

from annjax import _checks
from annjax.regularizers import default_mask

__all__ = [
    "adam",
    "adamw",
    "learning_rate",
    "scale_learning_rate",
    "sgd",
    "with_hyperparams",
]

LearningRate = float | Callable[[int], float]


def _learning_rate(value: LearningRate) -> LearningRate:
    if callable(value):
        return value
    return _checks.positive("learning_rate", value)


def _clip(clip_norm: float | None, clip_value: float | None) -> list:
    parts = []
    if clip_value is not None:
        parts.append(optax.clip(_checks.positive("clip_value", clip_value)))
    if clip_norm is not None:
        parts.append(
            optax.clip_by_global_norm(_checks.positive("clip_norm", clip_norm))
        )
    return parts


def _memoized(factory: Callable) -> Callable:
    """Returns ``factory`` cached on its arguments when they can all be hashed.

    An argument that cannot be hashed (an array, a list) is tested with
    ``hash`` before the cache is asked, so the factory builds a new
    transformation for it; an error inside the factory is never taken for
    an unhashable argument.
    """
    cached = functools.lru_cache(maxsize=256)(factory)

    @functools.wraps(factory)
    def build(*args, **kwargs):
        if not _hashable((args, tuple(kwargs.items()))):
            return factory(*args, **kwargs)
        return cached(*args, **kwargs)

    return build


def _hashable(value) -> bool:
    """Returns whether ``value`` can be hashed (a dict key, an lru_cache key)."""
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _step_size(learning_rate: LearningRate) -> optax.GradientTransformation:
    """Returns the last link, −α · update, with α injected into the state.

    ``optax.inject_hyperparams`` keeps α in the optimizer state, so the
    history can record it (:func:`learning_rate`) and ``fit_many`` can give
    every model its own (:func:`scale_learning_rate`).
    """
    return optax.inject_hyperparams(optax.scale_by_learning_rate)(
        learning_rate=learning_rate
    )


_KINDS = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def _injected(opt_state) -> list:
    """Returns the ``inject_hyperparams`` states holding a learning rate."""
    nodes = jax.tree_util.tree_leaves(
        opt_state, is_leaf=lambda n: isinstance(n, _KINDS)
    )
    return [
        n for n in nodes if isinstance(n, _KINDS) and "learning_rate" in n.hyperparams
    ]


def with_hyperparams(opt_state, source):
    """Returns ``opt_state`` with the injected hyper-parameters of ``source``.

    Every ``optax.inject_hyperparams`` link's ``hyperparams`` in
    ``opt_state`` is replaced by the one at the same path in ``source`` (an
    optimizer state of the same structure); the moments, counts and
    schedules' states stay. ``fit(resume=...)`` so applies the resuming
    call's learning rate (and ``lr_scale``) to a restored state.

    Examples:
      >>> import jax.numpy as jnp, annjax as ann
      >>> params = {"w": jnp.ones(2)}
      >>> old = ann.sgd(0.1).init(params)
      >>> new = ann.optim.with_hyperparams(old, ann.sgd(0.5).init(params))
      >>> float(ann.optim.learning_rate(new))
      0.5
    """
    found = optax.tree_utils.tree_get_all_with_path(source, "hyperparams")
    for path, value in found:
        opt_state = optax.tree_utils.tree_set(
            opt_state, lambda p, _, path=path: p == path, hyperparams=value
        )
    return opt_state


def learning_rate(opt_state) -> jax.Array | None:
    """Returns the learning rate of the last step held in ``opt_state``, or None.

    Found in the state of any ``optax.inject_hyperparams`` link with a
    ``learning_rate`` (every annjax optimizer has one); for a schedule, the
    value it gave the last step. None when no link injects it.
    """
    found = _injected(opt_state)
    return found[0].hyperparams["learning_rate"] if found else None


def scale_learning_rate(opt_state, scale):
    """Returns ``opt_state`` with every injected constant learning rate × ``scale``.

    Exact for any optimizer whose learning rate is injected with
    ``optax.inject_hyperparams`` (every annjax optimizer, or
    ``optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)``): the optimizer
    then steps with α·scale, whatever it does with α.

    Raises:
      ValueError: when no constant learning rate is injected (a plain optax
        optimizer, or a schedule, which recomputes α every step).
    """
    found = [
        n
        for n in _injected(opt_state)
        if "learning_rate" not in getattr(n, "hyperparams_states", {})
    ]
    if not found:
        raise ValueError(
            "lr_scale: expected an optimizer with a constant learning rate injected "
            "into its state (ann.sgd/adam/adamw with a number, or "
            "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)), got one "
            "without, or with a schedule. Pass one optimizer per learning rate "
            "instead, or drop lr_scale."
        )

    def rescale(node):
        if any(node is n for n in found):
            hp = dict(node.hyperparams)
            hp["learning_rate"] = hp["learning_rate"] * scale
            return node._replace(hyperparams=hp)
        return node

    return jax.tree_util.tree_map(
        rescale, opt_state, is_leaf=lambda n: isinstance(n, _KINDS)
    )


def _decay(weight_decay: float, mask) -> list:
    weight_decay = _checks.non_negative("weight_decay", weight_decay)
    if weight_decay == 0.0:
        return []
    return [optax.add_decayed_weights(weight_decay, mask=mask or default_mask)]


@_memoized
def sgd(
    learning_rate: LearningRate,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    decay_mask: Callable | None = None,
) -> optax.GradientTransformation:
    r"""Returns stochastic gradient descent, W ← W − α ∂L/∂W, as an optax chain.

    .. math::
       g \leftarrow \text{clip}(\nabla L), \quad
       v \leftarrow \mu v + g, \quad w \leftarrow w - \alpha (v + \lambda w)

    Args:
      learning_rate: α > 0, or an optax schedule.
      momentum: μ in [0, 1); 0 is plain SGD.
      nesterov: Nesterov momentum.
      weight_decay: λ ≥ 0, decoupled decay, outside the momentum (biases and
        norm parameters spared).
      clip_norm: clip the global gradient norm to this value (> 0).
      clip_value: clip each gradient element to [−v, v] (> 0).
      decay_mask: a params → bool pytree callable; default
        :func:`annjax.regularizers.default_mask`.

    Raises:
      ValueError: for learning_rate ≤ 0, momentum outside [0, 1), negative
        weight_decay, or clip values ≤ 0.
    """
    learning_rate = _learning_rate(learning_rate)
    momentum = _checks.number("momentum", momentum)
    if not 0.0 <= momentum < 1.0:
        raise _checks.fail("momentum", "a number in [0, 1)", momentum)
    direction = [optax.trace(momentum, nesterov=nesterov)] if momentum else []
    return optax.chain(
        *_clip(clip_norm, clip_value),
        *direction,
        *_decay(weight_decay, decay_mask),
        _step_size(learning_rate),
    )


@_memoized
def adam(
    learning_rate: LearningRate = 1e-3,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    decay_mask: Callable | None = None,
) -> optax.GradientTransformation:
    r"""Returns Adam (Kingma & Ba, 2015) as an optax chain clip → adam → decay → α.

    With ``weight_decay`` > 0 this is AdamW: the decay λ w is added after
    Adam's scaling, so it is not rescaled (unlike ``fit(l2=…)``).

    .. math::
       m \leftarrow \beta_1 m + (1-\beta_1) g,\;
       v \leftarrow \beta_2 v + (1-\beta_2) g^2,\;
       w \leftarrow w - \alpha \left(\frac{\hat m}{\sqrt{\hat v} + \epsilon}
       + \lambda w\right)

    Raises:
      ValueError: for learning_rate ≤ 0, betas outside [0, 1), eps ≤ 0,
        negative weight_decay, or clip values ≤ 0.
    """
    learning_rate = _learning_rate(learning_rate)
    _betas(b1, b2)
    return optax.chain(
        *_clip(clip_norm, clip_value),
        optax.scale_by_adam(b1=b1, b2=b2, eps=_checks.positive("eps", eps)),
        *_decay(weight_decay, decay_mask),
        _step_size(learning_rate),
    )


@_memoized
def adamw(
    learning_rate: LearningRate = 1e-3,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    decay_mask: Callable | None = None,
) -> optax.GradientTransformation:
    r"""Returns AdamW (Loshchilov & Hutter, 2019): :func:`adam` with decay on.

    The chain is clip → Adam scaling → decay → learning rate, so the decay term
    λ w is not rescaled by Adam: w ← w − α (m̂ / (√v̂ + ε) + λ w). The same as
    ``adam(..., weight_decay=1e-4)``; equal to ``optax.adamw``.

    Raises:
      ValueError: as :func:`adam`.
    """
    return adam(
        learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        weight_decay=weight_decay,
        clip_norm=clip_norm,
        clip_value=clip_value,
        decay_mask=decay_mask,
    )


def _betas(b1: float, b2: float) -> None:
    for name, value in (("b1", b1), ("b2", b2)):
        v = _checks.number(name, value)
        if not 0.0 <= v < 1.0:
            raise _checks.fail(name, "a number in [0, 1)", value)
