"""fit, fit_many, predict and evaluate on a mesh of 8 (CPU) devices.

The number of CPU devices is fixed when JAX starts, so the 8-device checks
run in ONE subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``: this file runs
itself as a script (``python tests/test_mesh.py`` prints the measurements
as JSON), and the tests assert on what it measured. Tiny data, 3 epochs.

Tolerances: 1e-5. On a mesh each batch's sums (the gradient, the batch-norm
statistics) are taken per device and all-reduced, another summation order
than on one device; nothing else differs (same batches, same dropout masks:
the random bits do not depend on the partitioning). The model is trained
with SGD: under Adam, the dense bias in front of batch norm (whose gradient
is 0 up to rounding) would follow the sign of the rounding noise, and a
1e-9 difference would become a 1e-2 one.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import on_cpu_devices

import annjax as ann

TOL = 1e-5
DEVICES = 8
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------ in the subprocess


def _max_diff(a, b) -> float:
    """Returns the largest absolute difference between two pytrees or dicts."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    return max(
        (
            float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
            for x, y in zip(la, lb, strict=True)
        ),
        default=0.0,
    )


def _specs(tree) -> list[str]:
    return sorted({str(tuple(a.sharding.spec)) for a in jax.tree.leaves(tree)})


def _collectives(capture: dict) -> dict[str, int]:
    """Returns the count of each collective in the last epoch's compiled program."""
    text = capture["hlo"]()
    names = ("all-reduce", "all-gather", "all-to-all", "collective-permute")
    return {name: text.count(f" {name}(") for name in names}


def _capture_epochs() -> dict:
    """Returns a dict that receives, at every whole-epoch call, the layout of X
    and (under "hlo") a function that compiles that call and returns its HLO.

    Compiling only when a test reads the HLO keeps the subprocess to the
    three compilations it inspects instead of one per epoch of every fit.
    """
    from annjax.training import epoch as _epoch
    from annjax.training import loop as _loop

    capture: dict = {}
    original = _loop.run_epoch

    def epoch(run, ts, keys, index, active):
        args = (run.spec, ts, keys, np.int32(index), run.hyper, run.x, run.y, run.val)
        jitted = _epoch.compiled("run_epoch", run.vectorize, run.spec)
        capture["hlo"] = lambda: jitted.lower(*args).compile().as_text()
        spec = getattr(run.x.sharding, "spec", None)  # None: one device
        capture["x_spec"] = None if spec is None else str(tuple(spec))
        return original(run, ts, keys, index, active)

    _loop.run_epoch = epoch
    return capture


def _data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96).astype(np.int32)
    x = (rng.normal(size=(96, 5)) + y[:, None]).astype(np.float32)
    return (x[:64], y[:64]), (x[64:], y[64:])


MODEL = ann.mlp([16, 3], batch_norm=True, dropout=0.2)
KWARGS = {
    "optimizer": ann.sgd(0.1, momentum=0.9),
    "epochs": 3,
    "batch_size": 16,
    "metrics": ("accuracy",),
    "progress": False,
}


def _data_parallel(out: dict, capture: dict, mesh, train, val) -> None:
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    one = ann.fit(MODEL, train, val_data=val, key=jax.random.key(1), **KWARGS)
    eight = ann.fit(
        MODEL, train, val_data=val, key=jax.random.key(1), mesh=mesh, **KWARGS
    )
    out["dp_params"] = _max_diff(one.params, eight.params)
    out["dp_state"] = _max_diff(one.state, eight.state)
    out["dp_history"] = _max_diff(one.history, eight.history)
    out["dp_specs"] = _specs((eight.params, eight.state, eight.train_state))
    out["dp_collectives"] = _collectives(capture)
    # inputs laid out by the user stay where they lie
    split = NamedSharding(mesh, P("data"))
    xs, ys = (jax.device_put(a, split) for a in train)
    laid = ann.fit(
        MODEL, (xs, ys), val_data=val, key=jax.random.key(1), mesh=mesh, **KWARGS
    )
    out["dp_laid_params"] = _max_diff(one.params, laid.params)
    out["dp_laid_x_in_epoch"] = capture["x_spec"]
    # predict and evaluate split over "data" (65 rows: padded to whole batches)
    x_all = np.concatenate([train[0], val[0][:1]])
    p1 = ann.predict(MODEL, one.params, one.state, x_all, batch_size=20)
    p8 = ann.predict(MODEL, one.params, one.state, x_all, batch_size=20, mesh=mesh)
    out["predict"] = _max_diff(p1, p8)
    out["predict_shape"] = list(p8.shape)
    e1 = ann.evaluate(MODEL, one.params, one.state, val, metrics=("accuracy",))
    e8 = ann.evaluate(
        MODEL, one.params, one.state, val, metrics=("accuracy",), mesh=mesh
    )
    out["evaluate"] = _max_diff(e1, e8)
    out["evaluate_val_loss"] = abs(e1["loss"] - float(one.history["val_loss"][-1]))


