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
import optax

from annjax import _checks
from annjax import hyperparams as _hyperparams
from annjax import losses as _losses
from annjax import optim as _optim
from annjax._types import Key, Layer
from annjax.data.stream import source_of
from annjax.nn.tracing import primitives
from annjax.training import mesh as _mesh
from annjax.training import streamed as _streamed
from annjax.training import vectorize as _vectorize
from annjax.training.arguments import (
    SmoothedLoss,
    callbacks_of,
    checkpoint_path,
    ema_decay,
    frozen_paths,
    one_model_hyper,
    penalties,
    per_model,
    setup,
    smoothed_loss,
    start_tree,
    steps_per_call_of,
)
from annjax.training.epoch import EpochSpec, held_spec
from annjax.training.step import abstract_init
from annjax.training.types import EarlyStopping
from annjax.training.weights import example_weights, split_data

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
        ``l2`` when set, ``ema``: the moving average's decay when asked;
        per model for ``fit_many``), and the example weights
        (``sample_weight``, ``val_weight``; see :mod:`.weights`) when given.
      optimizer_hyper: the values ``hyper=`` gives the optimizer's injected
        hyper-parameters (``optax.inject_hyperparams``), name → value(s),
        set into each model's optimizer state at initialisation.
      lr_scale: ``fit_many``'s learning-rate factor per model for an
        optimizer with a constant injected learning rate, or None (a
        schedule's factor is ``hyper["lr_scale"]``, applied to the updates).
      swept: ``fit_many``'s per-model hyper-parameters as ``result.hyper``
        reports them (``l1``, ``l2``, ``lr_scale``), or None for ``fit``.
      many: whether the train state carries a leading model axis.
      vectorize: how the models run (a way of :mod:`.vectorize`:
        ``"vmap"``, ``"unroll"``, ``"map"``, ``"sequential"``), None for
        ``fit``.
      models: the number of models (1 for ``fit``).
      epochs: epochs to run in this call.
      steps_per_call: None (the whole epoch in one call) or k steps per call.
      callbacks: functions called after every epoch.
      early_stopping: an :class:`EarlyStopping`, or None.
      checkpoint: where to save after every epoch, or None.
      resume: the checkpoint to continue from, or None.
      progress: whether to show a progress bar.
      params, state: the trees to start from (``params=``, ``state=``;
        stacked per model for ``fit_many``), or None: the initialisation's.
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
    optimizer_hyper: dict[str, np.ndarray]
    lr_scale: np.ndarray | None
    swept: dict[str, np.ndarray] | None
    many: bool
    vectorize: str | None
    models: int
    epochs: int
    steps_per_call: int | None
    callbacks: tuple[Callable, ...]
    early_stopping: EarlyStopping | None
    checkpoint: Path | None
    resume: Path | None
    progress: bool
    params: Any = None
    state: Any = None
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
    params=None,
    state=None,
    trainable=None,
    label_smoothing: float | _hyperparams.Hyper = 0.0,
    ema: float | _hyperparams.Hyper | None = None,
    validate_on: str = "params",
    sample_weight=None,
    val_weight=None,
    class_weight=None,
    track_sharpness: int | None = 0,
    vectorize: str = "auto",
    hyper=None,
    steps_per_epoch: int | None = None,
) -> Run:
    """Returns the :class:`Run` of ``fit`` (``many=False``, ``key``) or
    ``fit_many`` (``many=True``, ``keys``, per-model ``l1``/``l2``/``lr_scale``).

    Raises:
      ValueError, TypeError: for any invalid argument or data, before
        anything compiles (the messages of :mod:`.arguments`).
    """
    epochs = _checks.integer("epochs", epochs, minimum=0)
    train_data, w = split_data("train_data", train_data)
    val_data, w_val = (
        (None, None) if val_data is None else split_data("val_data", val_data)
    )
    if many:
        _checks.one_of("vectorize", vectorize, ("auto", *_vectorize.WAYS))
        keys, l1s, l2s, scales, named = per_model(keys, l1, l2, lr_scale, hyper)
        models = len(keys)
        step_hyper = {
            k: jnp.asarray(v) for k, v in (("l1", l1s), ("l2", l2s)) if v.any()
        }
        swept = {"l1": l1s, "l2": l2s, "lr_scale": scales, **named}
    else:
        step_hyper, models, scales, swept = penalties(l1, l2), 1, None, None
        named = one_model_hyper(hyper)
        keys = jax.random.key(0) if key is None else _checks.random_key("key", key)
    decay = ema_decay(ema, validate_on, named)
    if decay is not None:
        step_hyper["ema"] = jnp.full((models,) if many else (), decay, jnp.float32)
    ema_name = {ema.name} if isinstance(ema, _hyperparams.Hyper) else set()
    if resume is not None and (params is not None or state is not None):
        raise _checks.fail(
            "params/state",
            "no params= or state= with resume= (the checkpoint holds them)",
            "both",
            "Drop one of them.",
        )
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
        loss=smoothed_loss(loss, label_smoothing),
        optimizer=optimizer,
        batch_size=_streamed.batch_size_of(source, batch_size, mesh)
        if source is not None
        else batch_size,
        metrics=metrics,
        early_stopping=early_stopping,
        augment=augment,
        track_gradients=track_gradients,
        eval_batch_size=eval_batch_size,
        track_every=track_every,
        log_steps=log_steps,
        mesh=mesh,
        models=models if many else None,
        track_sharpness=track_sharpness,
    )
    per_call = calls_of(per_call, spec.model, x.shape[1:], spec.mesh)
    spec, stream, per_call = _streamed.resolve(source, spec, x, batch_size, per_call)
    if stream is not None and (
        w is not None or class_weight or sample_weight is not None
    ):
        raise _checks.fail(
            "train_data",
            "arrays (X, y, w) for example weights or class_weight",
            "a streamed source with weights",
            "Yield (x, y, w) batches from the source instead.",
        )
    shapes = abstract_init(spec.model, x.shape[1:])
    starts = [
        start_tree(what, want, given, x.shape[1:], models if many else None)
        for what, want, given in zip(
            ("params", "state"), shapes[1:], (params, state), strict=True
        )
    ]
    frozen = frozen_paths(trainable, shapes[1])
    if frozen:
        spec = spec._replace(optimizer=_optim.freeze(spec.optimizer, frozen))
    spec = spec._replace(frozen=frozen, validate_on=validate_on)
    count = models if many else None
    weights = {
        "sample_weight": example_weights(
            "train_data w",
            w,
            train_data[1],
            class_weight=class_weight,
            sample_weight=sample_weight,
            models=count,
        ),
        "val_weight": None
        if val_data is None
        else example_weights(
            "val_data w",
            w_val,
            val_data[1],
            sample_weight=val_weight,
            models=count,
            sample_name="val_weight",
        ),
    }
    if val_data is None and val_weight is not None:
        raise _checks.fail("val_weight", "val_data to weigh", "no val_data")
    step_hyper = {
        **step_hyper,
        **{k: jnp.asarray(v) for k, v in weights.items() if v is not None},
    }
    how = _vectorize.choose(
        vectorize, spec.model, x.shape[1:], spec.mesh, stream is not None
    )
    reads = named or _mentions_hyper((spec.model, spec.loss))
    opt_hyper, layer_hyper = (
        named_hyper(spec, x, y, named, ema_name) if reads else ({}, {})
    )
    if layer_hyper:
        step_hyper["named"] = {k: jnp.asarray(v) for k, v in layer_hyper.items()}
    if scales is not None and (scales != 1).any() and not _constant_rate(spec, x):
        step_hyper["lr_scale"] = jnp.asarray(scales)  # a schedule: scale updates
        scales = None
    return Run(
        spec=held_spec(spec),  # compiled programs never keep user functions alive
        x=x,
        y=y,
        val=val,
        keys=keys,
        hyper=_mesh.place_state(step_hyper, spec.mesh, many),
        optimizer_hyper=opt_hyper,
        lr_scale=scales if scales is not None and (scales != 1).any() else None,
        swept=swept,
        many=many,
        vectorize=how if many else None,
        models=models,
        epochs=epochs,
        steps_per_call=per_call,
        callbacks=callbacks,
        early_stopping=early_stopping,
        checkpoint=path,
        resume=None if resume is None else Path(resume),
        progress=bool(progress),
        params=starts[0],
        state=starts[1],
        stream=stream,
    )


