"""Watching and keeping runs: TensorBoard, CSV, per-step losses, an export.

The three deep MLPs of ``gradient_problems.py`` (sigmoid with the lecture's
U(−0.5, 0.5) weights, ReLU + He, residual + batch norm) train on the digits
with the profiler on; each run writes:

- TensorBoard event files under ``<logdir>/<run>`` (``ann.callbacks.TensorBoard``:
  loss, accuracy, lr, ``layer/grad_norm/<layer>``, ``layer/update_ratio/…``,
  ``layer/saturation/…``, ``step_loss`` per step, parameter histograms);
- a CSV file ``<logdir>/<run>.csv`` (``ann.callbacks.CSVLogger``);

and a callback stops a run whose first layer's gradient norm falls below
1e-6 × the output layer's. The best model is exported with ``ann.export``
and loaded back with ``ann.load_exported`` (as another process would,
without the model code). The figure plots the scalars TensorBoard shows for
the sigmoid run: per-layer gradient norms per epoch and the per-step loss.

Run:
  python examples/watch_runs.py                      # about half a minute
  tensorboard --logdir examples/out/runs             # then open localhost:6006
  python examples/watch_runs.py --quick
"""

from __future__ import annotations

from pathlib import Path

import _common
import gradient_problems
import jax
import numpy as np

import annjax as ann

RUNS = dict(
    zip(
        ("sigmoid", "relu_he", "residual_bn"),
        gradient_problems.MODELS.values(),
        strict=True,
    )
)


def vanished(epoch: int, logs: dict) -> bool:
    """Returns True (stop) when dense_0's gradient is 1e-6 × the output layer's."""
    norms = {k: float(v) for k, v in logs.items() if k.startswith("grad_norm/dense_")}
    last = max(norms, key=lambda k: int(k.rsplit("_", 1)[1]))
    return norms["grad_norm/dense_0"] < 1e-6 * norms[last]


@_common.writes_report("watch_runs")
def main(argv: list[str] | None = None) -> dict:
    """Trains the three runs with the callbacks; returns their files and figure."""
    p = _common.parser(__doc__, "watch_runs.png", data=False)
    p.add_argument("--logdir", default=None, help="default: <out folder>/runs")
    args = p.parse_args(argv)
    try:  # before any training: ann.callbacks.TensorBoard needs it
        import tensorboardX  # noqa: F401
    except ImportError:
        raise SystemExit(
            "watch_runs.py writes TensorBoard files with tensorboardX, which is not "
            'installed: pip install -e ".[examples]" (or "annjax[tensorboard]")'
        ) from None
    figure = _common.figure_path(args.out, "watch_runs.png")
    logdir = Path(args.logdir or figure.parent / "runs")
    data_key, train_key = jax.random.split(jax.random.key(args.seed))
    splits, note = _common.image_splits(
        "digits", key=data_key, data_dir=None, val=0.2, test=0.2
    )
    epochs = 2 if args.quick else 15
    print(f"data: {note}; {epochs} epochs; TensorBoard logs in {logdir}\n")
    results = {}
    for run, model in RUNS.items():
        with ann.callbacks.TensorBoard(logdir / run, histograms=True) as tb:
            results[run] = ann.fit(
                model,
                splits.train,
                val_data=splits.val,
                optimizer=ann.sgd(0.1),
                epochs=epochs,
                batch_size=32,
                metrics=("accuracy",),
                track_gradients=True,
                log_steps=True,
                callbacks=[
                    tb,
                    ann.callbacks.CSVLogger(logdir / f"{run}.csv"),
                    vanished,
                ],
                key=train_key,
                progress=False,
            )
        accuracy = results[run].history["val_accuracy"][-1]
        print(f"{run}: val accuracy {accuracy:.3f} ({results[run].stop_reason})")
    best = max(results, key=lambda r: results[r].history["val_accuracy"][-1])
    exported = _export(
        RUNS[best], results[best], splits.test[0], logdir / f"{best}.annx"
    )
    _plot(results["sigmoid"].history, figure)
    print(f"figure: {figure}")
    return {"logdir": logdir, "results": results, "figure": str(figure), **exported}


def _export(model, result, x_test, path) -> dict:
    """Exports the model, loads it back and returns the largest difference."""
    ann.export(model, result.params, result.state, x_test.shape[1:], path)
    f = ann.load_exported(path)
    diff = float(
        np.max(
            np.abs(f(x_test) - ann.predict(model, result.params, result.state, x_test))
        )
    )
    print(f"exported to {path}; loaded back, max |f(x) - predict(x)| = {diff:.2g}")
    return {"export": path, "export_diff": diff}


def _plot(history: dict, path) -> None:
    """Plots per-layer gradient norms per epoch and the per-step loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4))
    layers = sorted(
        (k for k in history if k.startswith("grad_norm/dense_")),
        key=lambda k: int(k.rsplit("_", 1)[1]),
    )
    colors = plt.cm.viridis(np.linspace(0, 1, len(layers)))
    for name, color in zip(layers, colors, strict=True):
        left.semilogy(history[name], color=color, label=name.split("/")[1])
    left.set(title="layer/grad_norm/<layer> (sigmoid run)", xlabel="epoch")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    # beside the axes, so that it covers no line
    left.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    steps = history["step_loss"]
    right.plot(steps, lw=0.6, color="tab:orange")
    right.set(title="step_loss (log_steps=True)", xlabel="step", ylabel="loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
