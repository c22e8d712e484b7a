"""Callbacks that keep a run's history outside Python: TensorBoard and CSV files.

``fit(..., callbacks=[...])`` calls each callback on the host after every
epoch (after early stopping, before the checkpoint) with the epoch's logs,
the values that join ``result.history`` (see :func:`annjax.fit`). Both
callbacks here write exactly those values:

- :class:`TensorBoard` writes every series as a scalar whose step is the
  epoch: ``loss``, metrics, ``val_*``, ``lr``, and each profiler measurement
  ``<measure>/<layer>`` under ``layer/<measure>/<layer>`` (grad norm, update
  ratio, dead and saturated fractions, param norm and their ``_max``);
  ``step_loss`` (``log_steps=True``) is written per step, at the step's
  global index. With ``histograms=True`` it also writes one histogram per
  parameter array, ``params/<layer>/<name>``, each epoch.
- :class:`CSVLogger` writes one row per epoch: ``epoch`` then each scalar
  series (``step_loss`` has one value per step, so it is left out).

With ``fit_many`` each model is a run of its own: TensorBoard writes
``logdir/model_<i>`` (TensorBoard shows them as runs to compare), the CSV
file gets a ``model`` column and one row per model and epoch. A model that
has stopped has NaN values, as in the history.

Examples:
  >>> tb = ann.callbacks.TensorBoard("runs/relu", histograms=True)
  >>> log = ann.callbacks.CSVLogger("runs/relu.csv")
  >>> ann.fit(model, (X, y), track_gradients=True, callbacks=[tb, log])
  $ tensorboard --logdir runs

The event files are written with tensorboardX (``pip install
"annjax[tensorboard]"``), a small writer that needs neither TensorFlow nor
PyTorch (only numpy and protobuf).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = ["CSVLogger", "TensorBoard"]

STEP_LOSS = "step_loss"


def tag_of(name: str) -> str:
    """Returns the TensorBoard tag of a history name (profiler: ``layer/…``)."""
    return f"layer/{name}" if "/" in name else name


def _per_model(logs: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """Returns the logs of each model: one dict for ``fit``, one per model else."""
    host = {k: np.asarray(v) for k, v in logs.items()}
    if host["loss"].ndim == 0:
        return [host]
    return [{k: v[i] for k, v in host.items()} for i in range(host["loss"].shape[0])]


class TensorBoard:
    """A callback writing the history as TensorBoard event files under ``logdir``.

    Args:
      logdir: the folder of the run (created); with ``fit_many`` one
        subfolder ``model_<i>`` per model.
      histograms: also write each parameter array's histogram every epoch
        (the loop then passes the train state, see ``wants_train_state``).

    Every write is flushed at the end of the epoch, so a running TensorBoard
    shows the run live. Call :meth:`close` (or use ``with``) when done.
    """

    def __init__(self, logdir: str | os.PathLike, histograms: bool = False):
        if not isinstance(logdir, str | os.PathLike):
            raise TypeError(
                f"TensorBoard logdir: expected a path, got {logdir!r}. "
                'Pass a folder, e.g. TensorBoard("runs/exp1").'
            )
        if not isinstance(histograms, bool):
            raise TypeError(
                f"TensorBoard histograms: expected a bool, got {histograms!r}."
            )
        try:
            import tensorboardX  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "TensorBoard: needs tensorboardX; pip install 'annjax[tensorboard]'."
            ) from exc
        self.logdir = Path(logdir)
        self.histograms = histograms
        self.wants_train_state = histograms
        self._writers: list = []

    def _writers_for(self, n: int, many: bool) -> list:
        from tensorboardX import SummaryWriter

        if not self._writers:
            dirs = (
                [self.logdir / f"model_{i}" for i in range(n)]
                if many
                else [self.logdir]
            )
            self._writers = [SummaryWriter(logdir=str(d)) for d in dirs]
        return self._writers

    def __call__(self, epoch: int, logs: dict, train_state=None) -> None:
        """Writes the epoch's values (and params' histograms); never stops."""
        models = _per_model(logs)
        many = np.ndim(logs["loss"]) > 0
        writers = self._writers_for(len(models), many)
        for i, (writer, values) in enumerate(zip(writers, models, strict=True)):
            for name, value in values.items():
                if name == STEP_LOSS:
                    first = epoch * value.shape[0]
                    for s, v in enumerate(value):
                        writer.add_scalar(STEP_LOSS, float(v), first + s)
                else:
                    writer.add_scalar(tag_of(name), float(value), epoch)
            if self.histograms and train_state is not None:
                params = train_state.params
                if many:
                    params = jax.tree_util.tree_map(lambda a, i=i: a[i], params)
                self._histograms(writer, params, epoch)
            writer.flush()

    @staticmethod
    def _histograms(writer, params, epoch: int) -> None:
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        for path, leaf in leaves:
            names = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
            writer.add_histogram("params/" + "/".join(names), np.asarray(leaf), epoch)

    def close(self) -> None:
        """Flushes and closes the event files."""
        for writer in self._writers:
            writer.close()
        self._writers = []

    def __enter__(self) -> TensorBoard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CSVLogger:
    """A callback writing one row per epoch (per model with ``fit_many``) to ``path``.

    Columns: ``epoch`` (``model`` too with ``fit_many``), then each scalar
    series of the history in the order of the first epoch's logs; values are
    written with ``repr``, so they read back as the same float32 numbers.

    Every epoch-0 call starts the file afresh with this run's header, so one
    logger can serve several ``fit`` calls, each with its own metrics (the
    last run's rows are what the file holds). A resumed run (first epoch > 0)
    appends to the file when it exists, under the file's header; if that
    header names other columns than the run's (other metrics, ``val_data``
    or ``fit_many``), the call raises ValueError rather than writing rows
    that do not fit it.

    Args:
      path: the CSV file (its folder is created).
    """

    def __init__(self, path: str | os.PathLike):
        if not isinstance(path, str | os.PathLike):
            raise TypeError(
                f"CSVLogger path: expected a file path, got {path!r}. "
                'Pass e.g. CSVLogger("runs/exp1.csv").'
            )
        self.path = Path(path)
        self.columns: list[str] | None = None

    def __call__(self, epoch: int, logs: dict) -> None:
        """Writes (epoch 0) or appends the epoch's rows; never stops training.

        Raises:
          ValueError: when appending to a file whose header names other
            columns than this run's logs.
        """
        models = _per_model(logs)
        many = np.ndim(logs["loss"]) > 0
        names = [k for k in logs if k != STEP_LOSS]
        columns = ["epoch", *(["model"] if many else []), *names]
        fresh = epoch == 0 or not self.path.exists()
        if not fresh:
            header = _header(self.path)
            if header != columns:
                raise ValueError(
                    f"CSVLogger: expected the columns of {str(self.path)!r}, "
                    f"{header}, got this run's {columns}. Log the resumed run "
                    "to another path, or resume with the same metrics."
                )
        self.columns = columns
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w" if fresh else "a", newline="") as f:
            out = csv.writer(f)
            if fresh:
                out.writerow(columns)
            for i, values in enumerate(models):
                row = [epoch, *([i] if many else [])]
                out.writerow(row + [repr(float(values[k])) for k in names])


def _header(path: Path) -> list[str]:
    """Returns the first row of a CSV file ([] for an empty file)."""
    with path.open(newline="") as f:
        return next(csv.reader(f), [])


def read_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Returns a :class:`CSVLogger` file as column name → array.

    ``epoch`` (and ``model``) are integers, the rest float32; for a
    ``fit_many`` file reshape a column to (epochs, models) with ``model``.

    Raises:
      ValueError: for an empty file or a row whose number of fields is not
        the header's (a file that CSVLogger did not write).
    """
    with Path(path).open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"read_csv: expected a header row in {str(path)!r}, got none.")
    header, body = rows[0], rows[1:]
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(
                f"read_csv: expected {len(header)} fields per row (the header's "
                f"{header}), got {len(row)} on line {line} of {str(path)!r}."
            )
    columns = list(zip(*body, strict=True)) if body else [()] * len(header)
    return {
        name: np.asarray(col, int if name in ("epoch", "model") else np.float32)
        for name, col in zip(header, columns, strict=True)
    }
