"""Regression on California housing: linear model vs MLP vs MLP with L2.

Lecture exercise: "regression with a neural network" and "regularisation".
The census features (median income, house age, rooms per household, …)
predict the median house value (in $100,000). Missing values (207 blank
``total_bedrooms``) are imputed with training means, features and target are
standardised with training statistics only, then three models minimise the
MSE with Adam and early stopping on the validation loss:

* linear regression, a single ``dense(1)`` (y = Wx + b), started at W = 0;
* an MLP with two ReLU hidden layers;
* the same MLP with an L2 penalty λ Σ W² (trained together with the plain MLP
  in ONE vmapped call by ``ann.fit_many``, since only λ differs).

Test RMSE and MAE are in the target's units; R² is 1 − SSE/SST.

Without the data file (``california_housing.csv`` in ``--data-dir`` or
``$ANNJAX_DATA_DIR``, or scikit-learn's cached copy) the script says so and
falls back to scikit-learn's bundled diabetes-progression regression set.

Run:
  ANNJAX_DATA_DIR=shared/datasets python examples/california_housing.py
  python examples/california_housing.py --quick
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import _common
import jax
import jax.numpy as jnp
import numpy as np

import annjax as ann

L2 = 1e-3


class Trained(NamedTuple):
    """A trained model and how it got there."""

    model: ann.Layer
    params: Any
    state: Any
    history: dict[str, np.ndarray]
    seconds: float


def load(data_dir: str | None) -> tuple[ann.datasets.Dataset, str]:
    """Returns the data set and a line naming it (the fallback said loudly)."""
    try:
        d = ann.datasets.load_california_housing(data_dir, download=False)
        return d, f"California housing: {len(d.y)} districts x {d.X.shape[1]}"
    except FileNotFoundError:
        from sklearn.datasets import load_diabetes

        b = load_diabetes()
        d = ann.datasets.Dataset(
            b.data.astype(np.float32),
            b.target.astype(np.float32),
            tuple(b.feature_names),
            ("disease progression",),
        )
        return d, (
            "California housing NOT FOUND (pass --data-dir or set ANNJAX_DATA_DIR); "
            f"using scikit-learn's diabetes regression set instead: {len(d.y)} x "
            f"{d.X.shape[1]}"
        )


def main(argv: list[str] | None = None) -> dict:
    """Trains the three regressors; returns their test RMSE, MAE and R²."""
    args = _common.parser(__doc__, "california_housing.png").parse_args(argv)
    data, note = load(args.data_dir)
    print(f"data: {note}")
    key = jax.random.key(args.seed)
    data_key, train_key = jax.random.split(key)
    splits = _common.prepare(data.X, data.y, key=data_key, val=0.15, test=0.15)
    y_scaler = ann.data.Standardizer.fit(splits.train[1])
    train, val = ((x, np.asarray(y_scaler.transform(y))) for x, y in splits[:2])
    X_te, y_te = splits.test
    epochs = 10 if args.quick else 100
    options = dict(
        val_data=val,
        loss="mse",
        optimizer=ann.adam(3e-3),
        epochs=epochs,
        batch_size=64,
        early_stopping=ann.EarlyStopping("val_loss", patience=8),
        progress=False,
    )
    print(
        f"train {len(train[1])}, val {len(val[1])}, test {len(y_te)}; up to "
        f"{epochs} epochs, Adam(3e-3), early stopping on val_loss\n"
    )

    start = time.perf_counter()
    linear_model = ann.dense(1, w_init="zeros")
    r = ann.fit(linear_model, train, key=train_key, **options)
    seconds = time.perf_counter() - start
    trained = {"linear": Trained(linear_model, r.params, r.state, r.history, seconds)}
    # Same initial weights for both MLPs (one key, twice): only λ differs.
    mlp = ann.mlp([64, 64, 1])
    start = time.perf_counter()
    many = ann.fit_many(
        mlp, train, keys=jnp.stack([train_key, train_key]), l2=[0.0, L2], **options
    )
    seconds = time.perf_counter() - start
    for i, name in enumerate(("MLP", f"MLP + L2 {L2:g}")):
        params, state = jax.tree_util.tree_map(
            lambda a, i=i: a[i], (many.params, many.state)
        )
        # fit_many pads a model stopped early with NaN epochs; drop them.
        history = {k: v[:, i][np.isfinite(v[:, i])] for k, v in many.history.items()}
        trained[name] = Trained(mlp, params, state, history, seconds)

    rows = []
    for name, t in trained.items():
        out = _common.predict_parts(
            t.model, t.params, t.state, {"val": val[0], "test": X_te}
        )
        val_pred, test_pred = (
            np.asarray(y_scaler.inverse_transform(out[p][:, 0]))
            for p in ("val", "test")
        )
        rows.append(
            {
                "model": name,
                "params": _common.num_params(t.params),
                "epochs": len(t.history["loss"]),
                "val RMSE": float(ann.metrics.rmse(splits.val[1], val_pred)),
                "test RMSE": float(ann.metrics.rmse(y_te, test_pred)),
                "test MAE": float(ann.metrics.mae(y_te, test_pred)),
                "test R2": float(ann.metrics.r2(y_te, test_pred)),
                "seconds": t.seconds,
            }
        )
    _common.print_table(
        rows,
        {
            "model": "",
            "params": ",d",
            "epochs": "d",
            "val RMSE": ".4f",
            "test RMSE": ".4f",
            "test MAE": ".4f",
            "test R2": ".4f",
            "seconds": ".1f",
        },
    )
    print("(both MLPs trained together in one fit_many call; their seconds are shared)")
    figure = _common.plot_curves(
        {name: t.history for name, t in trained.items()},
        [
            (
                "MSE, standardised target (solid: val, dashed: train)",
                ["val_loss", "loss"],
            )
        ],
        _common.figure_path(args.out, "california_housing.png"),
        note.split(":")[0],
    )
    print(f"learning curves: {figure}")
    return {
        "data": note,
        "results": {r["model"]: r for r in rows},
        "figure": str(figure),
    }


if __name__ == "__main__":
    ann.enable_compilation_cache()  # process-wide: see the README
    main()
