"""Why a network does not learn: the gradient-flow profiler, ``diagnose``, plots,
and the bias–variance studies.

:mod:`.profiler` measures per-layer gradient and parameter norms, update
ratios, dead and saturated units inside the compiled step; :mod:`.diagnose`
reads them (and the learning curves) into the lecture's findings with their
remedies (vocabulary in :mod:`.findings`); :mod:`.plot` draws them.
:mod:`.biasvar` decomposes replicas' predictions into bias and variance,
:mod:`.resampling` draws the replicas as example weights (bootstrap, k-fold,
training-set sizes), :mod:`.studies` trains each protocol in one ``fit_many``
and :mod:`.curves` holds the measured curves.
"""

from annjax.analysis import plot
from annjax.analysis.biasvar import BiasVariance, decompose
from annjax.analysis.curves import ComplexityCurve, LearningCurve
from annjax.analysis.diagnose import diagnose
from annjax.analysis.findings import KINDS, REMEDIES, Finding, Findings, Thresholds
from annjax.analysis.hessian import Density, Spectrum, hessian, top_eigenvalue
from annjax.analysis.landscape import Landscape, loss_landscape, random_direction
from annjax.analysis.profiler import gradient_flow
from annjax.analysis.resampling import (
    Folds,
    bootstrap_weights,
    kfold_weights,
    subset_sizes,
    subset_weights,
)
from annjax.analysis.studies import (
    SWEEPABLE,
    CrossValidation,
    bias_variance,
    complexity_curve,
    cross_validate,
    evaluate_ensemble,
    learning_curve,
)

__all__ = [
    "KINDS",
    "REMEDIES",
    "SWEEPABLE",
    "BiasVariance",
    "ComplexityCurve",
    "CrossValidation",
    "Density",
    "Finding",
    "Findings",
    "Folds",
    "Landscape",
    "LearningCurve",
    "Spectrum",
    "Thresholds",
    "bias_variance",
    "bootstrap_weights",
    "complexity_curve",
    "cross_validate",
    "decompose",
    "diagnose",
    "evaluate_ensemble",
    "gradient_flow",
    "hessian",
    "kfold_weights",
    "learning_curve",
    "loss_landscape",
    "plot",
    "random_direction",
    "subset_sizes",
    "subset_weights",
    "top_eigenvalue",
]
