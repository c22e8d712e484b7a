"""The compiled epoch: shuffle, ``lax.scan`` over the steps, check, validate.

An epoch is three pure functions: :func:`plan` draws its order of batches and
its step keys, :func:`run_steps` scans the train step over some of them, and
:func:`finish` combines the steps' logs into the epoch's values, gives the
NaN guard's verdict (the loop applies it) and evaluates the validation
data. :func:`run_epoch` is the three in ONE compiled call (the default); with
``steps_per_call=k`` the loop calls them separately, ``k`` steps per call, on
the same keys and order, so the results are the same. For ``fit_many`` each
runs over a leading model axis of the train state, the keys and the
hyper-parameters (:data:`MODEL_AXES`), the data staying unbatched: vmapped,
unrolled or mapped (:mod:`.vectorize`).
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from annjax import hyperparams as _hyperparams
from annjax import losses as _losses
from annjax import metrics as _metrics
from annjax import optim as _optim
from annjax._types import Array, Key, Layer
from annjax.curvature import hvp as _curvature
from annjax.data.batching import batches_of, num_batches
from annjax.training import mesh as _mesh
from annjax.training import vectorize as _vectorize
from annjax.training.measure import frozen_layers
from annjax.training.step import (
    evaluate_arrays,
    train_step_with_stats,
    weighted_mean,
)
from annjax.training.types import TrainState

__all__ = [
    "EpochSpec",
    "concat_logs",
    "part_tracking",
    "run_epoch",
    "scan",
    "tracked_scan",
]


#: How many training examples (the first ones) ``finish`` evaluates in
#: evaluation mode for a model with state. 256: an accuracy to ±0.03, far
#: finer than the gaps ``diagnose`` looks for, for at most 256 forward passes
#: per epoch.
TRAIN_EVAL_EXAMPLES = 256


# ---------------------------------------------- how the steps run
def scan(f, carry, xs, unroll: bool):
    """Returns ``jax.lax.scan(f, carry, xs)``; with ``unroll`` as straight code.

    Unrolled, no while loop is left: ``lax.scan(unroll=True)`` of ONE step
    still emits one, and XLA:CPU runs a convolution's gradient inside a loop
    many times slower than outside (see ``benchmarks/README.md``).
    """
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if not unroll or n == 0:
        return jax.lax.scan(f, carry, xs)
    ys = []
    for i in range(n):
        carry, y = f(carry, jax.tree_util.tree_map(lambda a, i=i: a[i], xs))
        ys.append(y)
    return carry, jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ys)


def tracked_scan(body_of, ts, inputs, every: int, first=None, unroll=False):
    """Returns ``lax.scan`` over the steps, measuring the profiler every ``every``.

    The steps run in groups of ``every``: ``every − 1`` plain steps (a scan),
    then one step that also measures the profiler's quantities; the steps left
    over after the last whole group run plain. Measuring reads the gradients
    and updates a second time, a fraction of a step; measuring one step in
    ``every`` divides that cost by ``every`` (see ``benchmarks/README.md``). The
    loss and metric logs of all steps come back in step order; the profiler's
    only for the measured steps.

    So the epoch's step ``s`` is measured when ``(s + 1) % every == 0``
    (``every`` at most the epoch's steps). A part of an epoch
    (``steps_per_call``) gives ``first``, the index in ``inputs`` of its
    first measured step: the steps up to it form a shorter first group, and
    the same steps are measured as in one call.
    """
    n = inputs[0].shape[0]
    if first is None:
        every = max(1, min(every, n))
    elif first < every - 1:
        lead, rest = (
            jax.tree_util.tree_map(lambda a, s=s: a[s], inputs)
            for s in (slice(None, first + 1), slice(first + 1, None))
        )
        ts, (lead_plain, lead_tracked) = _group(body_of, ts, lead, unroll)
        ts, logs = tracked_scan(body_of, ts, rest, every, every - 1, unroll)
        one = jax.tree_util.tree_map(lambda a: a[None], lead_tracked)
        return ts, _in_order(lead_plain, one, logs, True)
    groups = n // every
    head = jax.tree_util.tree_map(
        lambda a: a[: groups * every].reshape(groups, every, *a.shape[1:]), inputs
    )
    tail = jax.tree_util.tree_map(lambda a: a[groups * every :], inputs)
    ts, (plain_logs, tracked_logs) = scan(
        lambda carry, chunk: _group(body_of, carry, chunk, unroll), ts, head, unroll
    )
    ts, tail_logs = scan(body_of(False), ts, tail, unroll)
    return ts, _in_order(plain_logs, tracked_logs, tail_logs, False)


def _group(body_of, carry, chunk, unroll=False):
    """Returns ``(carry, (plain, tracked logs))``: plain steps, one measured."""
    first = jax.tree_util.tree_map(lambda a: a[:-1], chunk)
    last = jax.tree_util.tree_map(lambda a: a[-1], chunk)
    carry, plain_logs = scan(body_of(False), carry, first, unroll)
    carry, tracked_logs = body_of(True)(carry, last)
    return carry, (plain_logs, tracked_logs)


def _in_order(plain_logs, tracked_logs, tail_logs, lead: bool) -> dict:
    """Returns the logs of grouped steps in step order.

    ``plain_logs`` and ``tracked_logs`` are per group (groups, every − 1) and
    (groups,), or with ``lead`` one short first group followed by the logs
    ``tail_logs`` of the steps after it (already in order).
    """

    def every_step(plain, tracked, tail):
        if lead:
            return jnp.concatenate([plain, tracked, tail])
        per_group = jnp.concatenate([plain, tracked[:, None]], axis=1)
        return jnp.concatenate([per_group.reshape(-1, *per_group.shape[2:]), tail])

    logs = {}
    for name, values in tracked_logs.items():
        if name in plain_logs:  # loss, weight, metrics: every step, in order
            logs[name] = jax.tree_util.tree_map(
                every_step, plain_logs[name], values, tail_logs[name]
            )
        elif lead:  # the profiler's: the measured steps
            logs[name] = jnp.concatenate([values, tail_logs[name]])
        else:
            logs[name] = values
    return logs


def part_tracking(spec, start: int, end: int, total: int):
    """Returns ``(spec, track)`` for the epoch's steps ``start:end`` of ``total``.

    ``spec`` is the epoch's :class:`annjax.training.epoch.EpochSpec`.

    The profiler measures the epoch's step ``s`` when ``(s + 1) % every ==
    0``; ``track`` tells :func:`run_steps` which of this part's steps those
    are (canonical, so parts alike share one compiled call); a part without
    one runs the plain step.
    """
    if not spec.track_gradients:
        return spec, None
    every = max(1, min(spec.track_every, total))
    first, length = (every - 1 - start) % every, end - start
    if first >= length:
        return spec._replace(track_gradients=False), None
    return spec, (every if first + every < length else length, first)


def concat_logs(parts: list[dict], axis: int) -> dict:
    """Returns per-step logs of consecutive calls joined along the step axis.

    Each entry joins the parts that have it (the profiler's: those measured).
    """
    if len(parts) == 1:
        return parts[0]
    names = dict.fromkeys(name for part in parts for name in part)
    return {
        name: jax.tree_util.tree_map(
            lambda *a: jnp.concatenate(a, axis=axis),
            *(part[name] for part in parts if name in part),
        )
        for name in names
    }


# ---------------------------------------------- the epoch


class EpochSpec(NamedTuple):
    """The static (hashable) description of a compiled epoch; equal specs share
    one compiled function, so a second ``fit`` on the same model, optimizer and
    shapes compiles nothing."""

    model: Layer
    loss: str | Callable
    optimizer: optax.GradientTransformation
    metrics: tuple[str | Callable, ...]
    batch_size: int
    track_gradients: bool
    augment: Callable | None
    eval_batch_size: int
    track_every: int = 10
    log_steps: bool = False
    mesh: Any = None  # a jax.sharding.Mesh: batches split over its "data" axis
    track_sharpness: int = 0  # every this many epochs (0: never)
    frozen: tuple[str, ...] = ()  # paths of the params trainable= freezes
    validate_on: str = "params"  # or "ema": the moving average is validated


class Plan(NamedTuple):
    """One epoch's batches: example indices and weights (steps, B), step keys."""

    idx: Array
    weights: Array
    keys: Key


def plan(spec: EpochSpec, key: Key, epoch, n: int, hyper=None) -> Plan:
    """Returns the epoch's order of batches and one key per step.

    The epoch's key is ``fold_in(key, epoch)`` (``epoch`` is traced, so every
    epoch shares the compiled call); from it a fresh permutation is drawn
    (:func:`plan_batches`; it depends on the spec's batch size alone), and
    the example weights of ``hyper["sample_weight"]`` join the batches'.
    """
    weights = None if hyper is None else hyper.get("sample_weight")
    return plan_batches(spec.batch_size, key, epoch, n, weights)


def plan_batches(batch_size: int, key: Key, epoch, n: int, weights=None) -> Plan:
    """Returns :func:`plan` for ``batch_size``.

    With example ``weights`` (n,), the examples of weight 0 sort after all
    the others (the top bit of their word set), so the weighted ones fill
    the first batches in random order and the batches of weight 0 at the end
    are skipped by the step: a model weighted on m examples takes
    ⌈m / batch_size⌉ steps, as a ``fit`` on those m would. Each batch's
    weights are the padding's times the examples'.

    ONE draw of random bits from ``fold_in(key, epoch)`` gives both the
    order and the step keys (:func:`draw_batches`): the order sorts its
    first n words (a uniform permutation up to ties of 32-bit words), the
    step keys are the words after them. One threefry hash, not the five of
    ``jax.random.permutation`` plus ``split``, each inlined into the
    compiled epoch (the compile times are in ``benchmarks/README.md``).
    """
    order, keys = draw_batches(batch_size, key, epoch, n, weights)
    idx, pad = batches_of(jnp.argsort(order), batch_size)
    if weights is not None:
        pad = pad * weights[idx].astype(pad.dtype)
    return Plan(idx, pad, keys)


def draw(spec: EpochSpec, key: Key, epoch, n: int, hyper=None) -> tuple[Array, Key]:
    """Returns ``(words, keys)``: what :func:`plan` sorts and its step keys.

    :func:`plan`'s order of examples is the stable argsort of ``words``
    (n,) uint32 (``jnp.argsort`` is stable), its step keys are ``keys``. A
    streamed epoch draws these on the device and sorts on the host
    (:func:`host_order`): the same order with less memory than the
    device's sort (see ``docs/streaming.md``), or no sort at all for an
    iterable, which keeps its own order.
    """
    weights = None if hyper is None else hyper.get("sample_weight")
    return draw_batches(spec.batch_size, key, epoch, n, weights)


def draw_batches(
    batch_size: int, key: Key, epoch, n: int, weights=None
) -> tuple[Array, Key]:
    """Returns :func:`draw` for ``batch_size`` (see :func:`plan_batches`)."""
    k = num_batches(n, batch_size)
    words = jax.random.key_data(key).shape[-1]  # 2 for threefry keys
    bits = jax.random.bits(jax.random.fold_in(key, epoch), (n + k * words,), jnp.uint32)
    order = bits[:n]
    if weights is not None:
        last = jnp.where(weights > 0, jnp.uint32(0), jnp.uint32(1 << 31))
        order = (order >> 1) | last
    impl = jax.random.key_impl(key)
    keys = jax.random.wrap_key_data(bits[n:].reshape(k, words), impl=impl)
    return order, keys


def host_order(words: np.ndarray, batch_size: int) -> np.ndarray:
    """Returns :func:`plan`'s example indices (int32, ``(..., steps, B)``)
    for its :func:`draw`'s ``words`` (``(..., n)``, a leading model axis
    for ``fit_many``), computed in NumPy on the host.

    NumPy's stable argsort equals ``jnp.argsort``'s (stable: ties in
    increasing index, a unique answer), and the batches wrap around to the
    order's start as :func:`annjax.data.batching.batches_of` pads them, so
    the indices are ``plan``'s, bit for bit. While it sorts it holds the
    words, one int64 argsort and timsort's buffer (at most 16 bytes per
    example), then keeps the int32 indices: less than XLA:CPU's sort of the
    device path (``docs/streaming.md``), whose order it must not change.

    Examples:
      >>> import jax, numpy as np
      >>> from annjax.training.epoch import draw_batches, host_order, plan_batches
      >>> key = jax.random.key(0)
      >>> words, _ = draw_batches(4, key, 0, 10)
      >>> idx = host_order(np.asarray(words), 4)
      >>> idx.shape, bool((idx == plan_batches(4, key, 0, 10).idx).all())
      ((3, 4), True)
    """
    words = np.asarray(words)
    *lead, n = words.shape
    k = num_batches(n, batch_size)
    idx = np.empty((*lead, k * batch_size), np.int32)
    for m in np.ndindex(*lead):  # one model at a time: one argsort alive
        order = np.argsort(words[m], kind="stable")
        idx[m][:n] = order
        idx[m][n:] = order[np.arange(n, k * batch_size) % n]  # the padding
        del order
    return idx.reshape(*lead, k, batch_size)


def run_steps(
    spec: EpochSpec, ts: TrainState, hyper, x, y, steps: Plan, track=None, unroll=False
):
    """Returns ``(train_state, logs)`` after the train step on each planned batch.

    ``hyper`` holds the dynamic hyper-parameters (``"l1"``, ``"l2"``,
    ``"lr_scale"`` of a swept schedule when present, and under ``"named"``
    the values of the model's ``ann.hyper`` arguments); ``logs`` are stacked
    per step (the profiler's only for the measured steps, see
    :func:`tracked_scan`). ``track``
    is None for a whole epoch, else ``(every, first)`` for a part of one
    (static). On a mesh each batch is split along its batch axis over
    ``"data"``. ``unroll`` (static) runs the steps as straight code, not a
    loop: XLA:CPU runs a convolution inside a loop many times slower (see
    :func:`scan`), so ``steps_per_call=k`` unrolls.
    """

    def body_of(track: bool):
        step = train_step_with_stats(
            spec.model,
            spec.loss,
            spec.optimizer,
            metrics=spec.metrics,
            l1=hyper.get("l1"),
            l2=hyper.get("l2"),
            track_gradients=track,
            augment=spec.augment,
            frozen=spec.frozen,
            ema=hyper.get("ema"),
            skip_empty="sample_weight" in hyper,
            lr_scale=hyper.get("lr_scale"),
        )

        def body(carry, inputs):
            i, w, k = inputs
            return step(carry, _mesh.constrain_batch((x[i], y[i], w), spec.mesh), k)

        return body

    # the model's and loss's ann.hyper values, bound while the steps trace
    with _hyperparams.bind(hyper.get("named", {})):
        if not spec.track_gradients:
            ts, logs = scan(body_of(False), ts, tuple(steps), unroll)
        else:
            every, first = (spec.track_every, None) if track is None else track
            ts, logs = tracked_scan(body_of, ts, tuple(steps), every, first, unroll)
    return ts, logs


def _loss_after(spec: EpochSpec, ts: TrainState, x, y, w) -> Array:
    """Returns the loss of the params after the last update on the last batch.

    Each step's loss is measured before its update, so only this shows that
    the last update overflowed into params that are finite but give a
    non-finite loss; the NaN guard reads it (one forward pass per epoch).
    """
    pred, _ = spec.model.apply(ts.params, ts.state, x, train=False)
    return weighted_mean(_losses.get(spec.loss)(y, pred, reduction="none"), w)


def _all_finite(tree) -> Array:
    """Returns whether every value of ``tree`` is finite (integers always are).

    The float leaves are joined into one vector per dtype first: one check
    to compile instead of one per leaf.
    """
    groups: dict[Any, list[Array]] = {}
    for a in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(a.dtype, jnp.inexact):
            groups.setdefault(a.dtype, []).append(jnp.ravel(a))
    checks = [jnp.all(jnp.isfinite(jnp.concatenate(g))) for g in groups.values()]
    return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)


def _aggregate(spec: EpochSpec, logs: dict[str, Any], n: int) -> dict[str, Array]:
    """Returns the epoch's values from the per-step logs of all its steps.

    The loss is the mean weighted by each batch's real examples; a registered
    metric is the finish of its statistics summed over the steps (the metric
    of the epoch's predictions, padding excluded); a custom metric sees the
    epoch's first ``n`` predictions (the padding comes last). Profiler
    measurements: the mean over the measured steps under their own name and
    the maximum under ``<kind>_max/<layer>``.
    """
    out = {"loss": weighted_mean(logs["loss"], logs["weight"])}
    for metric in spec.metrics:
        name = _metrics.name_of(metric)
        s = _metrics.streaming_of(metric)
        if s is not None:
            out[name] = s.finish(s.reduce(logs["stats"][name]))
        else:
            y, pred = (
                logs[k].reshape(-1, *logs[k].shape[2:])[:n] for k in ("y", "pred")
            )
            out[name] = jnp.asarray(_metrics.get(metric)(y, pred), jnp.float32)
    for name, values in logs.items():
        if "/" in name:
            kind, layer = name.split("/", 1)
            out[name] = jnp.mean(values)
            out[f"{kind}_max/{layer}"] = jnp.max(values)
    if spec.log_steps:
        out["step_loss"] = logs["loss"]
    return out


def finish(
    spec: EpochSpec,
    ts: TrainState,
    logs,
    data,
    val,
    hyper=None,
    epoch=0,
    head=None,
    n=None,
) -> dict[str, Array]:
    """Returns the epoch's values: aggregated, the NaN guard's verdict, validated.

    ``ts`` is the train state after the epoch's last step; ``data`` is
    ``(x, y, plan)``: the training data and the epoch's plan. ``out["finite"]``
    is the NaN guard's verdict: False when the epoch's loss, or any parameter
    or state value after its last step, or the loss of those params on the
    last batch is not finite (each step's loss is measured before its update,
    so only this sees a last update that overflowed). The loop applies it:
    it keeps the incoming state of a model whose epoch was not finite (and
    of one that has stopped), outside the compiled call, so the call holds
    no per-leaf selection (26 of the 154 kernels of a 64-64-64-10 MLP's
    epoch).
    ``out`` also holds ``first_non_finite_step``, the injected learning rate
    as ``lr`` (see :func:`annjax.optim.learning_rate`) and, with ``val``,
    every ``val_`` value, evaluated in the same call.

    For a model with state (batch norm's running statistics), the first
    :data:`TRAIN_EVAL_EXAMPLES` training examples (at most
    ``eval_batch_size``) are evaluated in evaluation mode too, as
    ``train_eval_loss`` (and ``train_eval_<name>`` per metric), against which
    ``diagnose`` reads the train/eval-mode gap. With ``validate_on="ema"``
    the ``val_`` values are those of the moving average ``ts.ema``. With
    the profiler on, each layer that ``trainable=`` froze whole is marked
    ``frozen/<layer>`` (1.0). A stateless model evaluates
    the same in both modes (dropout aside), so it skips this and costs
    nothing.

    With ``spec.track_sharpness = N``, ``out["sharpness"]`` is the top
    Hessian eigenvalue at epochs ``0, N, 2N, …`` (NaN at the others; see
    :func:`_sharpness`) and ``out["sharpness_limit"]`` plain gradient
    descent's limit 2/η when the optimizer is plain gradient descent.
    A streamed epoch (:mod:`annjax.training.streamed`) passes as ``data``
    its last chunk with that chunk's plan, as ``head`` the first training
    examples ``(x, y)`` (those ``train_eval_*`` reads) and as ``n`` (static)
    the epoch's number of examples; by default both come from ``data``.
    """
    # the loss's ann.hyper values (label smoothing), bound as in run_steps
    with _hyperparams.bind({} if hyper is None else hyper.get("named", {})):
        return _finish(spec, ts, logs, data, val, hyper, epoch, head, n)


def _finish(spec, ts, logs, data, val, hyper, epoch, head, n) -> dict[str, Array]:
    """Returns :func:`finish`'s values (the hyper-parameters bound)."""
    x, y, steps = data
    out = _aggregate(spec, logs, x.shape[0] if n is None else n)
    i, w = steps.idx[-1], steps.weights[-1]
    out["finite"] = (
        jnp.isfinite(out["loss"])
        & _all_finite((ts.params, ts.state))
        & jnp.isfinite(
            _loss_after(spec, ts, *_mesh.constrain_batch((x[i], y[i], w), spec.mesh))
        )
    )
    steps_finite = jnp.isfinite(logs["loss"])
    out["first_non_finite_step"] = jnp.where(
        jnp.all(steps_finite), -1, jnp.argmin(steps_finite)
    ).astype(jnp.int32)
    lr = _optim.learning_rate(ts.opt_state)
    if lr is not None:
        out["lr"] = jnp.asarray(lr, jnp.float32)
    if spec.track_gradients:  # the profiler's mark: no update, no "vanishing"
        for layer in frozen_layers(ts.params, spec.frozen):
            out[f"frozen/{layer}"] = jnp.float32(1.0)
    val_weight = None if hyper is None else hyper.get("val_weight")
    hx, hy = (x, y) if head is None else head  # the data's first examples
    out.update(_evaluations(spec, ts, hx, hy, val, val_weight))
    if spec.track_sharpness:
        out.update(_sharpness(spec, ts, hx, hy, epoch))
    return out


def _sharpness(spec: EpochSpec, ts: TrainState, x, y, epoch) -> dict[str, Array]:
    """Returns the sharpness of the epoch's final params, and its limit 2/η.

    λ_max of the Hessian of the loss (evaluation-mode outputs, no penalty)
    on a fixed batch, the first ``batch_size`` training examples, by
    :func:`annjax.curvature.sharpness` (Lanczos, ``SHARPNESS_ITERATIONS``
    products, from ``jax.random.key(SHARPNESS_SEED)``), at epochs that are
    multiples of ``spec.track_sharpness``: a ``lax.cond`` on the (shared)
    epoch, so the other epochs pay nothing and record NaN.
    """
    b = min(spec.batch_size, x.shape[0])
    xb, yb = _mesh.constrain_batch((x[:b], y[:b]), spec.mesh)

    def measure():
        key = jax.random.key(_curvature.SHARPNESS_SEED)
        value = _curvature.sharpness(
            spec.model, spec.loss, ts.params, ts.state, xb, yb, key=key
        )
        return value.astype(jnp.float32)

    def skip():
        return jnp.float32(jnp.nan)

    out = {"sharpness": jax.lax.cond(epoch % spec.track_sharpness == 0, measure, skip)}
    limit = _curvature.stability_limit(ts.opt_state, ts.params)
    if limit is not None:
        out["sharpness_limit"] = jnp.asarray(limit, jnp.float32)
    return out


def _evaluations(
    spec: EpochSpec, ts: TrainState, x, y, val, val_weight=None
) -> dict[str, Array]:
    """Returns the evaluation-mode values of an epoch's end: ``val_*`` on the
    validation data (weighted by ``val_weight``, the models' own
    validation sets), ``train_eval_*`` on a slice of the training data (models
    with state only)."""
    out = {}
    if val is not None:
        args = (spec.model, spec.loss, spec.metrics, spec.eval_batch_size)
        params = ts.ema if spec.validate_on == "ema" else ts.params
        logs = evaluate_arrays(
            *args, params, ts.state, *val, mesh=spec.mesh, w=val_weight
        )
        out.update({f"val_{name}": value for name, value in logs.items()})
    if jax.tree_util.tree_leaves(ts.state):
        m = min(TRAIN_EVAL_EXAMPLES, spec.eval_batch_size, x.shape[0])
        args = (spec.model, spec.loss, spec.metrics, m, ts.params, ts.state)
        logs = evaluate_arrays(*args, x[:m], y[:m], mesh=spec.mesh)
        out.update({f"train_eval_{name}": value for name, value in logs.items()})
    return out


def run_epoch(spec: EpochSpec, ts: TrainState, key: Key, epoch, hyper, x, y, val):
    """Returns ``(train_state, logs)`` after one whole epoch; ONE compiled call."""
    steps = plan(spec, key, epoch, x.shape[0], hyper)
    ts, logs = run_steps(spec, ts, hyper, x, y, steps)
    return ts, finish(spec, ts, logs, (x, y, steps), val, hyper, epoch)


# ---------------------------------------------------------- compiled forms

#: Which arguments of each epoch function carry the model axis under
#: ``fit_many``'s ``jax.vmap`` (None: shared by every model). The whole
#: ``hyper`` dict is one entry, so a new sweepable hyper-parameter is only a
#: new key in it.
MODEL_AXES = {
    "run_epoch": (None, 0, 0, None, 0, None, None, None),
    "plan": (None, 0, None, None, 0),
    "draw": (None, 0, None, None, 0),
    "run_steps": (None, 0, 0, None, None, 0, None, None),
    "finish": (None, 0, 0, (None, None, 0), None, 0, None, None, None),
}

_FUNCTIONS = {
    "run_epoch": run_epoch,
    "plan": plan,
    "draw": draw,
    "run_steps": run_steps,
    "finish": finish,
}
_STATIC = {
    "run_epoch": (0,),
    "plan": (0, 3),
    "draw": (0, 3),
    "run_steps": (0, 6, 7),
    "finish": (0, 8),
}
# run_epoch keeps its incoming state: the loop falls back on it when the NaN
# guard rejects the epoch (the call holds both states at its end either way)
_DONATE = {"run_epoch": (), "plan": (), "draw": (), "run_steps": (1,), "finish": ()}


def _compile(name: str, how: str | None, own: bool = False) -> Callable:
    """Returns the jitted epoch function ``name``, run over the models ``how``
    (None: one model; else a way of :mod:`.vectorize`); with ``own``, around
    a new function object, so that JAX's caches keyed weakly by the function
    (traces, lowerings, executables) go when the jitted function goes."""
    fn = _FUNCTIONS[name]
    if own:
        fn = functools.partial(fn)
    if how is not None:  # static arguments pass through with axis None
        fn = _vectorize.over_models(fn, MODEL_AXES[name], how)
    return jax.jit(fn, static_argnums=_STATIC[name], donate_argnums=_DONATE[name])


COMPILED = {
    (name, how): _compile(name, how)
    for name in _FUNCTIONS
    for how in (None, *_vectorize.IN_PROGRAM)
}
"""The jitted epoch functions: ``COMPILED[name, how]``, with the signatures
of :func:`run_epoch`, :func:`plan`, :func:`draw`, :func:`run_steps` and
:func:`finish`
(over :data:`MODEL_AXES`' model axis the way ``how`` says, None: one
model). :func:`compiled` picks the one for a spec."""


class Held:
    """A user's function (loss, metric, augmentation) held weakly by a spec.

    A compiled program keeps its static arguments, the :class:`EpochSpec`,
    for as long as it lives. Holding the user's function through a weak
    reference lets it be freed when the user drops it (a notebook cell run
    again makes a new loss function each time), and with it the programs
    compiled for it (:func:`compiled`). Equal while the function lives and
    is the same object; calls and attributes go to the function.

    Examples:
      >>> import gc
      >>> from annjax.training.epoch import Held
      >>> def double(x):
      ...     return 2 * x
      >>> h = Held.of(double)
      >>> h(3), h.__name__, h == Held.of(double)
      (6, 'double', True)
      >>> del double; _ = gc.collect()
      >>> h.alive()
      False
    """

    __slots__ = ("__weakref__", "_hash", "_ref")

    def __init__(self, ref: weakref.ref, key: int):
        self._ref, self._hash = ref, key

    @classmethod
    def of(cls, fn):
        """Returns ``fn`` held weakly, or ``fn`` itself where it cannot be
        (a built-in, a registered function, None)."""
        if fn is None or isinstance(fn, str | Held):
            return fn
        try:
            ref = weakref.WeakMethod(fn) if inspect.ismethod(fn) else weakref.ref(fn)
            key = hash(fn)
        except TypeError:  # not weakly referable, or not hashable
            return fn
        return cls(ref, key)

    def alive(self) -> bool:
        """Returns whether the function still exists."""
        return self._ref() is not None

    def on_release(self, callback: Callable[[], Any]) -> None:
        """Calls ``callback()`` once the function is freed."""
        fn = self._ref()
        if fn is not None:
            weakref.finalize(fn.__self__ if inspect.ismethod(fn) else fn, callback)

    @property
    def __wrapped__(self):  # inspect.signature follows it
        return self._ref()

    def __call__(self, *args, **kwargs):
        fn = self._ref()
        if fn is None:
            raise ReferenceError("annjax: the function of this run was freed.")
        return fn(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._ref(), name)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if not isinstance(other, Held):
            return NotImplemented
        fn = self._ref()
        return fn is not None and fn is other._ref()

    def __repr__(self) -> str:
        return f"Held({self._ref()!r})"


def held_spec(spec: EpochSpec) -> EpochSpec:
    """Returns ``spec`` with the user's own functions held weakly (:class:`Held`):
    a custom loss, custom metrics and the augmentation."""
    from annjax import losses as _l

    loss = spec.loss if _l.name_of(spec.loss) in _l.names() else Held.of(spec.loss)
    metrics = tuple(
        m if _metrics.registered_name(m) else Held.of(m) for m in spec.metrics
    )
    return spec._replace(loss=loss, metrics=metrics, augment=Held.of(spec.augment))


_OWNED: dict[EpochSpec, dict] = {}
_OWNED_LOCK = threading.Lock()


def compiled(name: str, how: str | None, spec: EpochSpec) -> Callable:
    """Returns the jitted epoch function ``name`` for ``spec``.

    A spec without user functions shares :data:`COMPILED`. One that holds
    some (:class:`Held`) gets jitted functions of its own, dropped with
    their compiled programs as soon as one of those user functions is
    freed, so that the programs never keep a user's function alive.
    """
    held = [f for f in (spec.loss, *spec.metrics, spec.augment) if isinstance(f, Held)]
    if not held:
        return COMPILED[name, how]
    with _OWNED_LOCK:  # fit_many's sequential models ask from several threads
        table = _OWNED.get(spec)
        if table is None:
            table = _OWNED[spec] = {}
            key = _SpecKey(spec)
            for f in held:
                f.on_release(key.drop)
        if (name, how) not in table:
            table[name, how] = _compile(name, how, own=True)
        return table[name, how]


class _SpecKey:
    """Drops a spec's own jitted functions from :data:`_OWNED`."""

    def __init__(self, spec: EpochSpec):
        self.spec = spec

    def drop(self) -> None:
        _OWNED.pop(self.spec, None)
