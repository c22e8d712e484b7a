"""Atomic checkpoints of a ``FitResult`` with ``flax.serialization``.

``save`` writes to a temporary file in the target's folder, flushes and
fsyncs it, then renames it over the target (``os.replace`` is atomic on POSIX
and Windows), so a crash mid-save leaves the previous checkpoint intact.

Examples:
  >>> result = ann.fit(model, (X, y), epochs=5, checkpoint="run.ckpt")
  >>> more = ann.fit(model, (X, y), epochs=5, resume="run.ckpt")  # epochs 5–9
  >>> ann.load("run.ckpt").history["loss"]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from annjax.steps import TrainState

__all__ = ["load", "restore_train_state", "save"]

_FORMAT = 1


def _host(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def save(path: str | os.PathLike, result) -> Path:
    """Returns the path after writing ``result`` (a FitResult) there atomically.

    Raises:
      TypeError: if ``result`` is not a FitResult.
    """
    from annjax.train import FitResult

    if not isinstance(result, FitResult):
        raise TypeError(f"save: expected a FitResult, got {type(result).__name__}.")
    path = Path(path)
    ts = result.train_state
    payload = {
        "format": _FORMAT,
        "params": _host(result.params),
        "state": _host(result.state),
        "history": {k: np.asarray(v) for k, v in result.history.items()},
        "best_epoch": int(result.best_epoch),
        "stop_reason": result.stop_reason,
        "epochs": int(result.epochs),
        "train_state": None
        if ts is None
        else {
            "params": _host(ts.params),
            "state": _host(ts.state),
            "opt_state": _host(serialization.to_state_dict(ts.opt_state)),
            "step": int(ts.step),
        },
    }
    data = serialization.msgpack_serialize(payload)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dir_fd = os.open(folder, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _device(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)


def load(path: str | os.PathLike):
    """Returns the FitResult saved at ``path``.

    ``train_state.opt_state`` comes back as a raw state dict: its optax
    structure is restored by :func:`restore_train_state` (``fit(resume=…)``
    does it) against the optimizer's fresh state.

    Raises:
      FileNotFoundError: if there is no file. ValueError: if it is not an
        annjax checkpoint.
    """
    from annjax.train import FitResult

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load: no checkpoint at {str(path)!r}.")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except Exception as exc:
        raise ValueError(f"load: {str(path)!r} is not an annjax checkpoint.") from exc
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(
            f"load: expected an annjax checkpoint (format {_FORMAT}) at "
            f"{str(path)!r}, got something else."
        )
    raw = payload["train_state"]
    ts = None
    if raw is not None:
        ts = TrainState(
            _device(raw["params"]),
            _device(raw["state"]),
            raw["opt_state"],
            jnp.asarray(raw["step"], jnp.int32),
        )
    return FitResult(
        _device(payload["params"]),
        _device(payload["state"]),
        {k: np.asarray(v) for k, v in payload["history"].items()},
        int(payload["best_epoch"]),
        str(payload["stop_reason"]),
        ts,
        int(payload["epochs"]),
    )


def restore_train_state(saved: TrainState | None, fresh: TrainState) -> TrainState:
    """Returns ``saved`` with its optimizer state in the structure of ``fresh``'s.

    Raises:
      ValueError: if the checkpoint has no train state, or its params do not
        match the model's (another architecture), or its optimizer state does
        not match the optimizer's (another optimizer).
    """
    if saved is None:
        raise ValueError("resume: the checkpoint holds no train state to resume from.")
    want = jax.tree_util.tree_map(jnp.shape, fresh.params)
    got = jax.tree_util.tree_map(jnp.shape, saved.params)
    if want != got:
        raise ValueError(
            "resume: expected a checkpoint of the same model, got params of "
            f"another structure ({got} instead of {want})."
        )
    try:
        opt_state = serialization.from_state_dict(fresh.opt_state, saved.opt_state)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            "resume: expected a checkpoint written with the same optimizer, got "
            f"an optimizer state of another structure ({exc}). Resume with the "
            "optimizer of the first run."
        ) from exc
    opt_state = _device(opt_state)
    return TrainState(saved.params, saved.state, opt_state, saved.step)
