"""The compiled epoch: shuffle, ``lax.scan`` over the steps, guard, validate.

An epoch is three pure functions: :func:`plan` draws its order of batches and
its step keys, :func:`run_steps` scans the train step over some of them, and
:func:`finish` combines the steps' logs into the epoch's values, applies the
NaN guard and evaluates the validation data. :func:`run_epoch` is the three in
ONE compiled call (the default); with ``steps_per_call=k`` the loop calls them
separately, ``k`` steps per call, on the same keys and order, so the results
are the same. For ``fit_many`` each is ``jax.vmap``-ed over a leading model
axis of the train state, the keys and the hyper-parameters
(:data:`MODEL_AXES`), the data staying unbatched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from annjax import losses as _losses
from annjax import metrics as _metrics
from annjax import optim as _optim
from annjax._types import Array, Key, Layer
from annjax.data.batching import epoch_batches
from annjax.training import mesh as _mesh
from annjax.training.prediction import evaluate_arrays
from annjax.training.step import (
    train_step_with_stats,
    weighted_mean,
)
from annjax.training.types import TrainState

__all__ = ["EpochSpec", "run_epoch"]


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


class Plan(NamedTuple):
    """One epoch's batches: example indices and weights (steps, B), step keys."""

    idx: Array
    weights: Array
    keys: Key


def plan(spec: EpochSpec, key: Key, epoch, n: int) -> Plan:
    """Returns the epoch's order of batches and one key per step.

    The epoch's key is ``fold_in(key, epoch)`` (``epoch`` is traced, so every
    epoch shares the compiled call); from it a fresh permutation is drawn.
    """
    perm_key, step_key = jax.random.split(jax.random.fold_in(key, epoch))
    idx, weights = epoch_batches(perm_key, n, spec.batch_size)
    return Plan(idx, weights, jax.random.split(step_key, idx.shape[0]))


