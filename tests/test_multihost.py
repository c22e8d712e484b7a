"""fit on two hosts equals fit on one: JAX's distributed runtime over gloo.

Two processes on 127.0.0.1, each with 2 CPU devices, join one mesh of 4
(``jax.distributed.initialize``, gloo CPU collectives); each feeds its own
half of the training data (``jax.make_array_from_process_local_data``) and
both make the same ``fit`` call, the recipe of the README's "Scaling out".
A third process trains the same model on one host with 4 devices. The
params agree within 1e-5 (the all-reduces sum in another order across
processes). This file runs itself as the worker script; every process is
bounded by a timeout and killed when it runs over.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from conftest import (
    data_mesh_of_two_hosts,
    free_port,
    start_on_cpu_devices,
    wait_all,
)

TOL = 1e-5
TIMEOUT_S = 600  # for all three processes together
ROOT = Path(__file__).resolve().parents[1]


def _data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96).astype(np.int32)
    x = (rng.normal(size=(96, 5)) + y[:, None]).astype(np.float32)
    return (x[:64], y[:64]), (x[64:], y[64:])


def _train(train, val, mesh) -> dict[str, np.ndarray]:
    """Returns the fitted params (flattened by path) and the losses."""
    import jax

    import annjax as ann

    model = ann.mlp([16, 3], batch_norm=True, dropout=0.2)
    result = ann.fit(
        model,
        train,
        val_data=val,
        optimizer=ann.sgd(0.1, momentum=0.9),
        epochs=3,
        batch_size=16,
        progress=False,
        key=jax.random.key(1),
        mesh=mesh,
    )
    logs = ann.evaluate(model, result.params, result.state, train, mesh=mesh)
    flat = jax.tree_util.tree_flatten_with_path((result.params, result.state))[0]
    out = {jax.tree_util.keystr(path): np.asarray(a) for path, a in flat}
    out["val_loss"] = result.history["val_loss"]
    out["train_eval_loss"] = np.float32(logs["loss"])
    return out


def worker(role: str, out: str, port: str = "", pid: str = "0") -> None:
    """Trains as one of two hosts (``host``) or alone on 4 devices (``single``)."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = data_mesh_of_two_hosts(role, port, pid)
    train, val = _data()
    if role == "host":  # each host holds and feeds only its own half
        half = train[0].shape[0] // 2
        mine = slice(int(pid) * half, (int(pid) + 1) * half)
        split = NamedSharding(mesh, P("data"))
        train = tuple(
            jax.make_array_from_process_local_data(split, a[mine]) for a in train
        )
    result = _train(train, val, mesh)
    if int(pid) == 0:
        np.savez(out, **result)
    if role == "host":
        jax.distributed.shutdown()


def test_two_hosts_train_as_one_host_with_as_many_devices(tmp_path):
    port = str(free_port())
    hosts, single = tmp_path / "hosts.npz", tmp_path / "single.npz"
    procs = [
        start_on_cpu_devices([__file__, "host", str(hosts), port, "0"], devices=2),
        start_on_cpu_devices([__file__, "host", str(hosts), port, "1"], devices=2),
        start_on_cpu_devices([__file__, "single", str(single)], devices=4),
    ]
    wait_all(procs, TIMEOUT_S)
    two, one = np.load(hosts), np.load(single)
    assert set(two.files) == set(one.files)
    assert any("dense_0" in name for name in two.files)
    for name in one.files:
        np.testing.assert_allclose(
            two[name], one[name], rtol=TOL, atol=TOL, err_msg=name
        )


if __name__ == "__main__":
    worker(*sys.argv[1:])
