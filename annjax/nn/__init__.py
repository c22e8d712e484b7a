"""Layers as ``Layer(init, apply)`` pairs of pure functions, and their combinators.

``dense``, ``activation``, ``flatten``, ``dropout`` (:mod:`.layers`);
``batch_norm`` (:mod:`.normalization`); ``serial``, ``residual``, ``mlp``
(:mod:`.combinators`); ``from_flax`` (:mod:`.flax_bridge`) for any flax module.
"""

from annjax.nn.combinators import mlp, residual, serial
from annjax.nn.flax_bridge import from_flax
from annjax.nn.layers import activation, dense, dropout, flatten
from annjax.nn.normalization import batch_norm

__all__ = [
    "activation",
    "batch_norm",
    "dense",
    "dropout",
    "flatten",
    "from_flax",
    "mlp",
    "residual",
    "serial",
]