def run_steps(
    spec: EpochSpec, ts: TrainState, hyper, x, y, steps: Plan, track=None, unroll=False
):
    """Returns ``(train_state, logs)`` after the train step on each planned batch.

    ``hyper`` holds the dynamic hyper-parameters (``"l1"``, ``"l2"`` when
    present); ``logs`` are stacked per step (the profiler's only for the
    measured steps, see :func:`_tracked_scan`). ``track`` is None for a
    whole epoch, else ``(every, first)`` for a part of one (static). On a
    mesh each batch is split along its batch axis over ``"data"``.

    ``unroll`` (static) unrolls the steps instead of looping over them:
    XLA:CPU runs a convolution inside a loop many times slower than outside
    one (see :func:`_scan`), so ``steps_per_call=k`` runs its k steps
    unrolled.
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
        )

        def body(carry, inputs):
            i, w, k = inputs
            return step(carry, _mesh.constrain_batch((x[i], y[i], w), spec.mesh), k)

        return body

    if not spec.track_gradients:
        ts, logs = _scan(body_of(False), ts, tuple(steps), unroll)
    else:
        every, first = (spec.track_every, None) if track is None else track
        ts, logs = _tracked_scan(body_of, ts, tuple(steps), every, first, unroll)
    i, w = steps.idx[-1], steps.weights[-1]
    last = _mesh.constrain_batch((x[i], y[i], w), spec.mesh)
    logs["loss_after"] = _loss_after(spec, ts, *last)[None]
    return ts, logs


def _loss_after(spec: EpochSpec, ts: TrainState, x, y, w) -> Array:
    """Returns the loss of the params after the last update on the last batch.

    Each step's loss is measured before its update, so only this shows that
    the last update overflowed into params that are finite but give a
    non-finite loss; the NaN guard reads it (one forward pass per call).
    """
    pred, _ = spec.model.apply(ts.params, ts.state, x, train=False)
    return weighted_mean(_losses.get(spec.loss)(y, pred, reduction="none"), w)


def _all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


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
        s = _metrics.streaming(name)
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


def finish(spec: EpochSpec, new: TrainState, old: TrainState, hyper, logs, n, val):
    """Returns ``(train_state, out)``: the epoch's values, guarded and validated.

    The NaN guard: when the epoch's loss, or any parameter or state value
    after its last step, or the loss of those params on the last batch, is
    not finite (or ``hyper["active"]`` is False, a
    model that has stopped), the incoming state ``old`` is kept. ``out``
    holds ``finite`` (the guard's verdict), ``first_non_finite_step``, the
    injected learning rate as ``lr`` (see :func:`annjax.optim.learning_rate`)
    and, with ``val``, every ``val_`` value, evaluated in the same call.
    """
    out = _aggregate(spec, logs, n)
    finite = (
        jnp.isfinite(out["loss"])
        & _all_finite((new.params, new.state))
        & jnp.all(jnp.isfinite(logs["loss_after"]))
    )
    steps_finite = jnp.isfinite(logs["loss"])
    out["finite"] = finite
    out["first_non_finite_step"] = jnp.where(
        jnp.all(steps_finite), -1, jnp.argmin(steps_finite)
    ).astype(jnp.int32)
    keep = finite & hyper["active"]
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, old)
    lr = _optim.learning_rate(new.opt_state)
    if lr is not None:
        out["lr"] = jnp.asarray(lr, jnp.float32)
    if val is not None:
        val_logs = evaluate_arrays(
            spec.model,
            spec.loss,
            spec.metrics,
            spec.eval_batch_size,
            new.params,
            new.state,
            *val,
            mesh=spec.mesh,
        )
        out.update({f"val_{name}": value for name, value in val_logs.items()})
    return new, out


def run_epoch(spec: EpochSpec, ts: TrainState, key: Key, epoch, hyper, x, y, val):
    """Returns ``(train_state, logs)`` after one whole epoch; ONE compiled call."""
    steps = plan(spec, key, epoch, x.shape[0])
    new, logs = run_steps(spec, ts, hyper, x, y, steps)
    return finish(spec, new, ts, hyper, logs, x.shape[0], val)


def _scan(f, carry, xs, unroll: bool):
    """Returns ``jax.lax.scan(f, carry, xs)``; with ``unroll`` as straight code.

    Unrolled, no while loop is left: ``lax.scan(unroll=True)`` of ONE step
    still emits one, and XLA:CPU runs a convolution's gradient inside a loop
    about 30× slower than outside (``benchmarks/conv_steps.py``).
    """
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if not unroll or n == 0:
        return jax.lax.scan(f, carry, xs)
    ys = []
    for i in range(n):
        carry, y = f(carry, jax.tree_util.tree_map(lambda a, i=i: a[i], xs))
        ys.append(y)
    return carry, jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ys)


def _tracked_scan(body_of, ts, inputs, every: int, first=None, unroll=False):
    """Returns ``lax.scan`` over the steps, measuring the profiler every ``every``.

    The steps run in groups of ``every``: ``every − 1`` plain steps (a scan),
    then one step that also measures the profiler's quantities; the steps left
    over after the last whole group run plain. Measuring reads the gradients
    and updates a second time, which in every step costs about a third of a
    step on a CPU; one step in ten keeps the overhead to a few percent. The
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
        ts, logs = _tracked_scan(body_of, ts, rest, every, every - 1, unroll)
        one = jax.tree_util.tree_map(lambda a: a[None], lead_tracked)
        return ts, _in_order(lead_plain, one, logs, True)
    groups = n // every
    head = jax.tree_util.tree_map(
        lambda a: a[: groups * every].reshape(groups, every, *a.shape[1:]), inputs
    )
    tail = jax.tree_util.tree_map(lambda a: a[groups * every :], inputs)
    ts, (plain_logs, tracked_logs) = _scan(
        lambda carry, chunk: _group(body_of, carry, chunk, unroll), ts, head, unroll
    )
    ts, tail_logs = _scan(body_of(False), ts, tail, unroll)
    return ts, _in_order(plain_logs, tracked_logs, tail_logs, False)


def _group(body_of, carry, chunk, unroll=False):
    """Returns ``(carry, (plain, tracked logs))``: plain steps, one measured."""
    first = jax.tree_util.tree_map(lambda a: a[:-1], chunk)
    last = jax.tree_util.tree_map(lambda a: a[-1], chunk)
    carry, plain_logs = _scan(body_of(False), carry, first, unroll)
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


def part_tracking(spec: EpochSpec, start: int, end: int, total: int):
    """Returns ``(spec, track)`` for the epoch's steps ``start:end`` of ``total``.

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


# ---------------------------------------------------------- compiled forms

#: Which arguments of each epoch function carry the model axis under
#: ``fit_many``'s ``jax.vmap`` (None: shared by every model). The whole
#: ``hyper`` dict is one entry, so a new sweepable hyper-parameter is only a
#: new key in it.
MODEL_AXES = {
    "run_epoch": (None, 0, 0, None, 0, None, None, None),
    "plan": (None, 0, None, None),
    "run_steps": (None, 0, 0, None, None, 0, None, None),
    "finish": (None, 0, 0, 0, 0, None, None),
}

_FUNCTIONS = {
    "run_epoch": run_epoch,
    "plan": plan,
    "run_steps": run_steps,
    "finish": finish,
}
_STATIC = {
    "run_epoch": (0,),
    "plan": (0, 3),
    "run_steps": (0, 6, 7),
    "finish": (0, 5),
}
# finish returns one train state: donating both it and the guard's fallback
# leaves one set of buffers unusable (and a warning each compilation)
_DONATE = {"run_epoch": (1,), "plan": (), "run_steps": (1,), "finish": (1,)}


def _compile(name: str, many: bool) -> Callable:
    fn = _FUNCTIONS[name]
    if many:  # static arguments pass through vmap with axis None
        fn = jax.vmap(fn, in_axes=MODEL_AXES[name])
    return jax.jit(fn, static_argnums=_STATIC[name], donate_argnums=_DONATE[name])


COMPILED = {
    (name, many): _compile(name, many) for name in _FUNCTIONS for many in (False, True)
}
"""The jitted epoch functions: ``COMPILED[name, many]``."""
