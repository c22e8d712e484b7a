"""Plumbing shared by the example scripts: arguments, data, scores, table, figure.

Not an example itself. Every script builds its command line with :func:`parser`,
prepares its data with :func:`prepare` (split, imputation and standardisation
fitted on the training split only), scores a trained model on several splits
with one compiled :func:`annjax.predict` call (:func:`predict_parts`), prints
:func:`print_table` and draws :func:`plot_curves`. Its ``main`` is wrapped in
:func:`writes_report`, which writes what it printed to ``<out>/<script>.md``, the
file the documentation includes (so no quoted output is pasted by hand).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import numpy as np

import annjax as ann

OUT_DIR = Path(__file__).resolve().parent / "out"


def parser(doc: str, figure: str, data: bool = True) -> argparse.ArgumentParser:
    """Returns the command line every example shares; ``figure`` names its output
    and ``data`` adds ``--data-dir``."""
    p = argparse.ArgumentParser(
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="few epochs (for tests)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out",
        type=Path,
        default=OUT_DIR / figure,
        help=f"figure file, or a folder to write {figure} into "
        f"(default examples/out/{figure})",
    )
    if data:
        p.add_argument(
            "--data-dir",
            default=None,
            help="folder holding the data files (default: $ANNJAX_DATA_DIR, then "
            "~/.cache/annjax)",
        )
    return p


def figure_path(out: Path, name: str) -> Path:
    """Returns where to write the figure: ``out`` itself, or ``out/name`` for a
    folder (an existing one, or a path without a file suffix); creates parents.
    A path inside the working directory is returned relative to it, for print."""
    out = Path(out)
    path = (out / name if out.is_dir() or not out.suffix else out).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy."""

    def __init__(self, stream) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _out_dir(argv: Sequence[str]) -> Path:
    """The folder ``--out`` names (a figure file's folder), else examples/out."""
    out = OUT_DIR
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            out = Path(argv[i + 1])
        elif arg.startswith("--out="):
            out = Path(arg.removeprefix("--out="))
    return out.parent if out.suffix and not out.is_dir() else out


