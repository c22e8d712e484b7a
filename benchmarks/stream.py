"""The ``stream`` workload: W1 trained from the device, a memmap, a generator, grain.

W1 (784-256-256-10 ReLU MLP, batch 128, Adam(1e-3), softmax cross-entropy)
on 60,000 synthetic samples (normal inputs, labels from a random linear
teacher), the inputs written once to a float32 file. Each kind of data runs
in a process of its own, so that its memory is its own:

- ``device``: the arrays read into memory, ``fit((X, y))`` (today's path);
- ``memmap``: ``fit((np.memmap(file), y))``: streamed, the run's shuffle;
- ``generator``: a Python generator of NumPy batches read from the memmap
  (a fresh permutation per epoch, each batch's rows read in sorted order);
- ``grain``: ``ann.data.grain_source(memmap, y, 128)`` (needs grain);
- ``keras``: Keras 3's ``fit`` on a ``PyDataset`` over the same memmap, the
  peer (needs keras; skipped otherwise).

Each reports samples/s over ``--epochs`` epochs after one warm-up epoch
(compilation excluded), the best of ``--rounds`` runs made in turn (device,
memmap, …, device, memmap, …: the shared machine's load drifts between
processes, so interleaving gives every kind the same conditions), and the
peak anonymous memory of the whole child process (``RssAnon`` from its
``/proc/<pid>/status``: the page cache of a memmap counts in RSS but not
there), sampled every 5 ms by this parent process. (Sampled by a thread of
the child, as before, the sampler took the GIL every 5 ms from the threads
it measured: the device path ran 82,000 samples/s with it, 102,000 with a
sample every 100 ms.) ``--flat 1,4`` also trains one epoch from memmaps of
1 GB and 4 GB and compares their peak anonymous memory.

Usage::

    python benchmarks/stream.py                       # 60,000 samples, 3 epochs
    python benchmarks/stream.py --quick               # 4,096 samples, 1 epoch
    python benchmarks/stream.py --flat 1,4 --out /tmp/stream
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES, CLASSES, BATCH = 784, 10, 128
KINDS = ("device", "memmap", "generator", "grain", "keras")
NEEDS = {"grain": "grain", "keras": "keras"}


def rss_anon_mib(pid: int | str = "self") -> float:
    """Returns a process's anonymous resident memory (MiB); NaN once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return float("nan")
    for line in status.splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_data(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """Writes n synthetic W1 samples (x.f32, y.i32) once; returns the paths."""
    x_path, y_path = folder / f"x_{n}.f32", folder / f"y_{n}.i32"
    if x_path.is_file() and x_path.stat().st_size == n * FEATURES * 4:
        return x_path, y_path
    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(FEATURES, CLASSES)).astype(np.float32)
    x = np.memmap(x_path, dtype=np.float32, mode="w+", shape=(n, FEATURES))
    y = np.empty(n, np.int32)
    for start in range(0, n, 65536):  # in pieces: 4 GB never sits in memory
        part = rng.normal(size=(min(65536, n - start), FEATURES)).astype(np.float32)
        x[start : start + len(part)] = part
        y[start : start + len(part)] = np.argmax(part @ teacher, axis=1)
    x.flush()
    del x
    y.tofile(y_path)
    return x_path, y_path


def _generator(x, y, epochs: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), BATCH):
            rows = np.sort(order[start : start + BATCH])
            yield np.asarray(x[rows]), y[rows]


