"""Optimizers: optax chains in the order clip → decay → step.

annjax writes no optimizer arithmetic: each factory returns an
``optax.GradientTransformation`` built with ``optax.chain``, so it works with
any optax tooling, and :func:`annjax.fit` accepts any optax transformation in
its place. Learning rates may be numbers or optax schedules.

Weight decay here is the *decoupled* form, w ← w − η λ w, applied by the
optimizer; ``fit(l2=λ)`` instead adds λ Σ w² to the loss (see
:mod:`annjax.regularizers`). For plain SGD the two coincide when
``weight_decay = 2 λ``; with momentum or Adam they differ, because the L2
gradient is rescaled by the optimizer while decoupled decay is not.

Decay spares biases and normalisation parameters by default (the mask is
:func:`annjax.regularizers.default_mask`, read off the parameter paths).

The factories are memoised: ``ann.sgd(0.1)`` returns the same object each
time, so a second ``fit`` with an equal optimizer reuses the compiled epoch.

Examples:
  >>> opt = ann.sgd(0.1, momentum=0.9, weight_decay=1e-4, clip_norm=1.0)
  >>> opt_state = opt.init(params)
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import optax

from annjax import _checks
from annjax.regularizers import default_mask

__all__ = ["adam", "adamw", "sgd"]

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


def _decay(weight_decay: float, mask) -> list:
    weight_decay = _checks.non_negative("weight_decay", weight_decay)
    if weight_decay == 0.0:
        return []
    return [optax.add_decayed_weights(weight_decay, mask=mask or default_mask)]


@functools.lru_cache(maxsize=256)
def sgd(
    learning_rate: LearningRate,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    decay_mask: Callable | None = None,
) -> optax.GradientTransformation:
    r"""Returns stochastic gradient descent, W ← W − α ∂L/∂W, as an optax chain.

    .. math::
       g \leftarrow \text{clip}(\nabla L) + \lambda w, \quad
       v \leftarrow \mu v + g, \quad w \leftarrow w - \alpha v

    Args:
      learning_rate: α > 0, or an optax schedule.
      momentum: μ in [0, 1); 0 is plain SGD.
      nesterov: Nesterov momentum.
      weight_decay: λ ≥ 0, decoupled decay added to the gradient (biases and
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
    return optax.chain(
        *_clip(clip_norm, clip_value),
        *_decay(weight_decay, decay_mask),
        optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov),
    )


@functools.lru_cache(maxsize=256)
def adam(
    learning_rate: LearningRate = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    decay_mask: Callable | None = None,
) -> optax.GradientTransformation:
    r"""Returns Adam (Kingma & Ba, 2015) as an optax chain clip → decay → adam.

    ``weight_decay`` here is added to the gradient before Adam's scaling (the
    "L2 inside Adam" of classic libraries); for the decoupled AdamW form use
    :func:`adamw`.

    .. math::
       m \leftarrow \beta_1 m + (1-\beta_1) g,\;
       v \leftarrow \beta_2 v + (1-\beta_2) g^2,\;
       w \leftarrow w - \alpha \frac{\hat m}{\sqrt{\hat v} + \epsilon}

    Raises:
      ValueError: for learning_rate ≤ 0, betas outside [0, 1), eps ≤ 0,
        negative weight_decay, or clip values ≤ 0.
    """
    learning_rate = _learning_rate(learning_rate)
    _betas(b1, b2)
    return optax.chain(
        *_clip(clip_norm, clip_value),
        *_decay(weight_decay, decay_mask),
        optax.adam(learning_rate, b1=b1, b2=b2, eps=_checks.positive("eps", eps)),
    )


@functools.lru_cache(maxsize=256)
def adamw(
    learning_rate: LearningRate = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    decay_mask: Callable | None = None,
) -> optax.GradientTransformation:
    r"""Returns AdamW (Loshchilov & Hutter, 2019): Adam with decoupled decay.

    The chain is clip → Adam scaling → decay → learning rate, so the decay term
    λ w is not rescaled by Adam: w ← w − α (m̂ / (√v̂ + ε) + λ w).

    Raises:
      ValueError: as :func:`adam`.
    """
    learning_rate = _learning_rate(learning_rate)
    _betas(b1, b2)
    weight_decay = _checks.non_negative("weight_decay", weight_decay)
    return optax.chain(
        *_clip(clip_norm, clip_value),
        optax.adamw(
            learning_rate,
            b1=b1,
            b2=b2,
            eps=_checks.positive("eps", eps),
            weight_decay=weight_decay,
            mask=decay_mask or default_mask,
        ),
    )


def _betas(b1: float, b2: float) -> None:
    for name, value in (("b1", b1), ("b2", b2)):
        v = _checks.number(name, value)
        if not 0.0 <= v < 1.0:
            raise _checks.fail(name, "a number in [0, 1)", value)
