"""The pure training and evaluation steps, and the compiled epoch built on them.

The step is a pure function of ``(train_state, batch, key)``; everything else
(one epoch as ONE compiled call with ``lax.scan`` over batches, many models at
once with ``jax.vmap``, data parallelism over sharded inputs) reuses it
unchanged. Users who write their own loop take :func:`make_train_step` and
:func:`make_eval_step` and jit them as they like.

Examples:
  >>> model = ann.mlp([64, 10])
  >>> opt = ann.adam(1e-3)
  >>> ts, out_shape = ann.init_train_state(model, opt, jax.random.key(0), (784,))
  >>> step = jax.jit(ann.make_train_step(model, "softmax_cross_entropy", opt))
  >>> for i, (xb, yb) in enumerate(ann.data.batches(X, y, 128)):
  ...     ts, logs = step(ts, (xb, yb), jax.random.key(i))
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from annjax import data as _data
from annjax import losses as _losses
from annjax import metrics as _metrics
from annjax import optim as _optim
from annjax import profiler as _profiler
from annjax import regularizers as _regularizers
from annjax._types import Array, Key, Layer, Shape

__all__ = [
    "TrainState",
    "init_train_state",
    "make_eval_step",
    "make_train_step",
]


class TrainState(NamedTuple):
    """Everything that changes during training, as one pytree.

    Attributes:
      params: the model's parameters.
      state: the model's state (batch-norm running statistics).
      opt_state: the optimizer's state.
      step: the number of optimizer steps taken (int32 scalar).
    """

    params: Any
    state: Any
    opt_state: Any
    step: Array


def init_train_state(
    model: Layer,
    optimizer: optax.GradientTransformation,
    key: Key,
    input_shape: Shape,
) -> tuple[TrainState, Shape]:
    """Returns a fresh ``TrainState`` and the model's output shape (one example).

    ``model.init`` runs under one ``jax.jit``: a single compilation instead of
    one per random draw and layer, which on CPU is several times faster.
    """
    init, out_shape = _jitted_init(model.init, tuple(input_shape))
    params, state = init(key)
    ts = TrainState(params, state, optimizer.init(params), jnp.zeros((), jnp.int32))
    return ts, out_shape


@functools.lru_cache(maxsize=64)
def _jitted_init(init: Callable, input_shape: Shape) -> tuple[Callable, Shape]:
    """Returns ``model.init`` jitted for ``input_shape``, and the output shape.

    Cached per (init function, shape), so a second ``fit`` of the same model
    compiles nothing.
    """
    shapes = []

    def params_and_state(key):
        out_shape, params, state = init(key, input_shape)
        shapes.append(tuple(int(d) for d in out_shape))  # static, read at trace
        return params, state

    jitted = jax.jit(params_and_state)
    jax.eval_shape(jitted, jax.random.key(0))
    return jitted, shapes[0]


def output_shape(model: Layer, input_shape: Shape) -> Shape:
    """Returns the model's output shape for one example of ``input_shape``."""
    return _jitted_init(model.init, tuple(input_shape))[1]


