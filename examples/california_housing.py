"""Regression on California housing: linear model vs MLP vs L2, then the best recipe.

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

Then the best recipe annjax expresses, against scikit-learn's
``HistGradientBoostingRegressor`` (trained on train + validation, its own
early stopping inside) measured in the same run on the same test set:

* inputs: the skewed counts (rooms, bedrooms, population, occupancy) in logs,
  the coordinates also rotated by 15°, 30°, …, 165° (a network sees a
  diagonal coast as easily as a tree sees a split), imputed and standardised
  with training statistics;
* the target: log(value), standardised; the Huber loss;
* a grid of learning-rate scales × L2 strengths in ONE ``fit_many``; the
  configuration with the lowest validation RMSE (in $100,000) wins;
* an ensemble: the winner's configuration trained from several seeds (a
  second ``fit_many``), ``ManyResult.ensemble``: their mean log-value.

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


#: The recipe's grid (one fit_many): learning-rate scales × L2 strengths.
LR_SCALES, L2S = (0.5, 1.0, 2.0), (0.0, 1e-5)
#: Features whose heavy right tails read better in logs (all positive).
SKEWED = ("AveRooms", "AveBedrms", "Population", "AveOccup")


def engineered(data: ann.datasets.Dataset) -> np.ndarray:
    """Returns the recipe's inputs: skewed columns in logs, and for California
    the coordinates rotated by 15°, 30°, …, 165° as extra columns."""
    X = np.array(data.X, np.float32)
    for i, name in enumerate(data.feature_names):
        if name in SKEWED:
            X[:, i] = np.log(X[:, i])
    if {"Latitude", "Longitude"} <= set(data.feature_names):
        lat = X[:, [data.feature_names.index("Latitude")]]
        lon = X[:, [data.feature_names.index("Longitude")]]
        angles = np.deg2rad(np.arange(15, 180, 15))
        X = np.concatenate([X, lat * np.cos(angles) + lon * np.sin(angles)], axis=1)
    return X.astype(np.float32)


def recipe(data, key, quick: bool) -> list[dict]:
    """Returns the table rows of the recipe: the best grid point and its ensemble."""
    data_key, train_key = jax.random.split(key)
    s = _common.prepare(engineered(data), data.y, key=data_key, val=0.15, test=0.15)
    y_scaler = ann.data.Standardizer.fit(np.log(s.train[1]))
    train, val = ((x, np.asarray(y_scaler.transform(np.log(y)))) for x, y in s[:2])

    def in_units(z):  # standardised log-target → $100,000, any leading axes
        z = np.asarray(z)[..., 0]
        return np.exp(np.asarray(y_scaler.inverse_transform(z.ravel()))).reshape(
            z.shape
        )

    model = ann.mlp([32, 32, 1] if quick else [128, 128, 128, 1])
    grid = [(lr, l2) for l2 in L2S for lr in LR_SCALES]
    options = dict(
        val_data=val,
        loss="huber",
        optimizer=ann.adam(1e-3),
        epochs=3 if quick else 150,
        batch_size=128,
        early_stopping=ann.EarlyStopping("val_loss", patience=30),
        progress=False,
    )
    start = time.perf_counter()
    many = ann.fit_many(
        model,
        train,
        keys=jnp.stack([train_key] * len(grid)),
        lr_scale=[g[0] for g in grid],
        l2=[g[1] for g in grid],
        **options,
    )
    val_pred = in_units(many.predict(s.val[0]))  # every model in one call
    val_rmse = [float(ann.metrics.rmse(s.val[1], p)) for p in val_pred]
    best = int(np.argmin(val_rmse))
    lr, l2 = grid[best]
    single = in_units(many.predict(s.test[0])[best])
    seconds = time.perf_counter() - start
    seeds = 2 if quick else 5
    start = time.perf_counter()
    members = ann.fit_many(
        model,
        train,
        keys=jax.random.split(train_key, seeds),
        lr_scale=lr,
        l2=l2,
        **options,
    )
    ensemble = in_units(members.ensemble(s.test[0]))  # the mean log-value
    # the row names stay the same in every run (the report's shape); what the
    # grid chose and how many seeds the ensemble has go to the line below it
    choice = f"lr x{lr:g}, L2 {l2:g}; its ensemble: {seeds} seeds"
    return [
        _row(
            f"recipe: best of {len(grid)}",
            s,
            single,
            val_rmse[best],
            many,
            best,
            seconds,
        )
        | {"choice": choice},
        _row(
            "recipe: ensemble of seeds",
            s,
            ensemble,
            float("nan"),
            members,
            None,
            time.perf_counter() - start,
        ),
    ]


def _row(name, s, test_pred, val_rmse, many, index, seconds) -> dict:
    """Returns one table row of a recipe's test predictions."""
    params = jax.tree_util.tree_map(lambda a: a[0], many.params)
    epochs = many.model_epochs if index is None else many.model_epochs[[index]]
    y_te = s.test[1]
    return {
        "model": name,
        "params": _common.num_params(params),
        "epochs": int(np.max(epochs)),
        "val RMSE": val_rmse,
        "test RMSE": float(ann.metrics.rmse(y_te, test_pred)),
        "test MAE": float(ann.metrics.mae(y_te, test_pred)),
        "test R2": float(ann.metrics.r2(y_te, test_pred)),
        "seconds": seconds,
    }


def gradient_boosting(data, key, quick: bool) -> dict | None:
    """Returns scikit-learn's HistGradientBoostingRegressor's row on the same
    test set (fitted on train + validation), or None without scikit-learn."""
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:
        return None
    data_key, _ = jax.random.split(key)
    s = _common.prepare(
        data.X, data.y, key=data_key, val=0.15, test=0.15, standardize=False
    )
    X = np.concatenate([s.train[0], s.val[0]])
    y = np.concatenate([s.train[1], s.val[1]])
    start = time.perf_counter()
    hgb = HistGradientBoostingRegressor(max_iter=20 if quick else 100, random_state=0)
    pred = hgb.fit(X, y).predict(s.test[0])
    val = float("nan")  # its validation is internal (early stopping)
    return {
        "model": "HistGradientBoosting (scikit-learn)",
        "params": 0,
        "epochs": int(hgb.n_iter_),
        "val RMSE": val,
        "test RMSE": float(ann.metrics.rmse(s.test[1], pred)),
        "test MAE": float(ann.metrics.mae(s.test[1], pred)),
        "test R2": float(ann.metrics.r2(s.test[1], pred)),
        "seconds": time.perf_counter() - start,
    }


@_common.writes_report("california_housing")
def main(argv: list[str] | None = None) -> dict:
    """Trains the three regressors and the recipe, measures HGB; returns their
    test RMSE, MAE and R²."""
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
    rows += recipe(data, key, args.quick)
    hgb = gradient_boosting(data, key, args.quick)
    rows += [hgb] if hgb is not None else []
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
    choice = next(r["choice"] for r in rows if "choice" in r)
    print(f"recipe: the grid chose {choice}")
    print(
        "(both MLPs trained together in one fit_many call, their seconds shared; "
        "the recipe's grid in one call, its ensemble in a second; HGB: epochs = "
        "boosting iterations)"
    )
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
