"""Layers as ``Layer(init, apply)`` pairs of pure functions, and their combinators.

``dense``, ``activation``, ``flatten``, ``dropout`` (:mod:`.layers`);
``batch_norm``, ``layer_norm`` (:mod:`.normalization`); ``conv2d``
(:mod:`.conv`); ``max_pool``, ``avg_pool``, ``global_avg_pool`` (:mod:`.pooling`);
``resnet`` (:mod:`.resnet`); ``serial``, ``residual``, ``mlp``
(:mod:`.combinators`); ``from_flax`` (:mod:`.flax_bridge`) for any flax module;
``mixed_precision`` (:mod:`.precision`) for bfloat16 compute of any model;
``summary`` (:mod:`.model_summary`), a model's table of layers.
"""

from annjax._types import layer_factory
from annjax.nn.combinators import mlp, residual, serial
from annjax.nn.conv import conv2d
from annjax.nn.flax_bridge import from_flax
from annjax.nn.layers import activation, dense, dropout, flatten
from annjax.nn.model_summary import Summary, summary
from annjax.nn.normalization import batch_norm, layer_norm
from annjax.nn.pooling import avg_pool, global_avg_pool, max_pool
from annjax.nn.precision import mixed_precision
from annjax.nn.resnet import resnet

__all__ = [
    "Summary",
    "activation",
    "avg_pool",
    "batch_norm",
    "conv2d",
    "dense",
    "dropout",
    "flatten",
    "from_flax",
    "global_avg_pool",
    "layer_factory",
    "layer_norm",
    "max_pool",
    "mixed_precision",
    "mlp",
    "residual",
    "resnet",
    "serial",
    "summary",
]
