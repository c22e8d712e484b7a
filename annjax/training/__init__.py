"""Training: state types, argument checks, the step, the compiled epoch, ONE loop.

Bottom to top: :mod:`.types` (``TrainState``, ``EarlyStopping``, the
results), :mod:`.step` (the pure train and eval steps), :mod:`.epoch` (an
epoch as one compiled call, or
``steps_per_call`` steps per call),
:mod:`.loop` (the one loop for 1..N models: history, NaN guard, early
stopping, best params, callbacks, checkpoints), :mod:`.arguments` (every
argument checked before anything compiles), :mod:`.fitting` (``fit``,
``fit_many``), :mod:`.evaluate` (``evaluate``, ``predict``),
:mod:`.checkpoint` (``save``, ``load``, resume), :mod:`.export`
(``export``, ``load_exported``: the model without its code) and :mod:`.mesh`
(where data, train state and models lie on a device mesh: ``fit(..., mesh=)``).
"""

from annjax.training.checkpoint import load, save
from annjax.training.evaluate import evaluate, predict
from annjax.training.export import ExportedModel, export, load_exported
from annjax.training.fitting import fit, fit_many
from annjax.training.step import init_train_state, make_eval_step, make_train_step
from annjax.training.types import (
    EarlyStopping,
    FitResult,
    ManyResult,
    SweepTable,
    Tracker,
    TrainState,
)

__all__ = [
    "EarlyStopping",
    "ExportedModel",
    "FitResult",
    "ManyResult",
    "SweepTable",
    "Tracker",
    "TrainState",
    "evaluate",
    "export",
    "fit",
    "fit_many",
    "init_train_state",
    "load",
    "load_exported",
    "make_eval_step",
    "make_train_step",
    "predict",
    "save",
]
