"""Data that does not fit in memory: MNIST streamed from a file on disk.

The training images are written ONCE to a ``numpy.memmap`` file (28 × 28 × 1
float32 pixels in [0, 1]; the 8 × 8 digits when MNIST is not there). Then
the same small CNN-free model (flatten, 256 ReLU, 10) trains three ways, with
the same key and annjax's jitted augmentation (random shifts of up to 2
pixels, inside the compiled step):

1. the arrays in memory, on the device (the default path);
2. the memmap streamed (``fit(model, (memmap, y))``): annjax shuffles the
   indices with the run's key exactly as on the device, reads each chunk of
   batches from the file in sorted order and transfers it in a background
   thread while the previous chunk trains; the result is bit-identical to 1;
3. grain reading the memmap (``ann.data.grain_source``; needs ``pip install
   'annjax[data]'``): one element per batch, a fresh permutation per epoch
   from the seed, a checkpointable iterator.

The table reports the test accuracy and the seconds of each (the report,
examples/out/stream_mnist.md, is what the docs include); the figure the
validation loss per epoch.

Run:
  ANNJAX_DATA_DIR=shared/datasets python examples/stream_mnist.py
  python examples/stream_mnist.py --quick
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

import _common
import jax
import numpy as np

import annjax as ann


def write_memmap(path: Path, X: np.ndarray) -> np.memmap:
    """Writes ``X`` to ``path`` (kept when the file already holds exactly
    ``X``) and returns it opened read-only: the file, not a copy in memory.

    The content is compared, not just the size: another split of the same
    data (another seed, another version of the split) gives a file of the
    same size with other images, which would train against these labels.
    """
    same = path.is_file() and path.stat().st_size == X.nbytes
    if same:
        old = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
        same = np.array_equal(old, X)
        del old
    if not same:
        out = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
        out[:] = X
        out.flush()
        del out
    return np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)


def _images(args):
    data_key, _ = jax.random.split(jax.random.key(args.seed))
    kind = "digits" if args.quick else "mnist"
    try:
        splits, note = _common.image_splits(
            kind, key=data_key, data_dir=args.data_dir, val=0.1, test=0.2
        )
    except FileNotFoundError:
        splits, note = _common.image_splits(
            "digits", key=data_key, data_dir=None, val=0.1, test=0.2
        )
        note = "MNIST NOT FOUND (pass --data-dir or set ANNJAX_DATA_DIR); using " + note
    side = round(splits.train[0].shape[1] ** 0.5)

    def shaped(pair):
        x, y = pair
        return np.asarray(x, np.float32).reshape(-1, side, side, 1), np.asarray(y)

    return [shaped(p) for p in splits], side, note


def _train(name, data, args, side, val):
    model = ann.serial(ann.flatten(), ann.mlp([256, 10], activation="relu"))
    shift = ann.augment.random_crop(side, padding=2)
    start = time.perf_counter()
    result = ann.fit(
        model,
        data,
        val_data=val,
        optimizer=ann.adam(3e-3),
        epochs=3 if args.quick else 8,
        batch_size=128,
        metrics=("accuracy",),
        augment=shift,
        key=jax.random.key(args.seed),
        progress=False,
    )
    return model, result, time.perf_counter() - start


@_common.writes_report("stream_mnist")
def main(argv: list[str] | None = None) -> dict:
    """Trains from memory, from a memmap and from grain; returns their scores."""
    p = _common.parser(__doc__, "stream_mnist.png")
    p.add_argument("--cache-dir", type=Path, default=None, help="memmap folder")
    args = p.parse_args(argv)
    (train, val, test), side, note = _images(args)
    folder = args.cache_dir or Path(tempfile.gettempdir()) / "annjax_stream_mnist"
    folder.mkdir(parents=True, exist_ok=True)
    images = write_memmap(folder / f"train_{side}x{side}.f32", train[0])
    print(f"data: {note}")
    name = Path(images.filename).name  # its folder is a temporary one
    print(f"memmap: {name} ({images.nbytes / 2**20:.1f} MiB)\n")

    sources = {"in memory": train, "memmap": (images, train[1])}
    if importlib.util.find_spec("grain") is not None:
        sources["grain"] = ann.data.grain_source(images, train[1], 128, seed=args.seed)
    rows, histories, params = [], {}, {}
    for name, data in sources.items():
        model, result, seconds = _train(name, data, args, side, val)
        scores = ann.evaluate(
            model, result.params, result.state, test, metrics=("accuracy",)
        )
        rows.append({"data": name, "test acc": scores["accuracy"], "seconds": seconds})
        histories[name] = result.history
        params[name] = result.params
    _common.print_table(rows, {"data": "", "test acc": ".4f", "seconds": ".1f"})
    same = all(
        jax.tree_util.tree_leaves(
            jax.tree_util.tree_map(
                np.array_equal, params["in memory"], params["memmap"]
            )
        )
    )
    print(f"\nmemmap params bit-identical to the in-memory run: {same}")
    figure = _common.plot_curves(
        histories,
        [("loss", ["val_loss", "loss"]), ("accuracy", ["val_accuracy"])],
        _common.figure_path(args.out, "stream_mnist.png"),
        "MNIST streamed from disk",
    )
    print(f"learning curves: {figure}")
    return {
        "data": note,
        "results": {r["data"]: r for r in rows},
        "identical": same,
        "figure": str(figure),
    }


if __name__ == "__main__":
    if hasattr(ann, "enable_compilation_cache"):
        ann.enable_compilation_cache()  # process-wide: see the README
    main()
