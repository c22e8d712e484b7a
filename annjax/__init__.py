"""annjax: the ANN lecture as pure, compiled JAX functions, with a profiler.

The functional API (see the README and ``shared/DESIGN.md``)::

    import annjax as ann
    model = ann.mlp([256, 256, 10], activation="relu")
    result = ann.fit(model, (X, y), val_data=(Xv, yv), optimizer=ann.sgd(0.1))
    print(ann.diagnose(result.history))
"""

from annjax import (
    activations,
    augment,
    combinators,
    data,
    datasets,
    diagnostics,
    initializers,
    layers,
    losses,
    metrics,
    optim,
    perceptron,
    plot,
    profiler,
    regularizers,
    steps,
    sweep,
    train,
)
from annjax._types import Layer
from annjax.checkpoint import load, save
from annjax.combinators import mlp, residual, serial
from annjax.diagnostics import Finding, diagnose
from annjax.flax_bridge import from_flax
from annjax.layers import activation, batch_norm, dense, dropout, flatten
from annjax.optim import adam, adamw, sgd
from annjax.profiler import gradient_flow
from annjax.steps import TrainState, init_train_state, make_eval_step, make_train_step
from annjax.sweep import ManyResult, fit_many
from annjax.train import EarlyStopping, FitResult, evaluate, fit, predict

__version__ = "0.1.0"

__all__ = [
    "EarlyStopping",
    "Finding",
    "FitResult",
    "Layer",
    "ManyResult",
    "TrainState",
    "__version__",
    "activation",
    "activations",
    "adam",
    "adamw",
    "augment",
    "batch_norm",
    "combinators",
    "data",
    "datasets",
    "dense",
    "diagnose",
    "diagnostics",
    "dropout",
    "evaluate",
    "fit",
    "fit_many",
    "flatten",
    "from_flax",
    "gradient_flow",
    "init_train_state",
    "initializers",
    "layers",
    "load",
    "losses",
    "make_eval_step",
    "make_train_step",
    "metrics",
    "mlp",
    "optim",
    "perceptron",
    "plot",
    "predict",
    "profiler",
    "regularizers",
    "residual",
    "save",
    "serial",
    "sgd",
    "steps",
    "sweep",
    "train",
]