def _mentions_hyper(value) -> bool:
    """Returns whether a layer's recorded arguments (its identity, children
    included), or a smoothed loss's α, hold an ``ann.hyper``."""
    if isinstance(value, _hyperparams.Hyper):
        return True
    if isinstance(value, SmoothedLoss):
        return _mentions_hyper(value.label_smoothing)
    if isinstance(value, Layer):
        identity = getattr(value, "identity", None)
        return identity is not None and _mentions_hyper(identity.arguments)
    if isinstance(value, tuple):
        return any(_mentions_hyper(v) for v in value)
    return False


def _abstract_state(spec, x):
    """Returns the shapes of one model's (params, state, optimizer state)."""
    _, params, state = abstract_init(spec.model, x.shape[1:])
    return params, state, jax.eval_shape(spec.optimizer.init, params)


def _injected(opt_state) -> set[str]:
    """Returns the names of the optimizer's injected hyper-parameters."""
    found = optax.tree_utils.tree_get_all_with_path(opt_state, "hyperparams")
    return {name for _, hp in found for name in hp}


def _constant_rate(spec, x) -> bool:
    """Returns whether the optimizer injects a constant learning rate (which
    ``lr_scale`` scales in its state) rather than a schedule or none."""
    opt_state = _abstract_state(spec, x)[2]
    found = optax.tree_utils.tree_get_all_with_path(opt_state, "hyperparams_states")
    scheduled = {name for _, states in found for name in states}
    return "learning_rate" in _injected(opt_state) - scheduled


