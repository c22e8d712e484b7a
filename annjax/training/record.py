"""The run record: ``fit``'s and ``fit_many``'s arguments, resolved once.

Every argument is checked (:mod:`.arguments`) and converted here, once, into
one immutable :class:`Run` with named fields. The loop, the history, the
checkpoint and the resume check all read that record, so nothing is listed
twice: what a checkpoint must hold is what the record's compiled epoch
returns (:func:`annjax.training.loop.history_names`).

``fit`` is the case of one model (``many=False``: no model axis);
``fit_many`` has ``models`` models, each with its own key and
hyper-parameters, sharing the data.

Examples:
  >>> import jax, numpy as np, annjax as ann
  >>> from annjax.training.record import resolve
  >>> X = np.random.default_rng(0).normal(size=(16, 3)).astype("f4")
  >>> y = (X[:, 0] > 0).astype("i4")
  >>> run = resolve(ann.mlp([4, 2]), (X, y), epochs=2, batch_size=8, l2=0.5)
  >>> run.models, run.many, run.spec.batch_size, float(run.hyper["l2"])
  (1, False, 8, 0.5)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from annjax import _checks
from annjax._types import Key, Layer
from annjax.data.stream import source_of
from annjax.nn.tracing import primitives
from annjax.training import mesh as _mesh
from annjax.training import streamed as _streamed
from annjax.training.arguments import (
    callbacks_of,
    checkpoint_path,
    penalties,
    per_model,
    setup,
    steps_per_call_of,
)
from annjax.training.epoch import EpochSpec, held_spec
from annjax.training.types import EarlyStopping

__all__ = ["Run", "calls_of", "resolve"]


class Run(NamedTuple):
    """One training run, resolved from its arguments (immutable).

    Attributes:
      spec: the static part, hashable: model, loss, optimizer, metrics (each
        the object the user passed), batch sizes, profiler, augmentation,
        ``log_steps``, mesh. Equal specs share one compiled epoch.
      x, y, val: the data, checked and placed (on the device, or the mesh).
      keys: the user's key (``fit``) or keys (``fit_many``, shape (models,));
        the initialisation splits each into (init key, training key).
      hyper: the step's dynamic hyper-parameters, name → value (``l1``,
        ``l2`` when set; per model for ``fit_many``).
      lr_scale: ``fit_many``'s learning-rate factor per model, or None.
      swept: ``fit_many``'s per-model hyper-parameters as ``result.hyper``
        reports them (``l1``, ``l2``, ``lr_scale``), or None for ``fit``.
      many: whether the train state carries a leading model axis.
      models: the number of models (1 for ``fit``).
      epochs: epochs to run in this call.
      steps_per_call: None (the whole epoch in one call) or k steps per call.
      callbacks: functions called after every epoch.
      early_stopping: an :class:`EarlyStopping`, or None.
      checkpoint: where to save after every epoch, or None.
      resume: the checkpoint to continue from, or None.
      progress: whether to show a progress bar.
      stream: the streamed training data (:class:`.streamed.Stream`), or
        None for data on the device; then ``x``, ``y`` are its head (the
        first examples: shapes, dtypes, ``train_eval_*``).
    """

    spec: EpochSpec
    x: Any
    y: Any
    val: Any
    keys: Key
    hyper: dict[str, Any]
    lr_scale: np.ndarray | None
    swept: dict[str, np.ndarray] | None
    many: bool
    models: int
    epochs: int
    steps_per_call: int | None
    callbacks: tuple[Callable, ...]
    early_stopping: EarlyStopping | None
    checkpoint: Path | None
    resume: Path | None
    progress: bool
    stream: _streamed.Stream | None = None


def resolve(
    model,
    train_data,
    val_data=None,
    *,
    many: bool = False,
    key: Key | None = None,
    keys: Key | Sequence[Key] | None = None,
    l1: float | Sequence[float] = 0.0,
    l2: float | Sequence[float] = 0.0,
    lr_scale: float | Sequence[float] = 1.0,
    loss: str | Callable = "softmax_cross_entropy",
    optimizer=None,
    epochs: int = 20,
    batch_size: int = 128,
    metrics: Sequence[str | Callable] = (),
    early_stopping: EarlyStopping | None = None,
    augment: Callable | None = None,
    track_gradients: bool = False,
    track_every: int = 10,
    progress: bool = True,
    resume=None,
    checkpoint=None,
    eval_batch_size: int = 1024,
    steps_per_call: int | str | None = "auto",
    callbacks: Sequence[Callable] = (),
    log_steps: bool = False,
    mesh=None,
    steps_per_epoch: int | None = None,
) -> Run:
    """Returns the :class:`Run` of ``fit`` (``many=False``, ``key``) or
    ``fit_many`` (``many=True``, ``keys``, per-model ``l1``/``l2``/``lr_scale``).

    Raises:
      ValueError, TypeError: for any invalid argument or data, before
        anything compiles (the messages of :mod:`.arguments`).
    """
    epochs = _checks.integer("epochs", epochs, minimum=0)
    if many:
        keys, l1s, l2s, scales = per_model(keys, l1, l2, lr_scale)
        models = len(keys)
        hyper = {k: jnp.asarray(v) for k, v in (("l1", l1s), ("l2", l2s)) if v.any()}
        swept = {"l1": l1s, "l2": l2s, "lr_scale": scales}
    else:
        hyper, models, scales, swept = penalties(l1, l2), 1, None, None
        keys = jax.random.key(0) if key is None else _checks.random_key("key", key)
    path = checkpoint_path("checkpoint", checkpoint)
    per_call = steps_per_call_of(steps_per_call)
    callbacks = callbacks_of(callbacks)
    source = source_of(train_data, steps_per_epoch=steps_per_epoch)
    train_data = _streamed.check(
        source, train_data, steps_per_epoch, mesh, models if many else None, resume
    )
    spec, x, y, val = setup(
        model,
        train_data,
        val_data,
        loss=loss,
        optimizer=optimizer,
        batch_size=batch_size,
        metrics=metrics,
        early_stopping=early_stopping,
        augment=augment,
        track_gradients=track_gradients,
        eval_batch_size=eval_batch_size,
        track_every=track_every,
        log_steps=log_steps,
        mesh=mesh,
        models=models if many else None,
    )
    per_call = calls_of(per_call, spec.model, x.shape[1:], spec.mesh)
    spec, stream, per_call = _streamed.resolve(source, spec, x, batch_size, per_call)
    return Run(
        spec=held_spec(spec),  # compiled programs never keep user functions alive
        x=x,
        y=y,
        val=val,
        keys=keys,
        hyper=_mesh.place_state(hyper, spec.mesh, many),
        lr_scale=scales if scales is not None and (scales != 1).any() else None,
        swept=swept,
        many=many,
        models=models,
        epochs=epochs,
        steps_per_call=per_call,
        callbacks=callbacks,
        early_stopping=early_stopping,
        checkpoint=path,
        resume=None if resume is None else Path(resume),
        progress=bool(progress),
        stream=stream,
    )


def calls_of(value, model: Layer, input_shape, mesh) -> int | None:
    """Returns the steps per compiled call: ``value``, or the ``"auto"`` rule.

    The one default rule: one step per call for a model with a convolution
    on the CPU, where XLA runs a convolution inside the epoch's loop many
    times slower than in straight code (``benchmarks/README.md``); the whole
    epoch in one call (None) for every other model and on GPU/TPU.

    Examples:
      >>> import annjax as ann
      >>> from annjax.training.record import calls_of
      >>> calls_of("auto", ann.mlp([4, 2]), (3,), None) is None
      True
      >>> calls_of(4, ann.mlp([4, 2]), (3,), None)
      4
    """
    if value != "auto":
        return value
    device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
    convolves = "conv_general_dilated" in primitives(model, tuple(input_shape))
    if device.platform == "cpu" and convolves:
        return 1
    return None
