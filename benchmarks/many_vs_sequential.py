"""fit_many over 5 seeds against 5 sequential fits, in one fresh process each.

Run each mode in its own process, cold (``ANNJAX_CACHE_DIR=off``) or warm (a
cache folder filled by a first run)::

    ANNJAX_CACHE_DIR=off python benchmarks/many_vs_sequential.py many
    ANNJAX_CACHE_DIR=off python benchmarks/many_vs_sequential.py seq
    ANNJAX_CACHE_DIR=off python benchmarks/many_vs_sequential.py many sequential

``many WAY`` passes ``vectorize=WAY`` to ``fit_many`` (default ``auto``).

It prints the process's wall and CPU time from start to end (imports and
compilations included) and the mean final validation accuracy, which must
be equal in both modes (each model of fit_many trains as its own fit).
"""

from __future__ import annotations

import resource
import sys
import time

START = time.perf_counter()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import annjax as ann  # noqa: E402


def main(mode: str, way: str = "auto") -> None:
    d = ann.datasets.load_digits()
    s = ann.data.split(d.X, d.y, val=0.2, key=jax.random.key(0))
    model = ann.mlp([64, 64, 64, 10], activation="relu")
    keys = jax.random.split(jax.random.key(0), 5)
    kw = dict(
        val_data=s.val,
        optimizer=ann.adam(1e-3),
        epochs=30,
        batch_size=32,
        metrics=("accuracy",),
        progress=False,
    )
    if mode == "many":
        result = ann.fit_many(model, s.train, keys=keys, vectorize=way, **kw)
        acc = result.history["val_accuracy"][-1]
    else:
        acc = [
            ann.fit(model, s.train, key=k, **kw).history["val_accuracy"][-1]
            for k in keys
        ]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    name = f"{mode} {way}" if mode == "many" else mode
    print(
        f"{name:16s} wall {time.perf_counter() - START:5.2f} s  "
        f"cpu {usage.ru_utime + usage.ru_stime:5.2f} s  "
        f"mean val accuracy {np.mean(acc):.4f}"
    )


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in ("many", "seq"):
        sys.exit("usage: python benchmarks/many_vs_sequential.py many [WAY]|seq")
    ann.enable_compilation_cache()  # ANNJAX_CACHE_DIR=off keeps it off
    main(*sys.argv[1:])
