"""Placement on a device mesh: where data, train state and models live.

JAX's SPMD partitioner is the engine; this module only tells it where each
array lies, with a :class:`jax.sharding.Mesh` of up to two named axes:

- ``"data"`` (data parallelism): every batch is split along its batch axis
  over the devices of this axis; params, state and optimizer state are
  replicated, and XLA inserts the all-reduces of the gradients and of the
  batch-norm statistics, so every step computes the same numbers as on one
  device (up to float summation order).
- ``"model"`` (``fit_many`` only): the stacked leading model axis of the
  train state, keys and hyper-parameters is split over its devices, so 8
  models on a ``"model"`` axis of 8 devices each train on their own device.

Without a mesh (``mesh=None``) every function here returns its input
unchanged: one device, as before. The same code serves several hosts:
after ``jax.distributed.initialize()`` a mesh over ``jax.devices()`` spans
them all, and each host feeds its own shard of the data (see the README,
"Scaling out").

Examples:
  >>> import jax, numpy as np, annjax as ann
  >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  >>> X = np.random.default_rng(0).normal(size=(32, 4)).astype("f4")
  >>> y = (X[:, 0] > 0).astype("i4")
  >>> mesh = Mesh(np.array(jax.devices()), ("data",))
  >>> n = mesh.devices.size
  >>> r = ann.fit(ann.mlp([4, 2]), (X, y), batch_size=8 * n, epochs=1,
  ...             mesh=mesh, progress=False)
  >>> Xs = jax.device_put(X, NamedSharding(mesh, P("data")))  # used where it lies
  >>> r = ann.fit(ann.mlp([4, 2]), (Xs, y), batch_size=8 * n, epochs=1,
  ...             mesh=mesh, progress=False)
  >>> r.history["loss"].shape
  (1,)
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["DATA", "MODEL", "check", "is_spread"]

DATA = "data"
MODEL = "model"


def check(mesh: Any, *, many: bool, models: int = 1) -> Mesh | None:
    """Returns ``mesh`` after checking its axes, or raises before compiling.

    ``fit`` uses a ``"data"`` axis; ``fit_many`` a ``"data"`` and/or a
    ``"model"`` axis, over which its ``models`` must split evenly. Any other
    axis of more than one device would hold copies doing the same work, so
    it is refused.
    """
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh: expected a jax.sharding.Mesh (e.g. Mesh(np.array(jax.devices()),"
            f" ('data',))), got {mesh!r}."
        )
    allowed = (DATA, MODEL) if many else (DATA,)
    unused = [a for a, n in mesh.shape.items() if a not in allowed and n > 1]
    if unused or not any(a in mesh.shape for a in allowed):
        names = " and/or ".join(repr(a) for a in allowed)
        fix = "" if many else " A 'model' axis is for fit_many."
        raise ValueError(
            f"mesh: expected axes named {names}, got {dict(mesh.shape)}.{fix}"
        )
    check_models(models, mesh)
    return _auto_axes(mesh)


def _auto_axes(mesh: Mesh) -> Mesh:
    """Returns ``mesh`` with every axis of type ``Auto``: annjax places the
    batch and lets XLA partition the step (sharding constraints), which JAX
    allows on ``Auto`` axes only, while ``jax.make_mesh`` makes ``Explicit``
    ones (sharding in types). Same devices, same names."""
    auto = (AxisType.Auto,) * len(mesh.axis_names)
    if tuple(mesh.axis_types) == auto:
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=auto)


def size(mesh: Mesh | None, axis: str) -> int:
    """Returns the number of devices along ``axis`` (1 without it or a mesh)."""
    return 1 if mesh is None else int(mesh.shape.get(axis, 1))


def check_batch(
    name: str, batch_size: int, mesh: Mesh | None, n: int | None = None
) -> None:
    """Raises ValueError unless the batch splits evenly over ``"data"``.

    With ``n`` (the number of examples), ``batch_size`` is the one asked for
    and the batch is ``min(batch_size, n)``; fewer examples than devices is
    named as such, since no batch size can fix it.
    """
    d = size(mesh, DATA)
    batch = batch_size if n is None else min(batch_size, n)
    if not batch % d:
        return
    if n is not None and n < d:
        raise ValueError(
            f"train_data: expected at least {d} examples, one per device of the "
            f"mesh's 'data' axis, got {n}. Every device takes an equal part of "
            f"each batch: use a mesh of at most {n} devices on 'data' (e.g. "
            f"Mesh(np.array(jax.devices()[:{n}]), ('data',))), or more data."
        )
    cut = (
        f" (batch_size={batch_size} cut to the {n} examples)"
        if batch < batch_size
        else ""
    )
    fit = d * max(1, batch // d)
    raise ValueError(
        f"{name}: expected a multiple of the {d} devices of the mesh's "
        f"'data' axis, got {batch}{cut}. Every device takes an equal part of "
        f"each batch: use batch_size={fit}."
    )


def follow_data(mesh: Mesh | None, *arrays: Any) -> Mesh | None:
    """Returns ``mesh``, or when None the mesh the first spread array lies on.

    Computation follows data, as in JAX: ``predict``/``evaluate`` of an X
    laid over a mesh (a ``NamedSharding``) run on that mesh without
    ``mesh=``. The mesh is checked as if it were passed.
    """
    if mesh is not None:
        return mesh
    for a in arrays:
        if is_spread(a) and isinstance(a.sharding, NamedSharding):
            return check(a.sharding.mesh, many=False)
    return None


def check_models(n_models: int, mesh: Mesh | None) -> None:
    """Raises ValueError unless the models split evenly over ``"model"``."""
    n = size(mesh, MODEL)
    if n_models % n:
        raise ValueError(
            f"fit_many: expected a number of models that is a multiple of the "
            f"{n} devices of the mesh's 'model' axis, got {n_models} models."
        )


def is_spread(a: Any) -> bool:
    """Returns whether ``a`` is a jax.Array laid over more than one device."""
    return isinstance(a, jax.Array) and len(a.sharding.device_set) > 1


def _put(a: Any, sharding: NamedSharding) -> Any:
    """Returns ``a`` on ``sharding``; a host copy first when it spans hosts."""
    if isinstance(a, jax.Array) and a.sharding == sharding:
        return a
    if not sharding.is_fully_addressable and isinstance(a, jax.Array):
        # every process holds the same value; device_put takes it from the host
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            data = _put(np.asarray(jax.random.key_data(a)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
        a = np.asarray(a)
    return jax.device_put(a, sharding)


def place_data(name: str, a: Any, mesh: Mesh | None) -> jax.Array:
    """Returns a data array on the mesh: where it lies, or replicated.

    An array the user already laid over the mesh's devices is used where it
    lies (never gathered); any other is copied to every device, as without
    a mesh the whole data set goes to the one device. Without a mesh it is
    ``jax.device_put(a)``; an array spread over devices then needs one.
    """
    if mesh is None:
        if is_spread(a):
            raise ValueError(
                f"{name}: expected the mesh its devices belong to, got an array "
                f"spread over {len(a.sharding.device_set)} devices and mesh=None. "
                "Pass the mesh it is laid out on: mesh=X.sharding.mesh."
            )
        return jax.device_put(a)
    if is_spread(a) or (isinstance(a, jax.Array) and not a.is_fully_addressable):
        if a.sharding.device_set != set(mesh.devices.flat):
            raise ValueError(
                f"{name}: expected an array on the mesh's {mesh.devices.size} "
                f"devices, got one on {len(a.sharding.device_set)} other devices. "
                "Lay it out with jax.device_put(X, NamedSharding(mesh, P('data')))."
            )
        return a
    return _put(a, NamedSharding(mesh, P()))


def place_pair(name: str, pair, mesh: Mesh | None) -> tuple[jax.Array, jax.Array]:
    """Returns ``(X, y)`` each placed by :func:`place_data`."""
    x, y = pair
    return place_data(f"{name} X", x, mesh), place_data(f"{name} y", y, mesh)


def place_state(tree: Any, mesh: Mesh | None, many: bool) -> Any:
    """Returns ``tree`` replicated on the mesh; with ``many``, its leading model
    axis split over ``"model"`` (replicated over ``"data"``)."""
    if mesh is None:
        return tree
    spec = P(MODEL) if many and MODEL in mesh.shape else P()
    sharding = NamedSharding(mesh, spec)
    return jax.tree_util.tree_map(lambda a: _put(a, sharding), tree)


def constrain_batch(tree: Any, mesh: Mesh | None) -> Any:
    """Returns the batch ``tree`` split along its batch axis over ``"data"``.

    Traceable (inside the compiled step). Under ``fit_many``'s ``vmap`` the
    model axis is left to the partitioner, which takes it from the train
    state (split over ``"model"``).
    """
    if mesh is None or DATA not in mesh.shape:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, P(DATA)))


# ------------------------------------------------- streamed chunks (a process's part)


def data_devices(mesh: Mesh | None) -> tuple[int, int]:
    """Returns ``(all, own)``: the devices along ``"data"``, and how many of
    those positions this process's devices hold (1, 1 without a mesh)."""
    if mesh is None or DATA not in mesh.shape:
        return 1, 1
    axis = mesh.axis_names.index(DATA)
    me = jax.process_index()
    own = {i[axis] for i, d in np.ndenumerate(mesh.devices) if d.process_index == me}
    return int(mesh.shape[DATA]), len(own)


