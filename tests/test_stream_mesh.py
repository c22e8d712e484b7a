"""Streamed fit on a mesh, and on two processes: each reads only its own rows.

The number of CPU devices is fixed when JAX starts, so every check runs in
subprocesses: this file runs itself as the worker script (as
``tests/test_mesh.py`` and ``tests/test_multihost.py`` do), each process
bounded by a timeout and killed when it runs over.

- One process, 8 devices: ``fit`` of ``ann.data.stream(X, y)`` on the mesh
  equals ``fit`` of the arrays on the same mesh and the streamed fit on one
  device; an iterable of batches too; each chunk lies split along its batch
  rows over ``"data"``.
- Two processes on 127.0.0.1 with 2 CPU devices each (gloo collectives)
  against one process with 4: host arrays (each process gathers its rows of
  every global batch of the one plan) and per-process iterables (each
  yields its half of every batch) give the params of one process streaming
  the whole.

- ``evaluate`` and ``predict`` of streamed data the same way: on 8 devices
  against the arrays on the mesh and the streamed pass on one device; two
  processes (host arrays: each reads its rows, recorded; loaders that each
  pad their own last batch, with weights) against one process evaluating
  the whole. The padding is never counted (a metric counting its rows) and
  every process gets the whole replicated ``predict``.

Tolerance 1e-5: on a mesh each batch's sums (the gradient, the batch-norm
statistics) are taken per device and all-reduced, another summation order;
the batches and the dropout masks are the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    data_mesh_of_two_hosts,
    free_port,
    start_on_cpu_devices,
    wait_all,
)

TOL = 1e-5
TIMEOUT_S = 300
ROOT = Path(__file__).resolve().parents[1]
N, B, FEATURES = 96, 16, 5


# ------------------------------------------------------------ in the subprocess


def _data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, N).astype(np.int32)
    x = (rng.normal(size=(N, FEATURES)) + y[:, None]).astype(np.float32)
    return x, y


def _fit(train, mesh, many=False, **kw) -> dict[str, np.ndarray]:
    """Returns the fitted params and state, flattened by path, and the losses
    (``many``: ``fit_many`` of 2 models)."""
    import jax

    import annjax as ann

    kw = {"batch_size": B, "steps_per_call": 3, "epochs": 2, **kw}  # one compile
    if many:
        kw["keys"] = [jax.random.key(1), jax.random.key(2)]  # model 0: fit's
    else:
        kw["key"] = jax.random.key(1)
    result = (ann.fit_many if many else ann.fit)(
        ann.mlp([16, 3], batch_norm=True, dropout=0.2),
        train,
        optimizer=ann.sgd(0.1, momentum=0.9),
        progress=False,
        mesh=mesh,
        **kw,
    )
    flat = jax.tree_util.tree_flatten_with_path((result.params, result.state))[0]
    out = {jax.tree_util.keystr(path): np.asarray(a) for path, a in flat}
    for name in ("loss", "train_eval_loss"):  # (models, epochs) for fit_many
        out[name] = result.history[name].T if many else result.history[name]
    return out


def _diff(a: dict, b: dict) -> float:
    assert set(a) == set(b), (set(a), set(b))
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def _error(fn) -> str:
    try:
        fn()
    except ValueError as exc:
        return str(exc)
    return "no error"


def one_process(out: str, folder: str) -> None:
    """8 devices: streamed on the mesh against arrays on it and one device."""
    import jax
    from jax.sharding import Mesh

    import annjax as ann
    from annjax.training import streamed

    mesh = Mesh(np.array(jax.devices()), ("data",))
    x, y = _data()
    placed = []
    put = streamed._put

    def spy(chunk, models, mesh, rows):
        value = put(chunk, models, mesh, rows)
        if mesh is not None:
            placed.append([str(tuple(a.sharding.spec)) for a in value])
        return value

    streamed._put = spy
    arrays = _fit((x, y), mesh)
    host = _fit(ann.data.stream(x, y), mesh)
    host_one = _fit(ann.data.stream(x, y), None)
    batches = [(x[i : i + B], y[i : i + B]) for i in range(0, N - 6, B)]  # 10 last
    listed = _fit(batches, mesh)
    listed_one = _fit(batches, None)
    chunks = len(placed)
    path = Path(folder) / "half.ckpt"  # resumed on the mesh: the same run
    _fit(ann.data.stream(x, y), mesh, epochs=1, checkpoint=path)
    resumed = _fit(ann.data.stream(x, y), mesh, epochs=1, resume=path)
    grid = Mesh(np.array(jax.devices()).reshape(2, 4), ("model", "data"))
    many = _fit(ann.data.stream(x, y), grid, many=True)
    first = {k: v[0] for k, v in many.items()}  # the model of fit's key
    small = [(x[i : i + 12], y[i : i + 12]) for i in range(0, N, 12)]
    result = {
        "host_vs_arrays": _diff(host, arrays),
        "resumed_vs_whole": _diff(resumed, host),
        "host_vs_one_device": _diff(host, host_one),
        "batches_vs_one_device": _diff(listed, listed_one),
        "fit_many_vs_one_device": _diff(first, host_one),
        "placed": placed[0],
        "chunks": chunks,
        "bad_batches": _error(lambda: _fit(small, mesh)),
        "bad_batch_size": _error(
            lambda: _fit(ann.data.stream(x, y), mesh, batch_size=12)
        ),
    }
    Path(out).write_text(json.dumps(result))


def _halves(x, y, pid: int, steps: int | None = None):
    """Process ``pid``'s loader: its half of every global batch of B rows."""
    half = B // 2
    rows = np.arange(N).reshape(-1, 2, half)[:, pid].reshape(-1)
    batches = [(x[r], y[r]) for r in rows.reshape(-1, half)]
    return batches[:steps] if steps else batches