def _annjax(kind: str, x, y, epochs: int) -> float:
    """Returns the seconds of ``epochs`` epochs of annjax's fit (after one)."""
    import jax

    import annjax as ann

    model = ann.mlp([256, 256, CLASSES], activation="relu")
    steps = -(-len(y) // BATCH)

    def data(e):
        if kind == "device":
            return (np.array(x), y)
        if kind == "memmap":
            return (x, y)
        if kind == "generator":
            return ann.data.stream(_generator(x, y, e, 0), steps_per_epoch=steps)
        return ann.data.grain_source(x, y, BATCH, seed=0)

    def fit(e):
        return ann.fit(
            model,
            data(e),
            optimizer=ann.adam(1e-3),
            epochs=e,
            batch_size=BATCH,
            key=jax.random.key(0),
            progress=False,
        )

    jax.block_until_ready(fit(1).params)  # compiles
    start = time.perf_counter()
    jax.block_until_ready(fit(epochs).params)
    return time.perf_counter() - start


def _keras(x, y, epochs: int) -> float:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    class Memmap(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.order = np.random.default_rng(0).permutation(len(y))

        def __len__(self):
            return -(-len(y) // BATCH)

        def __getitem__(self, i):
            rows = np.sort(self.order[i * BATCH : (i + 1) * BATCH])
            return np.asarray(x[rows]), y[rows]

        def on_epoch_end(self):
            self.order = np.random.default_rng().permutation(len(y))

    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(CLASSES),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(Memmap(), epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(Memmap(), epochs=epochs, verbose=0)
    return time.perf_counter() - start


def child(kind: str, x_path: Path, y_path: Path, n: int, epochs: int) -> dict:
    """Runs one kind in this process; returns its measurements."""
    y = np.fromfile(y_path, dtype=np.int32)
    x = np.memmap(x_path, dtype=np.float32, mode="r", shape=(n, FEATURES))
    base = rss_anon_mib()
    seconds = _keras(x, y, epochs) if kind == "keras" else _annjax(kind, x, y, epochs)
    return {
        "kind": kind,
        "n": n,
        "epochs": epochs,
        "seconds": seconds,
        "samples_per_s": n * epochs / seconds,
        "rss_anon_start_mib": base,
    }


def _available(kind: str) -> bool:
    if kind in NEEDS and importlib.util.find_spec(NEEDS[kind]) is None:
        print(f"{kind}: skipped ({NEEDS[kind]} is not installed)")
        return False
    return True


def _run_child(kind, paths, n, epochs, quiet=False) -> dict | None:
    cmd = [sys.executable, __file__, "--child", kind, "--n", str(n)]
    cmd += ["--epochs", str(epochs), "--x", str(paths[0]), "--y", str(paths[1])]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        peak = 0.0
        while child.poll() is None:  # sampled from here: no thread in the child
            peak = max(peak, np.nan_to_num(rss_anon_mib(child.pid)))
            time.sleep(0.005)
        out.seek(0), err.seek(0)
        if child.returncode != 0:
            print(f"{kind}: failed\n{err.read()[-2000:]}")
            return None
        result = json.loads(out.read().strip().splitlines()[-1])
    result["rss_anon_peak_mib"] = peak
    if not quiet:
        _print(result)
    return result


def _print(result: dict) -> None:
    rounds = f" (best of {result['rounds']})" if result.get("rounds", 1) > 1 else ""
    print(
        f"{result['kind']:>9}: {result['samples_per_s']:10.0f} samples/s{rounds}, "
        f"peak RssAnon {result['rss_anon_peak_mib']:.0f} MiB"
    )


def _interleaved(kinds, paths, n, epochs, rounds: int) -> list[dict]:
    """Runs the kinds in turn, ``rounds`` times (the machine's load drifts
    between processes: interleaving gives each kind the same conditions);
    returns per kind its best samples/s and its largest peak RssAnon."""
    runs: dict[str, list[dict]] = {k: [] for k in kinds if _available(k)}
    for _ in range(rounds):
        for kind, done in runs.items():
            r = _run_child(kind, paths, n, epochs, quiet=True)
            if r is not None:
                done.append(r)
    results = []
    for done in runs.values():
        if done:
            best = max(done, key=lambda r: r["samples_per_s"])
            peak = max(r["rss_anon_peak_mib"] for r in done)
            every = [round(r["samples_per_s"]) for r in done]
            results.append(
                {**best, "rss_anon_peak_mib": peak, "rounds": len(done), "all": every}
            )
            _print(results[-1])
    return results


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--flat", default="", help="memmap sizes in GB, e.g. 1,4")
    p.add_argument("--rounds", type=int, default=3, help="interleaved runs per kind")
    p.add_argument("--only", default=",".join(KINDS))
    p.add_argument("--data", type=Path, default=None, help="folder for the files")
    p.add_argument("--out", type=Path, default=None, help="folder for stream.json")
    p.add_argument("--child", default=None)
    p.add_argument("--x", type=Path)
    p.add_argument("--y", type=Path)
    args = p.parse_args(argv)
    n = args.n or (4096 if args.quick else 60000)
    epochs = args.epochs or (1 if args.quick else 3)
    if args.child:
        print(json.dumps(child(args.child, args.x, args.y, n, epochs)))
        return {}
    folder = args.data or Path(tempfile.gettempdir()) / "annjax_stream_bench"
    folder.mkdir(parents=True, exist_ok=True)
    paths = write_data(folder, n)
    results = {"flat": []}
    kinds = [k for k in args.only.split(",") if k]
    results["throughput"] = _interleaved(kinds, paths, n, epochs, args.rounds)
    for gb in [float(g) for g in args.flat.split(",") if g]:
        rows = int(gb * 2**30 // (FEATURES * 4))
        r = _run_child("memmap", write_data(folder, rows), rows, 1)
        if r is not None:
            print(f"  ({gb:g} GB memmap)")
            results["flat"].append({"gb": gb, **r})
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "stream.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