def _models_over_devices(out: dict, capture: dict, devices, train, val) -> None:
    from jax.sharding import Mesh

    keys = jax.random.split(jax.random.key(2), DEVICES)
    l2 = [0.0, 1e-3] * (DEVICES // 2)
    mesh = Mesh(devices, ("model",))
    many = ann.fit_many(
        MODEL, train, val_data=val, keys=keys, l2=l2, mesh=mesh, **KWARGS
    )
    out["many_collectives"] = _collectives(capture)
    out["many_specs"] = _specs((many.params, many.train_state))
    alone = [
        ann.fit(MODEL, train, val_data=val, key=keys[i], l2=l2[i], **KWARGS)
        for i in range(DEVICES)
    ]
    out["many_vs_fits"] = max(
        max(
            _max_diff(many.select(i).params, alone[i].params),
            _max_diff(many.select(i).history, alone[i].history),
        )
        for i in range(DEVICES)
    )
    # against `many`, which equals the separate fits: a third fit_many without
    # a mesh would only cost another compilation
    both = Mesh(devices.reshape(4, 2), ("model", "data"))
    grid = ann.fit_many(
        MODEL, train, val_data=val, keys=keys, l2=l2, mesh=both, **KWARGS
    )
    out["many_2d"] = _max_diff(many.params, grid.params)
    out["many_2d_history"] = _max_diff(many.history, grid.history)
    out["many_2d_collectives"] = _collectives(capture)


def _errors(out: dict, mesh, devices, train) -> None:
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    def message(fn) -> str:
        try:
            fn()
        except ValueError as exc:
            return str(exc)
        return ""

    out["err_batch"] = message(
        lambda: ann.fit(MODEL, train, mesh=mesh, **{**KWARGS, "batch_size": 12})
    )
    xs = jax.device_put(train[0], NamedSharding(mesh, P("data")))
    out["err_no_mesh"] = message(lambda: ann.fit(MODEL, (xs, train[1]), **KWARGS))
    out["err_models"] = message(
        lambda: ann.fit_many(
            MODEL,
            train,
            keys=jax.random.split(jax.random.key(0), 6),
            mesh=Mesh(devices, ("model",)),
            **KWARGS,
        )
    )
    out["err_fit_model_axis"] = message(
        lambda: ann.fit(MODEL, train, mesh=Mesh(devices, ("model",)), **KWARGS)
    )


def main() -> None:
    from jax.sharding import Mesh

    devices = np.array(jax.devices())
    assert devices.size == DEVICES, devices
    mesh = Mesh(devices, ("data",))
    train, val = _data()
    out: dict = {}
    capture = _capture_epochs()
    _data_parallel(out, capture, mesh, train, val)
    _models_over_devices(out, capture, devices, train, val)
    _errors(out, mesh, devices, train)
    print("RESULT " + json.dumps(out))


# ------------------------------------------------------------ the tests


@pytest.fixture(scope="module")
def measured() -> dict:
    return on_cpu_devices([__file__], DEVICES, timeout=900)


def test_data_parallel_fit_equals_one_device(measured):
    # batch norm's statistics are over the whole batch of 16, not 2 per device
    assert measured["dp_params"] < TOL
    assert measured["dp_state"] < TOL
    assert measured["dp_history"] < TOL


def test_data_parallel_state_is_replicated_and_gradients_all_reduced(measured):
    assert measured["dp_specs"] == ["()"]
    assert measured["dp_collectives"]["all-reduce"] > 0
    assert measured["dp_collectives"]["all-gather"] == 0


def test_inputs_laid_out_by_the_user_stay_where_they_lie(measured):
    # the compiled epoch got X split over "data", as laid out: not gathered
    assert measured["dp_laid_x_in_epoch"] == "('data',)"
    assert measured["dp_laid_params"] < TOL


def test_predict_and_evaluate_on_the_mesh_agree(measured):
    assert measured["predict"] < TOL
    assert measured["predict_shape"] == [65, 3]
    assert measured["evaluate"] < TOL
    assert measured["evaluate_val_loss"] < TOL


def test_models_over_a_model_axis_equal_separate_fits(measured):
    assert measured["many_vs_fits"] < TOL


def test_each_model_trains_on_its_own_device(measured):
    # split over "model", and no collective in the epoch: no device waits
    assert measured["many_specs"] == ["('model',)"]
    assert sum(measured["many_collectives"].values()) == 0


def test_model_and_data_axes_at_once(measured):
    assert measured["many_2d"] < TOL
    assert measured["many_2d_history"] < TOL
    assert measured["many_2d_collectives"]["all-reduce"] > 0  # over "data"


def test_mesh_errors_name_both_numbers(measured):
    assert "multiple of the 8 devices" in measured["err_batch"]
    assert "got 12" in measured["err_batch"]
    assert "mesh=X.sharding.mesh" in measured["err_no_mesh"]
    assert (
        "8 devices of the mesh's 'model' axis, got 6 models" in (measured["err_models"])
    )
    assert "'model' axis is for fit_many" in measured["err_fit_model_axis"]


def test_mesh_argument_is_checked_before_compiling():
    from jax.sharding import Mesh

    x = np.zeros((8, 2), np.float32)
    y = np.zeros(8, np.int32)
    model = ann.dense(2)
    with pytest.raises(TypeError, match=r"mesh: expected a jax\.sharding\.Mesh"):
        ann.fit(model, (x, y), mesh="data", progress=False)
    wrong = Mesh(np.array(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match="expected axes named 'data'"):
        ann.fit(model, (x, y), mesh=wrong, progress=False)
    with pytest.raises(ValueError, match="'data' and/or 'model'"):
        ann.fit_many(model, (x, y), mesh=wrong, progress=False)
    with pytest.raises(ValueError, match="expected axes named 'data'"):
        ann.predict(model, {}, {}, x, mesh=wrong)


def test_a_one_device_mesh_equals_no_mesh():
    from jax.sharding import Mesh

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    kwargs = {"epochs": 2, "batch_size": 8, "progress": False}
    plain = ann.fit(MODEL, (x, y), **kwargs)
    meshed = ann.fit(MODEL, (x, y), mesh=mesh, **kwargs)
    for a, b in zip(
        jax.tree.leaves(plain.params), jax.tree.leaves(meshed.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL)


if __name__ == "__main__":
    main()


def test_a_mesh_from_jax_make_mesh_trains_as_a_mesh_built_by_hand():
    # jax.make_mesh gives Explicit axes, on which JAX refuses the sharding
    # constraints of annjax's step; fit, fit_many and evaluate take it alike
    from jax.sharding import AxisType, Mesh

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("f4")
    y = (x[:, 0] > 0).astype("i4")
    made = jax.make_mesh((1,), ("data",))
    assert made.axis_types == (AxisType.Explicit,)
    by_hand = Mesh(np.array(jax.devices()[:1]), ("data",))
    kw = dict(epochs=2, batch_size=8, progress=False, key=jax.random.key(3))
    a = ann.fit(ann.mlp([8, 2]), (x, y), mesh=made, **kw)
    b = ann.fit(ann.mlp([8, 2]), (x, y), mesh=by_hand, **kw)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])
    kw.pop("key")
    many = ann.fit_many(ann.mlp([8, 2]), (x, y), mesh=made, lr_scale=[1, 2], **kw)
    assert np.isfinite(many.history["loss"]).all()
    got = ann.evaluate(ann.mlp([8, 2]), a.params, a.state, (x, y), mesh=made)
    assert got == ann.evaluate(ann.mlp([8, 2]), a.params, a.state, (x, y))
