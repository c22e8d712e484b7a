"""Atomic, checksummed checkpoints of results, train states and pytrees.

``save`` writes to a temporary file in the target's folder, flushes and
fsyncs it, then renames it over the target (``os.replace`` is atomic on POSIX
and Windows), so a crash mid-save leaves the previous checkpoint intact. The
file is a ``flax.serialization`` msgpack holding the payload's bytes and
their SHA-256, so a flipped bit is an error on ``load``, never altered
weights.

Resume: what the checkpoint must hold is derived from the run record (the
history names its compiled epoch returns); the resuming call's
hyper-parameters win (:func:`resume`).

Examples:
  >>> import os, tempfile, numpy as np, annjax as ann
  >>> X = np.random.default_rng(0).normal(size=(32, 4)).astype("f4")
  >>> y = (X[:, 0] > 0).astype("i4")
  >>> path = os.path.join(tempfile.mkdtemp(), "run.ckpt")
  >>> model = ann.mlp([4, 2])
  >>> r = ann.fit(model, (X, y), epochs=2, checkpoint=path, progress=False)
  >>> more = ann.fit(model, (X, y), epochs=2, resume=path, checkpoint=path,
  ...               progress=False)
  >>> more.epochs, ann.load(path).history["loss"].shape  # epochs 2 and 3 added
  (4, (4,))
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from annjax import optim as _optim
from annjax.training import loop as _loop
from annjax.training import trees as _trees
from annjax.training.types import FitResult, ManyResult, TrainState

__all__ = ["data_state", "load", "restore_train_state", "save"]

_FORMAT = 2
_KINDS = ("FitResult", "ManyResult", "TrainState", "pytree")


def _host(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _device(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)


def _train_state_dict(ts: TrainState | None):
    """Returns every field of ``ts`` that is set, as host arrays (derived
    from ``TrainState``'s fields: a new one is saved without a change here)."""
    if ts is None:
        return None
    fields = ts._replace(opt_state=serialization.to_state_dict(ts.opt_state))
    return {k: _host(v) for k, v in fields._asdict().items() if v is not None}


def _body(obj) -> tuple[str, dict]:
    """Returns the kind of ``obj`` and its fields as plain msgpack-able data."""
    if isinstance(obj, FitResult | ManyResult):
        fields = obj._asdict()
        fields.pop("model", None)  # functions: the caller keeps the model
        fields["train_state"] = _train_state_dict(obj.train_state)
        for name in ("params", "state", "ema_params"):
            fields[name] = _host(fields[name])
        fields["history"] = {k: np.asarray(v) for k, v in obj.history.items()}
        return type(obj).__name__, {k: v for k, v in fields.items() if v is not None}
    if isinstance(obj, TrainState):
        return "TrainState", _train_state_dict(obj)
    tree = serialization.to_state_dict(obj)
    for leaf in jax.tree_util.tree_leaves(tree):
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic | int | float):
            raise TypeError(
                "save: expected a FitResult, a ManyResult, a TrainState or a "
                f"pytree of arrays, got a pytree with a leaf {leaf!r}."
            )
    return "pytree", {"tree": _host(tree)}


def save(path: str | os.PathLike, result: Any, *, data_state: Any = None) -> Path:
    """Returns the path after writing ``result`` there atomically.

    ``result`` is a :class:`FitResult`, a :class:`ManyResult`, a
    :class:`TrainState` or any pytree of arrays (params, say).
    ``data_state``: where a streamed source stands (a grain iterator's
    state, JSON-serialisable), read back by :func:`data_state`.
    """
    path = Path(path)
    kind, body = _body(result)
    if data_state is not None:
        body["data_state"] = json.dumps(data_state)
    return write(path, kind, body)


def data_state(path: str | os.PathLike) -> Any:
    """Returns the streamed source's state saved with the checkpoint at
    ``path``, or None when none was saved."""
    _, body = _read(Path(path))
    saved = body.get("data_state")
    return None if saved is None else json.loads(saved)


