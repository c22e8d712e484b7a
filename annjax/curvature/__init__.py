"""The loss's curvature: Hessian-vector products and the Krylov methods on them.

A floor below ``training/`` and ``analysis/``: the compiled epoch measures the
sharpness with it (``fit(track_sharpness=N)``), and
:func:`annjax.analysis.hessian` studies the whole spectrum with the same code.

- :mod:`.lanczos`: Lanczos, power iteration, Hutchinson and stochastic Lanczos
  quadrature on any symmetric matvec ``v ↦ Hv`` (pure linear algebra);
- :mod:`.hvp`: the Hessian-vector products of a model's loss, its top
  eigenpairs, the sharpness and plain gradient descent's limit 2/η.
"""

from annjax.curvature.hvp import (
    SHARPNESS_ITERATIONS,
    SHARPNESS_SEED,
    batch_loss,
    loss_hvp,
    over_batches,
    sharpness,
    spectrum_keys,
    stability_limit,
    top_eigenpairs,
)

__all__ = [
    "SHARPNESS_ITERATIONS",
    "SHARPNESS_SEED",
    "batch_loss",
    "loss_hvp",
    "over_batches",
    "sharpness",
    "spectrum_keys",
    "stability_limit",
    "top_eigenpairs",
]