def local_rows(mesh: Mesh | None, batch: int) -> slice:
    """Returns the rows of each global batch of ``batch`` rows that this
    process's devices hold when the batch is split over ``"data"``.

    A streamed chunk is read per process: each process gathers only these
    rows of every batch (all of them with one process).

    Raises:
      ValueError: when this process's devices are not neighbours along
        ``"data"`` (their rows would not be one block).
    """
    if mesh is None or DATA not in mesh.shape:
        return slice(0, batch)
    held = NamedSharding(mesh, P(DATA)).addressable_devices_indices_map((batch,))
    parts = sorted({s[0].indices(batch)[:2] for s in held.values()})
    start, stop = parts[0][0], parts[-1][1]
    if sum(b - a for a, b in parts) != stop - start:
        raise ValueError(
            f"mesh: expected each process's devices next to each other along "
            f"'data', got process {jax.process_index()} holding rows {parts} of "
            "each batch. Build the mesh from jax.devices() in their order (e.g. "
            "jax.make_mesh), which groups each process's devices."
        )
    return slice(start, stop)


def place_part(a: np.ndarray, mesh: Mesh | None, axis: int | None, rows: int) -> Any:
    """Returns the global array of which ``a`` is this process's part.

    ``a`` holds this process's rows (:func:`local_rows`) along ``axis`` of
    a global array with ``rows`` there, which is split over ``"data"``
    (every other axis whole); ``axis`` None: ``a`` is the same on every
    process, replicated. Without a mesh: ``jax.device_put(a)``. No
    collective: each process transfers its own part only.
    """
    if mesh is None:
        return jax.device_put(a)
    if axis is None or DATA not in mesh.shape:
        return jax.make_array_from_process_local_data(NamedSharding(mesh, P()), a)
    spec = P(*(None,) * axis, DATA)
    shape = (*a.shape[:axis], rows, *a.shape[axis + 1 :])
    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), a, shape)


def host_or_spread(a: Any) -> Any:
    """Returns ``a`` as a NumPy array, or as is when spread over devices."""
    return a if is_spread(a) else np.asarray(a)


def to_host(tree: Any) -> Any:
    """Returns ``tree`` as NumPy values, also when its arrays span hosts.

    An array split over other processes' devices (``fit_many``'s per-model
    logs on a ``"model"`` axis spanning hosts) is replicated first.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if all(not isinstance(a, jax.Array) or a.is_fully_addressable for a in leaves):
        return jax.device_get(tree)

    def host(a):
        if isinstance(a, jax.Array) and not a.is_fully_replicated:
            a = jax.device_put(a, NamedSharding(a.sharding.mesh, P()))
        return np.asarray(a)

    return jax.tree_util.tree_map(host, tree)