def worker(role: str, out: str, port: str = "", pid: str = "0") -> None:
    """Trains as one of two processes (``host``) or alone on 4 devices."""
    import jax
    from jax.sharding import Mesh

    import annjax as ann

    mesh = data_mesh_of_two_hosts(role, port, pid)
    x, y = _data()
    result = {"host": _fit(ann.data.stream(x, y), mesh)}
    if role == "host":  # each process yields its half of every batch
        result["batches"] = _fit(_halves(x, y, int(pid)), mesh)
        steps = 6 - int(pid)  # disagreeing processes: refused on both
        message = _error(lambda: _fit(_halves(x, y, int(pid), steps), mesh))
        mixed = Mesh(np.array(jax.devices())[[0, 2, 1, 3]], ("data",))
        apart = _error(lambda: _fit(ann.data.stream(x, y), mixed))
        result["disagree"] = {"message": np.array(message), "apart": np.array(apart)}
    else:  # one process streams the whole of every batch
        result["batches"] = _fit(
            [(x[i : i + B], y[i : i + B]) for i in range(0, N, B)], mesh
        )
    flat = {f"{kind}/{k}": v for kind, part in result.items() for k, v in part.items()}
    np.savez(f"{out}.{pid}.npz", **flat)
    if role == "host":
        jax.distributed.shutdown()


# ------------------------------------------------------------------ the tests


def test_streamed_fit_on_a_mesh_equals_arrays_and_one_device(tmp_path):
    out = tmp_path / "one.json"
    one = start_on_cpu_devices([__file__, "one", str(out), str(tmp_path)], devices=8)
    wait_all([one], TIMEOUT_S)
    got = json.loads(out.read_text())
    assert got["host_vs_arrays"] <= TOL
    assert got["resumed_vs_whole"] == 0.0
    assert got["host_vs_one_device"] <= TOL
    assert got["batches_vs_one_device"] <= TOL
    assert got["fit_many_vs_one_device"] <= TOL
    # x, y split along each batch's rows; the step numbers replicated; the
    # weights (steps, B) split along B: as the on-device path splits a batch
    assert got["placed"] == [
        "(None, 'data')",
        "(None, 'data')",
        "()",
        "(None, 'data')",
    ]
    assert got["chunks"] == 8  # 2 fits of 2 epochs of 2 chunks of 3 steps
    assert "split evenly over the 8 devices" in got["bad_batches"]
    assert "got batches of 12 rows" in got["bad_batches"]
    assert "multiple of the 8 devices" in got["bad_batch_size"]


