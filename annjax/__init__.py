"""annjax: the ANN lecture as pure, compiled JAX functions, with a profiler.

The functional API (see the README and ``docs/architecture.md``)::

    import annjax as ann
    model = ann.mlp([256, 256, 10], activation="relu")
    result = ann.fit(model, (X, y), val_data=(Xv, yv), optimizer=ann.sgd(0.1))
    print(ann.diagnose(result.history))

The package tree is the architecture: the lecture's math at the top
(``activations``, ``losses``, ``initializers``, ``perceptron``,
``regularizers``, ``optim``), then ``metrics/``, ``nn/`` (layers),
``data/``, ``datasets/``, ``training/`` (the engine) and ``analysis/``
(profiler, diagnose, plots).
"""

from annjax import (
    activations,
    analysis,
    callbacks,
    data,
    datasets,
    initializers,
    losses,
    metrics,
    nn,
    optim,
    perceptron,
    regularizers,
    training,
)
from annjax._cache import count_compiles, enable_compilation_cache
from annjax._types import Layer, takes_weights
from annjax.analysis import plot, profiler
from annjax.analysis.diagnose import diagnose
from annjax.analysis.findings import Finding
from annjax.analysis.profiler import gradient_flow
from annjax.data import augment
from annjax.nn import (
    activation,
    avg_pool,
    batch_norm,
    conv2d,
    dense,
    dropout,
    flatten,
    from_flax,
    global_avg_pool,
    layer_norm,
    max_pool,
    mlp,
    residual,
    resnet,
    serial,
)
from annjax.optim import adam, adamw, sgd
from annjax.training import (
    EarlyStopping,
    FitResult,
    ManyResult,
    TrainState,
    evaluate,
    export,
    fit,
    fit_many,
    init_train_state,
    load,
    load_exported,
    make_eval_step,
    make_train_step,
    predict,
    save,
)

__version__ = "0.2.0"

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
    "analysis",
    "augment",
    "avg_pool",
    "batch_norm",
    "callbacks",
    "conv2d",
    "count_compiles",
    "data",
    "datasets",
    "dense",
    "diagnose",
    "dropout",
    "enable_compilation_cache",
    "evaluate",
    "export",
    "fit",
    "fit_many",
    "flatten",
    "from_flax",
    "global_avg_pool",
    "gradient_flow",
    "init_train_state",
    "initializers",
    "layer_norm",
    "load",
    "load_exported",
    "losses",
    "make_eval_step",
    "make_train_step",
    "max_pool",
    "metrics",
    "mlp",
    "nn",
    "optim",
    "perceptron",
    "plot",
    "predict",
    "profiler",
    "regularizers",
    "residual",
    "resnet",
    "save",
    "serial",
    "sgd",
    "takes_weights",
    "training",
]