def _weighted_mean(values: Array, weight: Array) -> Array:
    return jnp.sum(values * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def make_train_step(
    model: Layer,
    loss: str | Callable = "softmax_cross_entropy",
    optimizer: optax.GradientTransformation | None = None,
    *,
    metrics: Sequence[str] = (),
    l1: float | Array | None = None,
    l2: float | Array | None = None,
    regularizer_mask: Callable | None = None,
    track_gradients: bool = False,
    augment: Callable | None = None,
    lr_scale: float | Array | None = None,
) -> Callable:
    r"""Returns ``step(train_state, batch, key) -> (train_state, logs)``, pure.

    One step of the lecture's gradient descent on the regularised objective

    .. math:: J(\theta) = \frac{\sum_i w_i L(y_i, f_\theta(x_i))}{\sum_i w_i}
              + \lambda_1 \sum |W| + \lambda_2 \sum W^2,
              \qquad \theta \leftarrow \text{optimizer}(\nabla_\theta J)

    ``batch`` is ``(x, y)`` or ``(x, y, w)`` with per-example weights ``w``
    (0 for padding, so a short last batch counts each example once). ``key``
    feeds dropout and ``augment`` (applied to ``x`` only). ``logs`` holds the
    data loss (without the penalty) as ``loss``, the batch's total weight as
    ``weight``, each metric on the training-mode outputs, and, with
    ``track_gradients``, the per-layer measurements of
    :mod:`annjax.profiler`.

    ``l1`` and ``l2`` may be traced arrays, so hyper-parameter sweeps vmap over
    them; None or a Python 0 leaves the penalty out of the compiled step.
    ``lr_scale`` multiplies the optimizer's update: for SGD, Adam and AdamW,
    whose updates are proportional to the learning rate, it is a learning-rate
    multiplier that can be traced (and vmapped over) too.
    """
    loss_fn = _losses.get(loss)
    optimizer = optimizer if optimizer is not None else default_optimizer()
    metric_fns = {name: _metrics.get(name) for name in metrics}
    to_metric = metric_input(loss)
    weighted = {name for name, fn in metric_fns.items() if _takes_weights(fn)}

    def objective(params, state, x, y, w, key):
        if track_gradients:
            pred, new_state, probe = _profiler.probe_apply(
                model, params, state, x, key=key, train=True
            )
        else:
            pred, new_state = model.apply(params, state, x, key=key, train=True)
            probe = {}
        data_loss = _weighted_mean(loss_fn(y, pred, reduction="none"), w)
        total = data_loss
        if _active(l1):
            total = total + _regularizers.l1(params, l1, regularizer_mask)
        if _active(l2):
            total = total + _regularizers.l2(params, l2, regularizer_mask)
        health = _profiler.activation_stats(probe) if track_gradients else {}
        return total, (data_loss, pred, new_state, health)

    def step(ts: TrainState, batch, key: Key):
        x, y, *rest = batch
        w = rest[0] if rest else jnp.ones((x.shape[0],), jnp.float32)
        aug_key, model_key = jax.random.split(key)
        if augment is not None:
            x = augment(aug_key, x)
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (_, (data_loss, pred, new_state, health)), grads = grad_fn(
            ts.params, ts.state, x, y, w, model_key
        )
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        if lr_scale is not None:
            updates = jax.tree_util.tree_map(lambda u: lr_scale * u, updates)
        params = optax.apply_updates(ts.params, updates)
        logs = {"loss": data_loss, "weight": jnp.sum(w)}
        for name, fn in metric_fns.items():
            # padding (w = 0) must not count, as in the loss
            kw = {"sample_weight": w} if name in weighted else {}
            logs[name] = fn(y, to_metric(pred), **kw)
        if track_gradients:
            # the new params: reading the old ones would keep a copy alive
            logs.update(_profiler.layer_stats(grads, params, updates))
            logs.update(health)
        return TrainState(params, new_state, opt_state, ts.step + 1), logs

    return step


def metric_input(loss: str | Callable) -> Callable[[Array], Array]:
    """Returns the map from model outputs to what the metrics read.

    A model trained with ``sigmoid_binary_cross_entropy`` outputs logits; the
    metrics threshold probabilities at 0.5, so they see σ(z). Softmax logits
    need nothing (argmax is the same), nor do other losses.
    """
    if _losses.name_of(loss) == "sigmoid_binary_cross_entropy":
        return jax.nn.sigmoid
    return lambda pred: pred


def _takes_weights(fn: Callable) -> bool:
    """Returns whether a metric takes ``sample_weight`` (every registered one does)."""
    try:
        return "sample_weight" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and the like have no signature
        return False


def _active(strength) -> bool:
    """Returns whether a penalty strength is present (traced values always are)."""
    return strength is not None and not (
        isinstance(strength, float | int) and strength == 0
    )


def make_eval_step(
    model: Layer,
    loss: str | Callable = "softmax_cross_entropy",
    *,
    metrics: Sequence[str] = (),
) -> Callable:
    """Returns ``eval_step(params, state, batch) -> logs``: loss and metrics, pure.

    The model runs in evaluation mode (no dropout, running batch-norm
    statistics); ``logs`` holds ``loss`` and each metric over the whole batch.
    """
    loss_fn = _losses.get(loss)
    metric_fns = {name: _metrics.get(name) for name in metrics}
    to_metric = metric_input(loss)

    def eval_step(params, state, batch):
        x, y = batch[0], batch[1]
        pred, _ = model.apply(params, state, x, train=False)
        logs = {"loss": loss_fn(y, pred)}
        for name, fn in metric_fns.items():
            logs[name] = fn(y, to_metric(pred))
        return logs

    return eval_step


def default_optimizer() -> optax.GradientTransformation:
    """Returns the optimizer used when none is given: ``ann.sgd(0.01)``."""
    return _optim.sgd(0.01)


# ------------------------------------------------------------- compiled epoch


class EpochSpec(NamedTuple):
    """The static (hashable) description of a compiled epoch; equal specs share
    one compiled function, so a second ``fit`` on the same model, optimizer and
    shapes compiles nothing."""

    model: Layer
    loss: str | Callable
    optimizer: optax.GradientTransformation
    metrics: tuple[str, ...]
    batch_size: int
    track_gradients: bool
    augment: Callable | None
    eval_batch_size: int
    track_every: int = 10


def _aggregate(logs: dict[str, Array]) -> dict[str, Array]:
    """Returns per-epoch values from per-step logs.

    Loss and metrics: means weighted by each batch's number of real examples.
    Profiler measurements: the mean over steps under their own name and the
    maximum under ``<kind>_max/<layer>``.
    """
    weight = logs["weight"]
    out = {}
    for name, values in logs.items():
        if name == "weight":
            continue
        if "/" in name:
            kind, layer = name.split("/", 1)
            out[name] = jnp.mean(values)
            out[f"{kind}_max/{layer}"] = jnp.max(values)
        else:
            out[name] = _weighted_mean(values, weight)
    finite = jnp.isfinite(logs["loss"])
    out["first_non_finite_step"] = jnp.where(
        jnp.all(finite), -1, jnp.argmin(finite)
    ).astype(jnp.int32)
    return out


def predict_batched(model: Layer, params, state, x: Array, batch_size: int) -> Array:
    """Returns the model's evaluation-mode outputs on ``x``, ``batch_size`` at a time.

    ``x`` is padded to a whole number of batches and the padding dropped from
    the result; traceable (call it inside jit).
    """
    n = x.shape[0]
    bs = max(1, min(batch_size, n))
    nb = -(-n // bs)
    padded = jnp.concatenate([x, jnp.zeros((nb * bs - n, *x.shape[1:]), x.dtype)])

    def body(_, xb):
        return None, model.apply(params, state, xb, train=False)[0]

    _, out = jax.lax.scan(body, None, padded.reshape(nb, bs, *x.shape[1:]))
    return out.reshape(nb * bs, *out.shape[2:])[:n]


def evaluate_arrays(
    model: Layer, loss, metrics: tuple[str, ...], batch_size: int, params, state, x, y
) -> dict[str, Array]:
    """Returns the loss and metrics of the whole of ``(x, y)``; traceable.

    Metrics see every prediction at once, so F1, R² and the like are exact,
    not averages of per-batch values.
    """
    pred = predict_batched(model, params, state, x, batch_size)
    out = {"loss": _losses.get(loss)(y, pred)}
    for name in metrics:
        out[name] = _metrics.get(name)(y, metric_input(loss)(pred))
    return out


def run_epoch(spec: EpochSpec, ts: TrainState, key: Key, epoch, hyper, x, y, val):
    """Returns ``(train_state, logs)`` after one epoch; one compiled call.

    The epoch's key is ``fold_in(key, epoch)`` (``epoch`` is traced, so every
    epoch shares the compiled call); from it a fresh permutation is drawn;
    ``lax.scan`` runs the step over every batch; a non-finite epoch loss keeps
    the incoming state (the NaN guard; so does ``hyper["active"] == False``);
    validation data, when given, is evaluated in the same call.

    ``hyper`` holds the dynamic hyper-parameters present (``"l1"``, ``"l2"``,
    ``"lr_scale"``); they may carry a leading model axis under ``jax.vmap``.
    """
    perm_key, step_key = jax.random.split(jax.random.fold_in(key, epoch))
    idx, weights = _data.epoch_batches(perm_key, x.shape[0], spec.batch_size)
    keys = jax.random.split(step_key, idx.shape[0])

    def body_of(track: bool):
        step = make_train_step(
            spec.model,
            spec.loss,
            spec.optimizer,
            metrics=spec.metrics,
            l1=hyper.get("l1"),
            l2=hyper.get("l2"),
            track_gradients=track,
            augment=spec.augment,
            lr_scale=hyper.get("lr_scale"),
        )

        def body(carry, inputs):
            i, w, k = inputs
            return step(carry, (x[i], y[i], w), k)

        return body

    inputs = (idx, weights, keys)
    if not spec.track_gradients:
        new, logs = jax.lax.scan(body_of(False), ts, inputs)
    else:
        new, logs = _tracked_scan(body_of, ts, inputs, spec.track_every)
    out = _aggregate(logs)
    keep = jnp.isfinite(out["loss"])
    if "active" in hyper:  # fit_many freezes the models that have stopped
        keep = keep & hyper["active"]
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, ts)
    if val is not None:
        val_logs = evaluate_arrays(
            spec.model,
            spec.loss,
            spec.metrics,
            spec.eval_batch_size,
            new.params,
            new.state,
            *val,
        )
        out.update({f"val_{name}": value for name, value in val_logs.items()})
    return new, out


def _tracked_scan(body_of, ts, inputs, every: int):
    """Returns ``lax.scan`` over the steps, measuring the profiler every ``every``.

    The steps run in groups of ``every``: ``every − 1`` plain steps (a scan),
    then one step that also measures the profiler's quantities; the steps left
    over after the last whole group run plain. Measuring reads the gradients
    and updates a second time, which in every step costs about a third of a
    step on a CPU; one step in ten keeps the overhead to a few percent. The
    loss and metric logs of all steps come back in step order; the profiler's
    only for the measured steps.
    """
    n = inputs[0].shape[0]
    every = max(1, min(every, n))
    groups = n // every
    head = jax.tree_util.tree_map(
        lambda a: a[: groups * every].reshape(groups, every, *a.shape[1:]), inputs
    )
    tail = jax.tree_util.tree_map(lambda a: a[groups * every :], inputs)
    plain, tracked = body_of(False), body_of(True)

    def group(carry, chunk):
        first = jax.tree_util.tree_map(lambda a: a[:-1], chunk)
        last = jax.tree_util.tree_map(lambda a: a[-1], chunk)
        carry, plain_logs = jax.lax.scan(plain, carry, first)
        carry, tracked_logs = tracked(carry, last)
        return carry, (plain_logs, tracked_logs)

    ts, (plain_logs, tracked_logs) = jax.lax.scan(group, ts, head)
    ts, tail_logs = jax.lax.scan(plain, ts, tail)
    logs = {}
    for name, values in tracked_logs.items():
        if name in plain_logs:  # loss, weight, metrics: every step, in order
            per_group = jnp.concatenate([plain_logs[name], values[:, None]], axis=1)
            logs[name] = jnp.concatenate([per_group.reshape(-1), tail_logs[name]])
        else:  # the profiler's: the measured steps
            logs[name] = values
    return ts, logs


compiled_epoch = jax.jit(run_epoch, static_argnums=0, donate_argnums=1)
