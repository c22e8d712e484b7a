"""Why a network does not learn: the gradient-flow profiler, ``diagnose``, plots,
and the bias–variance studies.

:mod:`.profiler` measures per-layer gradient and parameter norms, update
ratios, dead and saturated units inside the compiled step; :mod:`.diagnose`
reads them (and the learning curves) into the lecture's findings with their
remedies (vocabulary in :mod:`.findings`); :mod:`.plot` draws them.
:mod:`.biasvar` decomposes replicas' predictions into bias and variance,
:mod:`.resampling` draws the replicas as example weights (bootstrap, k-fold,
training-set sizes) and :mod:`.curves` holds the measured curves.
"""

from annjax.analysis import plot
from annjax.analysis.biasvar import BiasVariance, decompose
from annjax.analysis.curves import ComplexityCurve, LearningCurve
from annjax.analysis.diagnose import diagnose
from annjax.analysis.findings import KINDS, REMEDIES, Finding, Findings, Thresholds
from annjax.analysis.profiler import gradient_flow
from annjax.analysis.resampling import (
    Folds,
    bootstrap_weights,
    kfold_weights,
    subset_sizes,
    subset_weights,
)

__all__ = [
    "KINDS",
    "REMEDIES",
    "BiasVariance",
    "ComplexityCurve",
    "Finding",
    "Findings",
    "Folds",
    "LearningCurve",
    "Thresholds",
    "bootstrap_weights",
    "decompose",
    "diagnose",
    "gradient_flow",
    "kfold_weights",
    "plot",
    "subset_sizes",
    "subset_weights",
]