def named_hyper(spec, x, y, values: dict, also=frozenset()) -> tuple[dict, dict]:
    """Returns ``(optimizer's, model's)`` values of ``hyper=``, checked.

    The names the optimizer injects (``optax.inject_hyperparams``) go to its
    state; the ``ann.hyper`` names the model's layers and the loss read go
    to the step (``also``: names read elsewhere, the EMA decay's). Learned
    by tracing one training-mode forward pass and its loss abstractly
    (nothing compiles), which also collects each reader's check of a value
    (a dropout rate in [0, 1]).

    Raises:
      ValueError: for a name nothing uses, a name the model reads without a
        value or default, or a value its reader refuses.
    """
    params, state, opt_state = _abstract_state(spec, x)
    # a batch of 2: batch norm refuses one example in training
    xb, yb = (jax.ShapeDtypeStruct((2, *a.shape[1:]), a.dtype) for a in (x, y))

    def forward(params, state, xb, yb):
        pred, _ = spec.model.apply(params, state, xb, key=jax.random.key(0), train=True)
        return _losses.get(spec.loss)(yb, pred)

    with _hyperparams.recording() as record:
        jax.eval_shape(forward, params, state, xb, yb)
    optimizer_names = _injected(opt_state)
    known = optimizer_names | set(record.used) | set(also)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"hyper: expected names the model or the optimizer use "
            f"({sorted(known)}), got {unknown}. Name a layer's argument with "
            "ann.hyper(name), or inject the optimizer's with "
            "optax.inject_hyperparams."
        )
    missing = sorted(record.required - set(values))
    if missing:
        raise ValueError(
            f"hyper: expected a value for each ann.hyper the model reads, got "
            f"none for {missing}. Pass hyper={{{missing[0]!r}: ...}}."
        )
    for name, checks in record.used.items():
        for check in checks:
            for v in np.ravel(values.get(name, [])):
                check(float(v))
    opt = {k: v for k, v in values.items() if k in optimizer_names}
    return opt, {k: v for k, v in values.items() if k in record.used}


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