def _command(name: str, argv: Sequence[str]) -> str:
    """The command that reproduces a run, without where it read or wrote files."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--out", "--data-dir", "--cache-dir"):
            skip = True
        elif not arg.startswith(("--out=", "--data-dir=", "--cache-dir=")):
            kept.append(arg)
    return " ".join(["python", f"examples/{name}.py", *kept])


def report_text(name: str, argv: Sequence[str], printed: str, seconds: float) -> str:
    """The Markdown report of one run: the command, what it printed, its wall time."""
    return (
        f"<!-- written by examples/{name}.py; do not edit: rerun the command -->\n"
        f"`{_command(name, argv)}`\n\n```text\n{printed.rstrip()}\n```\n\n"
        f"Wall time {seconds:.1f} s, compilation included (jax {jax.__version__}, "
        f"{jax.default_backend()}, {platform.machine()}).\n"
    )


def writes_report(name: str) -> Callable:
    """Wraps an example's ``main(argv)``: what it prints also goes to
    ``<out>/<name>.md`` (:func:`report_text`), whose path joins the returned dict
    as ``"report"``. The docs include these files, never a copy."""

    def wrap(main: Callable[[list[str] | None], dict]) -> Callable:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> dict:
            argv = list(sys.argv[1:] if argv is None else argv)
            tee = _Tee(sys.stdout)
            start = time.perf_counter()
            with contextlib.redirect_stdout(tee):
                result = main(argv)
            seconds = time.perf_counter() - start
            path = figure_path(_out_dir(argv), f"{name}.md")
            path.write_text(report_text(name, argv, tee.copy.getvalue(), seconds))
            return {**result, "report": str(path)}

        return run

    return wrap


def prepare(
    X: np.ndarray,
    y: np.ndarray,
    *,
    key: jax.Array,
    val: float,
    test: float,
    stratify: bool = False,
    standardize: bool = True,
) -> ann.data.Splits:
    """Returns train/val/test NumPy pairs, missing values filled and X standardised.

    The split is :func:`annjax.data.split`; the imputer (mean per column) and the
    :class:`annjax.data.Standardizer` are fitted on the training split only and
    applied to all three, so no statistic of the held-out data leaks into
    training.
    """
    splits = ann.data.split(X, y, val=val, test=test, key=key, stratify=stratify)
    parts = [np.asarray(x) for x, _ in splits]
    if any(np.isnan(x).any() for x in parts):
        imputer = ann.datasets.Imputer.fit(parts[0])
        parts = [imputer.transform(x) for x in parts]
    if standardize:
        scaler = ann.data.Standardizer.fit(parts[0])
        parts = [np.asarray(scaler.transform(x)) for x in parts]
    targets = [np.asarray(t) for _, t in splits]
    return ann.data.Splits(*zip(parts, targets, strict=True))


def image_splits(
    data: str,
    *,
    key: jax.Array,
    data_dir: str | None,
    val: float,
    test: float,
    download: bool = False,
) -> tuple[ann.data.Splits, str]:
    """Returns flattened image splits (pixels in [0, 1]) and a line saying what
    they are: ``data`` is ``"digits"`` (bundled with scikit-learn) or
    ``"mnist"``.

    MNIST's training images are split into train and validation and its test
    images are the test set; when only the 10,000 test images are on disk (the
    offline case), those are split into train, validation and test instead.
    Raises FileNotFoundError when MNIST is not found at all (and, with
    ``download``, could not be downloaded).
    """
    fixed_test = None  # MNIST's own test set, when its training set is there
    if data == "digits":
        d = ann.datasets.load_digits()
        X, y = d.X, d.y
        note = f"scikit-learn digits (8x8): {len(y)} images"
    else:
        if data_dir is not None and (Path(data_dir) / "mnist").is_dir():
            data_dir = str(Path(data_dir) / "mnist")  # as in $ANNJAX_DATA_DIR
        test_set = ann.datasets.load_mnist(data_dir, "test", download=download)
        X, y = test_set.X.reshape(len(test_set.y), -1), test_set.y
        note = (
            "MNIST: training images not found, so the 10,000 TEST images are "
            "split into train/val/test"
        )
        try:
            train_set = ann.datasets.load_mnist(data_dir, "train", download=download)
        except FileNotFoundError:
            pass
        else:
            fixed_test, test = (X, y), 0.0
            X, y = train_set.X.reshape(len(train_set.y), -1), train_set.y
            note = f"MNIST: {len(y)} training images (train/val), 10,000 test images"
    s = prepare(X, y, key=key, val=val, test=test, stratify=True, standardize=False)
    return ann.data.Splits(s.train, s.val, fixed_test or s.test), note


def num_params(params) -> int:
    """Returns the number of scalars in a params pytree."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def predict_parts(
    model: ann.Layer, params, state, parts: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Returns the model's outputs on each named input array.

    The arrays are concatenated so that :func:`annjax.predict` compiles once
    per model, not once per array shape.
    """
    names = list(parts)
    sizes = np.cumsum([len(parts[n]) for n in names])[:-1]
    out = np.asarray(
        ann.predict(model, params, state, np.concatenate(list(parts.values())))
    )
    return dict(zip(names, np.split(out, sizes), strict=True))


def print_table(rows: Sequence[Mapping], formats: Mapping[str, str]) -> None:
    """Prints ``rows`` (dicts) as an aligned table; ``formats`` maps each column
    to a format spec (``"d"``, ``".3f"``, ``""``). The first column is
    left-aligned, the others right-aligned."""
    table = [list(formats)]
    table += [[format(r[c], f) for c, f in formats.items()] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(formats))]
    table.insert(1, ["-" * w for w in widths])
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells))


def plot_curves(
    histories: Mapping[str, Mapping[str, np.ndarray]],
    panels: Sequence[tuple[str, Sequence[str]]],
    path: Path,
    title: str,
) -> Path:
    """Writes one panel per ``(ylabel, history names)``, one colour per model.

    The first history name of a panel is drawn solid, the others dashed (e.g.
    ``("loss", ["val_loss", "loss"])``: validation solid, training dashed);
    the legend names the models. Loss panels (first name ending in ``loss``)
    have a log scale, where late epochs stay readable. Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    axes = np.atleast_1d(axes)
    for ax, (ylabel, names) in zip(axes, panels, strict=True):
        for i, (model, history) in enumerate(histories.items()):
            for j, name in enumerate(names):
                if name in history:
                    ax.plot(
                        history[name],
                        color=f"C{i}",
                        ls="-" if j == 0 else "--",
                        label=model if j == 0 else None,
                    )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        if names[0].endswith("loss"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    # beside the last panel, so that it covers no curve
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
