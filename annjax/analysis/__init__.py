"""Why a network does not learn: the gradient-flow profiler, ``diagnose``, plots.

:mod:`.profiler` measures per-layer gradient and parameter norms, update
ratios, dead and saturated units inside the compiled step; :mod:`.diagnose`
reads them (and the learning curves) into the lecture's findings with their
remedies (vocabulary in :mod:`.findings`); :mod:`.plot` draws them.
"""

from annjax.analysis import plot
from annjax.analysis.diagnose import diagnose
from annjax.analysis.findings import KINDS, REMEDIES, Finding, Findings, Thresholds
from annjax.analysis.hessian import Density, Spectrum, hessian, top_eigenvalue
from annjax.analysis.landscape import Landscape, loss_landscape, random_direction
from annjax.analysis.profiler import gradient_flow

__all__ = [
    "KINDS",
    "REMEDIES",
    "Density",
    "Finding",
    "Findings",
    "Landscape",
    "Spectrum",
    "Thresholds",
    "diagnose",
    "gradient_flow",
    "hessian",
    "loss_landscape",
    "plot",
    "random_direction",
    "top_eigenvalue",
]