def write(path: Path, kind: str, body: dict, fmt: int = _FORMAT) -> Path:
    """Returns ``path`` after writing ``body`` there atomically, with its checksum."""
    data = serialization.msgpack_serialize(body)
    payload = {
        "format": fmt,
        "kind": kind,
        "sha256": hashlib.sha256(data).hexdigest(),
        "body": data,
    }
    _write_atomic(path, serialization.msgpack_serialize(payload))
    return path


def _open_mode() -> int:
    """Returns the mode ``open()`` gives a new file: 0o666 less the umask.

    Read from /proc on Linux; elsewhere reading it means setting it for a
    moment (to the strictest mask, so a file another thread makes then is
    private rather than open).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomic(path: Path, data: bytes) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0o600; open() obeys the umask
            os.fchmod(fd, _open_mode())
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


def _read(
    path: Path, kinds=_KINDS, fmt=_FORMAT, who="load", what=None
) -> tuple[str, dict]:
    """Returns the kind and fields stored at ``path``, checksum verified.

    ``kinds``, ``fmt``: what the caller reads (``load_exported`` reads its
    own kind of file in the same envelope); ``who`` and ``what`` name the
    caller and the file in errors.
    """
    what = what or (
        f"an annjax checkpoint (format {fmt}, written by ann.save or "
        "fit(checkpoint=...))"
    )
    if not path.is_file():
        raise FileNotFoundError(f"{who}: no file at {str(path)!r}.")
    not_ours = ValueError(f"{who}: expected {what} at {str(path)!r}, got another file.")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except Exception as exc:
        raise not_ours from exc
    if (
        not isinstance(payload, dict)
        or set(payload) != {"format", "kind", "sha256", "body"}
        or payload["kind"] not in kinds
    ):
        raise not_ours
    if payload["format"] != fmt:
        raise ValueError(
            f"{who}: {str(path)!r} is an annjax file of format "
            f"{payload['format']}; this version reads format {fmt}."
        )
    data = bytes(payload["body"])
    if hashlib.sha256(data).hexdigest() != payload["sha256"]:
        raise ValueError(
            f"{who}: {str(path)!r} is corrupted: its contents do not match the "
            "checksum written with them. Use an earlier copy."
        )
    return payload["kind"], serialization.msgpack_restore(data)


def _train_state(raw) -> TrainState | None:
    """Returns the TrainState saved as ``raw`` (its optimizer state raw)."""
    if raw is None:
        return None
    fields = {k: _device(v) for k, v in raw.items() if k in TrainState._fields}
    fields["opt_state"] = raw["opt_state"]
    fields["step"] = jnp.asarray(raw["step"], jnp.int32)
    return TrainState(**fields)


def load(path: str | os.PathLike) -> Any:
    """Returns what :func:`save` wrote at ``path``, as the same kind of object.

    ``train_state.opt_state`` comes back as a raw state dict: its optax
    structure is restored by :func:`restore_train_state` (``fit(resume=…)``
    does it) against the optimizer's fresh state. A plain pytree comes back
    as nested dicts (``flax.serialization.from_state_dict`` gives it its
    structure again).

    Raises:
      FileNotFoundError: if there is no file. ValueError: if it is not an
        annjax checkpoint, or its checksum does not match (a corrupted file).
    """
    path = Path(path)
    kind, body = _read(path)
    if kind == "pytree":
        return _device(body["tree"])
    if kind == "TrainState":
        return _train_state(body)
    cls = FitResult if kind == "FitResult" else ManyResult
    fields = dict(body)
    for name in ("params", "state", "ema_params"):
        if name in body:
            fields[name] = _device(body[name])
    fields["train_state"] = _train_state(body.get("train_state"))
    fields["history"] = {k: np.asarray(v) for k, v in body["history"].items()}
    if cls is FitResult:
        for name in ("best_epoch", "epochs", "params_epoch"):
            fields[name] = int(fields[name])
        fields["stop_reason"] = str(fields["stop_reason"])
    else:
        fields["stop_reason"] = [str(r) for r in _as_list(fields["stop_reason"])]
        fields["epochs"] = int(fields["epochs"])
        fields["hyper"] = {k: np.asarray(v) for k, v in fields["hyper"].items()}
    return cls(**{k: v for k, v in fields.items() if k in cls._fields})


def _as_list(value) -> list:
    if isinstance(value, dict):  # msgpack keeps lists as {"0": …, "1": …}
        return [value[k] for k in sorted(value, key=int)]
    return list(value)


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
            "resume: expected a checkpoint written with the same optimizer "
            f"family, got an optimizer state of another structure ({exc}): the "
            "optimizer changed (a new learning rate or other hyper-parameter of "
            "the same optimizer is applied; another optimizer cannot be). "
            "Resume with the optimizer of the first run."
        ) from exc
    if (saved.ema is None) != (fresh.ema is None):
        raise ValueError(
            "resume: expected a checkpoint "
            f"{'with' if fresh.ema is not None else 'without'} a moving average "
            "of the params, as this run's ema= asks, got one "
            f"{'with' if saved.ema is not None else 'without'}. Resume with the "
            "ema= of the first run."
        )
    return saved._replace(opt_state=_device(opt_state))


# ------------------------------------------------------------------ resume


def resume(run, fresh: TrainState, train_keys):
    """Returns ``(train_state, progress)`` to continue the run saved at
    ``run.resume``.

    The checkpoint must hold the history this run records: the names are
    derived from the run record (:func:`annjax.training.loop.history_names`),
    so a new kind of history series needs no change here. The
    hyper-parameters of the resuming call win: its optimizer's injected
    hyper-parameters (learning rate, ``lr_scale``) replace the saved ones
    (:func:`annjax.optim.with_hyperparams`), and ``l1``/``l2`` are the run's.

    Raises:
      ValueError: for a checkpoint of the other kind of run (fit/fit_many)
        or number of models, another model or optimizer family (naming the
        change), another history, or when early stopping must restore a
        best epoch whose params the checkpoint does not hold.
    """
    previous = load(run.resume)
    want = ManyResult if run.many else FitResult
    if not isinstance(previous, want):
        raise ValueError(
            f"resume: expected a checkpoint of {want.__name__} (written by "
            f"{'fit_many' if run.many else 'fit'}), got a {type(previous).__name__}."
        )
    if run.many and len(previous.stop_reason) != run.models:
        raise ValueError(
            f"resume: expected a checkpoint of {run.models} models, got one of "
            f"{len(previous.stop_reason)}. Resume with the keys of the first run."
        )
    ts = restore_train_state(previous.train_state, fresh)
    ts = ts._replace(opt_state=_optim.with_hyperparams(ts.opt_state, fresh.opt_state))
    got = set(previous.history)
    want_names = _loop.history_names(run, ts, train_keys)
    if got != want_names:
        raise ValueError(
            "resume: expected a checkpoint recording the same history as this run "
            "(same metrics, validation data, optimizer, track_gradients and "
            f"log_steps), got one that lacks {sorted(want_names - got) or 'nothing'} "
            f"and has {sorted(got - want_names) or 'nothing'} more. Resume with "
            "the arguments of the first run."
        )
    es, n = run.early_stopping, run.models
    best = None
    if es is not None and es.restore_best:
        at = np.atleast_1d(np.asarray(previous.params_epoch)).astype(int)
        best = _previous_best(previous, es, at, n, ts)
    return ts, _loop.Progress.restored(run, previous, best)


def _previous_best(previous, es, at, n, ts):
    """Returns the best epoch's (params, state) per model, from the checkpoint."""
    history = previous.history.get(es.monitor, [])
    values = np.asarray(history, np.float32).reshape(-1, n)
    for i in range(n):
        b = es.replay(values[:, i]).best_epoch
        if b >= 0 and b != at[i]:
            raise ValueError(
                f"resume: EarlyStopping(restore_best=True) needs the params of the "
                f"best epoch so far of {es.monitor} (epoch {b}), but the checkpoint "
                f"holds those of epoch {at[i]} (the first run did not restore its "
                "best). Resume with EarlyStopping(..., restore_best=False), or "
                "start again with restore_best=True."
            )
    if (at < 0).all():
        return _trees.copy((ts.params, ts.state, ts.ema))
    kept = (previous.params, previous.state, previous.ema_params)
    return _trees.copy(kept)
