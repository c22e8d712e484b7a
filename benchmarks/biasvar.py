"""Workload ``biasvar``: the bias–variance protocols, annjax against their peers.

Same protocol, same model, same rounds, in one run:

* ``decomp``: ``ann.analysis.bias_variance`` (R bootstrap replicas in one
  ``fit_many``) against ``mlxtend.evaluate.bias_variance_decomp`` with
  scikit-learn's ``MLPRegressor`` (R fits, one after another), and with a
  Keras model when Keras is installed;
* ``learning``: ``ann.analysis.learning_curve`` (S sizes × R rounds in one
  ``fit_many``) against scikit-learn's ``learning_curve`` with
  ``MLPRegressor`` (``ShuffleSplit`` with R splits: S × R fits).

The model: one hidden layer of 32 ReLU units, Adam at 3e-3, batch 64, E
epochs without early stopping, on the first 1,000 standardised examples of
California housing (scikit-learn's diabetes set without the file). The
annjax protocol runs twice: the first call compiles (the persistent cache is
off unless enabled), the second runs the compiled programs. Each line prints
wall and process CPU seconds, and each peer's ratio peer / annjax's first
call (wall, CPU); Keras is not compared here (not installed in the project
venv)::

    ANNJAX_DATA_DIR=shared/datasets python benchmarks/biasvar.py
    python benchmarks/biasvar.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

import annjax as ann

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

WIDTH, LR, BATCH = 32, 3e-3, 64


def data(n: int):
    """Returns standardised (train, test) pairs of n examples each."""
    import _common
    from california_housing import load

    d, _ = load(None)
    s = _common.prepare(d.X, d.y, key=jax.random.key(0), val=0.0, test=0.3)
    train, test = ((x[:n], y[:n].astype(np.float32)) for x, y in (s.train, s.test))
    return train, test


def sklearn_mlp(epochs: int, seed: int = 0):
    from sklearn.neural_network import MLPRegressor

    return MLPRegressor(
        hidden_layer_sizes=(WIDTH,),
        solver="adam",
        learning_rate_init=LR,
        batch_size=BATCH,
        max_iter=epochs,
        n_iter_no_change=epochs + 1,  # no early end: exactly `epochs` epochs
        tol=0.0,
        random_state=seed,
    )


def timed(fn):
    """Returns ((wall, process CPU) seconds, fn()): the CPU time shows the work
    when other processes share the machine."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - start, time.process_time() - cpu), out


def line(task: str, who: str, t, note: str, base=None) -> None:
    ratio = (
        f"  ratio {t[0] / base[0]:.1f}x wall, {t[1] / base[1]:.1f}x cpu" if base else ""
    )
    print(f"{task:7s} {who:24s} {t[0]:7.2f} s wall {t[1]:7.2f} s cpu  {note}{ratio}")


def annjax_twice(fn):
    """Returns (cold, warm) timings and the warm result: the first call
    compiles, the second (same shapes) runs the compiled epoch."""
    cold, _ = timed(fn)
    warm, out = timed(fn)
    return cold, warm, out


def decomposition(train, test, rounds: int, epochs: int) -> dict[str, float]:
    """Returns the seconds of each implementation of the bootstrap protocol."""
    from mlxtend.evaluate import bias_variance_decomp

    fit_kwargs = dict(optimizer=ann.adam(LR), epochs=epochs, batch_size=BATCH)
    model = ann.mlp([WIDTH, 1])
    cold, warm, d = annjax_twice(
        lambda: ann.analysis.bias_variance(
            model, train, test, rounds=rounds, key=jax.random.key(0), **fit_kwargs
        )
    )
    out = {"annjax": cold, "annjax (compiled)": warm}
    note = (
        f"expected {d.expected_loss:.4f} bias² {d.bias:.4f} variance {d.variance:.4f}"
    )
    line("decomp", "annjax (first call)", cold, note)
    line("decomp", "annjax (compiled)", warm, note)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, m = timed(
            lambda: bias_variance_decomp(
                sklearn_mlp(epochs),
                *train,
                *test,
                loss="mse",
                num_rounds=rounds,
                random_seed=0,
            )
        )
    out["sklearn+mlxtend"] = seconds
    note = f"expected {m[0]:.4f} bias² {m[1]:.4f} variance {m[2]:.4f}"
    line("decomp", "sklearn MLP + mlxtend", seconds, note, cold)
    return out


def learning(train, test, rounds: int, epochs: int, sizes) -> dict[str, float]:
    """Returns the seconds of each implementation of the learning curve."""
    from sklearn.model_selection import ShuffleSplit
    from sklearn.model_selection import learning_curve as sk_learning_curve

    X = np.concatenate([train[0], test[0]])
    y = np.concatenate([train[1], test[1]])
    fit_kwargs = dict(
        loss="mse", optimizer=ann.adam(LR), epochs=epochs, batch_size=BATCH
    )
    cold, warm, lc = annjax_twice(
        lambda: ann.analysis.learning_curve(
            ann.mlp([WIDTH, 1]),
            train,
            val_data=test,
            sizes=sizes,
            rounds=rounds,
            key=jax.random.key(0),
            **fit_kwargs,
        )
    )
    out = {"annjax": cold, "annjax (compiled)": warm}
    note = f"val MSE {np.round(lc.val['loss'].mean(1), 4)}"
    line("learn", "annjax (first call)", cold, note)
    line("learn", "annjax (compiled)", warm, note)
    cv = ShuffleSplit(rounds, test_size=len(test[1]), random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, (_, _, val) = timed(
            lambda: sk_learning_curve(
                sklearn_mlp(epochs),
                X,
                y,
                train_sizes=sizes,
                cv=cv,
                scoring="neg_mean_squared_error",
                n_jobs=1,
            )
        )
    out["sklearn"] = seconds
    note = f"val MSE {np.round(-val.mean(1), 4)}"
    line("learn", "sklearn learning_curve", seconds, note, cold)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny protocol (smoke)")
    args = p.parse_args(argv)
    n, rounds, epochs = (200, 3, 2) if args.quick else (1000, 20, 50)
    sizes = (0.2, 0.6, 1.0) if args.quick else (0.1, 0.325, 0.55, 0.775, 1.0)
    train, test = data(n)
    print(
        f"biasvar: {n} train / {len(test[1])} test examples, {WIDTH}-unit MLP, "
        f"{rounds} rounds, {epochs} epochs, batch {BATCH}"
    )
    return {
        "decomp": decomposition(train, test, rounds, epochs),
        "learning": learning(train, test, 5 if not args.quick else 2, epochs, sizes),
    }


if __name__ == "__main__":
    main()