def test_two_processes_streaming_their_halves_equal_one_streaming_all(tmp_path):
    port = str(free_port())
    hosts, single = tmp_path / "hosts", tmp_path / "single"
    wait_all(
        [
            start_on_cpu_devices([__file__, "host", str(hosts), port, "0"], devices=2),
            start_on_cpu_devices([__file__, "host", str(hosts), port, "1"], devices=2),
            start_on_cpu_devices([__file__, "single", str(single)], devices=4),
        ],
        TIMEOUT_S,
    )
    one = np.load(f"{single}.0.npz")
    for pid in (0, 1):
        two = np.load(f"{hosts}.{pid}.npz")
        assert any("dense_0" in name for name in one.files)
        for name in one.files:
            np.testing.assert_allclose(
                two[name], one[name], rtol=TOL, atol=TOL, err_msg=name
            )
        message = str(two["disagree/message"])
        assert "expected the same steps_per_epoch on every process" in message
        assert "[6, 5]" in message
        apart = str(two["disagree/apart"])
        assert "expected each process's devices next to each other" in apart


# ------------------------------------------------- evaluate and predict, streamed
# M examples: batches of B, the last one short (10 rows), so padding is cut.

M = 90


def rows(y_true, y_pred):
    """A metric function: the examples it sees (padding must not be among them)."""
    import jax.numpy as jnp

    return jnp.asarray(y_true.shape[0], jnp.float32)


def _eval_model():
    """Returns a model with batch norm and its params and state, the same in
    every process."""
    import jax

    import annjax as ann

    model = ann.mlp([16, 3], batch_norm=True, dropout=0.2)
    _, params, state = model.init(jax.random.key(3), (FEATURES,))
    state = jax.tree_util.tree_map(lambda a: a + 0.5, state)  # not the identity
    return model, params, state


def _eval(data, mesh, **kw) -> dict:
    """Returns ``evaluate``'s logs and ``predict``'s outputs (of data's x)."""
    import annjax as ann

    model, params, state = _eval_model()
    metrics = ("accuracy", rows)
    logs = ann.evaluate(model, params, state, data, metrics=metrics, mesh=mesh, **kw)
    if isinstance(data, ann.data.HostArrays):  # their x alone
        x = ann.data.stream(data.x)
    elif isinstance(data, tuple):  # arrays in memory
        x = data[0]
    else:  # an iterable of batches: their y is not read
        x = data
    pred = ann.predict(model, params, state, x, mesh=mesh, **kw)
    return {**logs, "pred": pred}


def _far(a: dict, b: dict) -> float:
    """Returns the largest difference between two ``_eval`` results."""
    out = abs(float(a["rows"]) - float(b["rows"]))
    out = max([out] + [abs(a[k] - b[k]) for k in ("loss", "accuracy")])
    return max(out, float(np.max(np.abs(np.asarray(a["pred"]) - b["pred"]))))


CLASS_WEIGHT = {0: 2.0, 1: 1.0, 2: 0.5}


def _weights():
    """Returns the M examples' own weights, some of them 0."""
    return np.linspace(-0.5, 2.0, M).clip(0).astype(np.float32)


def _weighed(data, mesh, **kw) -> dict:
    """Returns ``evaluate``'s logs with class weights (data's own w too)."""
    import annjax as ann

    model, params, state = _eval_model()
    kw = {"metrics": ("accuracy",), "class_weight": CLASS_WEIGHT, **kw}
    return ann.evaluate(model, params, state, data, mesh=mesh, **kw)


