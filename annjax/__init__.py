"""annjax: the ANN lecture as pure, compiled JAX functions, with a gradient-flow profiler."""

from annjax import _checks, activations, initializers
from annjax._types import Layer

__version__ = "0.1.0"

__all__ = [
    "Layer",
    "__version__",
    "activations",
    "initializers",
]

del _checks
