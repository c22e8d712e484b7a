"""How an epoch's steps run: one loop, or unrolled, and the profiler's steps.

:func:`scan` is ``lax.scan`` or the same steps as straight code (a part of an
epoch under ``steps_per_call``); :func:`tracked_scan` measures the
profiler's quantities in one step out of ``every``, the same steps whether
the epoch runs in one call or in parts (:func:`part_tracking`); the parts'
logs join with :func:`concat_logs`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["concat_logs", "part_tracking", "scan", "tracked_scan"]


def scan(f, carry, xs, unroll: bool):
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


def tracked_scan(body_of, ts, inputs, every: int, first=None, unroll=False):
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