class _Reads:
    """An array-like that records the rows read from it (host arrays)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.read = a, a.shape, a.dtype, set()

    def __len__(self):
        return len(self.a)

    def __getitem__(self, i):
        self.read.update(np.atleast_1d(i).tolist())
        return self.a[i]


def evaluate_one_process(out: str) -> None:
    """8 devices: evaluate and predict of streamed data on the mesh against
    the arrays on the mesh and the streamed pass on one device."""
    import jax
    from jax.sharding import Mesh

    import annjax as ann
    from annjax.training import streamed

    mesh = Mesh(np.array(jax.devices()), ("data",))
    x, y = (a[:M] for a in _data())
    placed = []
    put = streamed._put_rows

    def spy(chunk, mesh, rows):
        value = put(chunk, mesh, rows)
        if mesh is not None and value[1] is not None:  # evaluate's x, y, w
            placed.append([str(tuple(a.sharding.spec)) for a in value])
        return value

    streamed._put_rows = spy
    arrays = _eval((x, y), mesh, batch_size=B)
    host = _eval(ann.data.stream(x, y), mesh, batch_size=B)
    host_one = _eval(ann.data.stream(x, y), None, batch_size=B)
    batches = [(x[i : i + B], y[i : i + B]) for i in range(0, M, B)]  # 10 last
    listed = _eval(batches, mesh)
    listed_one = _eval(batches, None)
    model, params, state = _eval_model()
    # 12 rows a batch: rounded up to 16 over 8 devices, as in memory; fewer
    # examples (3) than devices: one padded batch
    odd = [
        ann.predict(model, params, state, a, batch_size=12, mesh=mesh)
        for a in (ann.data.stream(x), x)
    ]
    few = [
        ann.predict(model, params, state, a, mesh=mesh)
        for a in (ann.data.stream(x[:3]), x[:3])
    ]
    small = [(x[i : i + 12], y[i : i + 12]) for i in range(0, M, 12)]
    w = _weights()
    weighed = [(x[i : i + B], y[i : i + B], w[i : i + B]) for i in range(0, M, B)]
    weights = [_weighed(a, mesh, batch_size=B) for a in (weighed, (x, y, w))]
    result = {
        "host_vs_arrays": _far(host, arrays),
        "host_vs_one_device": _far(host, host_one),
        "batches_vs_arrays": _far(listed, arrays),
        "batches_vs_one_device": _far(listed, listed_one),
        "rows": [float(r["rows"]) for r in (host, listed, arrays)],
        "shape": list(host["pred"].shape),
        "sharding": [
            str(tuple(r["pred"].sharding.spec)) for r in (host, listed, arrays)
        ],
        "odd_batch": float(np.max(np.abs(np.asarray(odd[0]) - odd[1]))),
        "few": float(np.max(np.abs(np.asarray(few[0]) - few[1]))),
        "placed": placed[0],
        "bad_predict": _error(
            lambda: ann.predict(model, params, state, small, mesh=mesh)
        ),
        "bad_evaluate": _error(lambda: _eval(small, mesh)),
        "weighted_vs_arrays": max(
            abs(weights[0][k] - weights[1][k]) for k in weights[1]
        ),
    }
    Path(out).write_text(json.dumps(result))


def _process_part(x, y, pid: int, steps: int | None = None, w=None):
    """Process ``pid``'s loader of the first M examples: the first or second
    half of every global batch of B rows, the last batch (10 rows) split 5 and
    5, so each process pads its own last batch (with ``w``: each batch's
    weights too)."""
    starts = list(range(0, M - 10, B))
    parts = [range(s + pid * (B // 2), s + (pid + 1) * (B // 2)) for s in starts]
    parts.append(range(M - 10 + pid * 5, M - 5 + pid * 5))
    batches = [
        (x[list(r)], y[list(r)]) + (() if w is None else (w[list(r)],)) for r in parts
    ]
    return batches[:steps] if steps else batches


def evaluate_worker(out: str, port: str, pid: str) -> None:
    """Evaluates and predicts as one of two processes: host arrays (each
    reads its rows) and its own loader (its part of every batch)."""
    import jax
    from jax.sharding import Mesh

    import annjax as ann

    mesh = data_mesh_of_two_hosts("host", port, pid)
    x, y = (a[:M] for a in _data())
    reads = _Reads(x)
    host = _eval(ann.data.stream(reads, y), mesh, batch_size=B)
    read = sorted(reads.read)
    loader = _eval(_process_part(x, y, int(pid)), mesh)
    weighed = _weighed(_process_part(x, y, int(pid), w=_weights()), mesh)
    disagree = _error(lambda: _eval(_process_part(x, y, int(pid), 6 - int(pid)), mesh))
    mixed = Mesh(np.array(jax.devices())[[0, 2, 1, 3]], ("data",))
    apart = _error(lambda: _eval(ann.data.stream(x, y), mixed))
    result = {"read": np.array(read), "disagree": np.array(disagree)}
    result["apart"] = np.array(apart)
    result.update({f"weighted/{k}": np.float64(v) for k, v in weighed.items()})
    for name, got in (("host", host), ("loader", loader)):
        result[f"{name}/pred"] = np.asarray(got["pred"])  # replicated: every row
        result[f"{name}/spec"] = np.array(str(tuple(got["pred"].sharding.spec)))
        for k in ("loss", "accuracy", "rows"):
            result[f"{name}/{k}"] = np.float64(got[k])
    np.savez(f"{out}.{pid}.npz", **result)
    jax.distributed.shutdown()


def test_streamed_evaluate_and_predict_on_a_mesh_equal_arrays_and_one_device(
    tmp_path,
):
    out = tmp_path / "eval.json"
    proc = start_on_cpu_devices([__file__, "evaluate", str(out)], devices=8)
    wait_all([proc], TIMEOUT_S)
    got = json.loads(out.read_text())
    names = ("host_vs_arrays", "batches_vs_arrays", "odd_batch", "few")
    for name in (*names, "weighted_vs_arrays"):
        assert got[name] <= TOL, name
    assert got["host_vs_one_device"] <= TOL
    assert got["batches_vs_one_device"] <= TOL
    assert got["rows"] == [M, M, M]  # the padding is cut, never counted
    assert got["shape"] == [M, 3]
    assert got["sharding"] == ["()"] * 3  # replicated, as in memory
    assert got["placed"] == ["(None, 'data')"] * 3  # x, y, w: each batch's rows split
    assert (
        "x: expected batches whose rows split evenly over the 8" in got["bad_predict"]
    )
    assert "data: expected batches whose rows split evenly" in got["bad_evaluate"]


def test_two_processes_evaluating_their_halves_equal_one_evaluating_all(tmp_path):
    port = str(free_port())
    out = tmp_path / "eval"
    wait_all(
        [
            start_on_cpu_devices([__file__, "evaluate-host", str(out), port, str(i)], 2)
            for i in (0, 1)
        ],
        TIMEOUT_S,
    )
    x, y = (a[:M] for a in _data())
    whole = _eval((x, y), None, batch_size=B)  # one process, one device
    weighed = _weighed((x, y, _weights()), None)
    mine = [np.arange(M - 10).reshape(-1, 2, B // 2)[:, p].ravel() for p in (0, 1)]
    for pid in (0, 1):
        two = np.load(f"{out}.{pid}.npz")
        for name in ("host", "loader"):
            for k in ("loss", "accuracy"):
                np.testing.assert_allclose(two[f"{name}/{k}"], whole[k], atol=TOL)
            assert float(two[f"{name}/rows"]) == M, name  # padding cut
            np.testing.assert_allclose(
                two[f"{name}/pred"], np.asarray(whole["pred"]), rtol=TOL, atol=TOL
            )
            assert str(two[f"{name}/spec"]) == "()"
        # each process read its own rows of every batch (and row 0, once, for
        # the shapes); the last batch's padding repeats the last example
        last = np.arange(M - 10 + pid * 8, min(M, M - 10 + (pid + 1) * 8))
        expected = set(np.concatenate([mine[pid], last]).tolist()) | {0}
        assert set(two["read"].tolist()) == expected, pid
        for k, v in weighed.items():  # the loaders' own w and class_weight
            np.testing.assert_allclose(two[f"weighted/{k}"], v, atol=TOL, err_msg=k)
        message = str(two["disagree"])
        assert "data: expected the same steps_per_epoch on every process" in message
        assert "[6, 5]" in message
        apart = str(two["apart"])
        assert "expected each process's devices next to each other" in apart


def test_streamed_evaluate_and_predict_refuse_what_they_cannot_read():
    import annjax as ann

    model, params, state = _eval_model()
    x, y = _data()
    with pytest.raises(ValueError, match="data: expected targets y"):
        ann.evaluate(model, params, state, ann.data.stream(x))
    many = ann.data.stream([(x[None, :8], y[None, :8])], models=1)
    with pytest.raises(ValueError, match="x: expected batches of one model"):
        ann.predict(model, params, state, many)
    with pytest.raises(ValueError, match="data: expected batches of one model"):
        ann.evaluate(model, params, state, many)


if __name__ == "__main__":
    if sys.argv[1] == "one":
        one_process(*sys.argv[2:])
    elif sys.argv[1] == "evaluate":
        evaluate_one_process(*sys.argv[2:])
    elif sys.argv[1] == "evaluate-host":
        evaluate_worker(*sys.argv[2:])
    else:
        worker(*sys.argv[1:])
