"""Bad input to ``fit``, ``evaluate`` and ``predict``: a ValueError (TypeError
for a wrong type) that names the argument, raised before anything compiles.

``fit``'s compiled epoch is replaced by a function that fails the test, so a
check that came too late (after training started) shows up as a failure; for
checks that need no model at all, the model's initialisation is forbidden too.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

import annjax as ann
from annjax.training import fitting as fit_module
from annjax.training import loop

N = 6
X = np.arange(N * 3, dtype=np.float32).reshape(N, 3) / 10
Y = np.array([0, 1, 0, 1, 0, 1], np.int32)
MODEL = ann.dense(2)


class Started(Exception):
    """Raised when fit got past its checks into something it should not reach."""


def _forbidden(*args, **kwargs):
    raise Started("fit started work before rejecting its input")


def _with_nan(a: np.ndarray, value: float = np.nan) -> np.ndarray:
    a = a.astype(np.float32).copy()
    a.flat[1] = value
    return a


def _kwargs(**overrides) -> dict:
    """Returns valid fit arguments with ``overrides``."""
    kwargs = {"train_data": (X, Y), "epochs": 1, "progress": False}
    kwargs.update(overrides)
    return kwargs


# (id, fit arguments, exception, pattern of the message)
BEFORE_INIT = [
    ("lengths", _kwargs(train_data=(X, Y[:-1])), ValueError, r"train_data.*same"),
    ("empty", _kwargs(train_data=(X[:0], Y[:0])), ValueError, r"train_data X.*one"),
    ("not_a_pair", _kwargs(train_data=X), ValueError, r"train_data.*pair"),
    ("nan_x", _kwargs(train_data=(_with_nan(X), Y)), ValueError, r"train_data X.*NaN"),
    (
        "inf_x",
        _kwargs(train_data=(_with_nan(X, np.inf), Y)),
        ValueError,
        r"train_data X.*finite",
    ),
    (
        "nan_y",
        _kwargs(train_data=(X, _with_nan(Y)), loss="mse"),
        ValueError,
        r"train_data y.*finite",
    ),
    (
        "nan_val_x",
        _kwargs(val_data=(_with_nan(X), Y)),
        ValueError,
        r"val_data X.*finite",
    ),
    (
        "inf_val_y",
        _kwargs(val_data=(X, _with_nan(Y, -np.inf)), loss="mse"),
        ValueError,
        r"val_data y.*finite",
    ),
    (
        "string_x",
        _kwargs(train_data=(np.array(["a"] * N), Y)),
        TypeError,
        r"train_data X",
    ),
    ("batch_size_0", _kwargs(batch_size=0), ValueError, r"batch_size"),
    ("batch_size_neg", _kwargs(batch_size=-4), ValueError, r"batch_size"),
    ("batch_size_float", _kwargs(batch_size=2.5), TypeError, r"batch_size"),
    ("eval_batch_size_0", _kwargs(eval_batch_size=0), ValueError, r"eval_batch_size"),
    ("epochs_neg", _kwargs(epochs=-1), ValueError, r"epochs"),
    ("epochs_float", _kwargs(epochs=1.5), TypeError, r"epochs"),
    ("l1_neg", _kwargs(l1=-0.1), ValueError, r"l1"),
    ("l2_neg", _kwargs(l2=-1e-4), ValueError, r"l2"),
    ("l2_string", _kwargs(l2="0.1"), TypeError, r"l2"),
    ("unknown_loss", _kwargs(loss="hinge_of_doom"), ValueError, r"loss"),
    ("loss_not_a_name", _kwargs(loss=3), TypeError, r"loss"),
    ("unknown_metric", _kwargs(metrics=("acuracy",)), ValueError, r"metric"),
    (
        "val_features",
        _kwargs(val_data=(X[:, :2], Y)),
        ValueError,
        r"val_data X.*\(3,\).*\(2,\)",
    ),
    ("val_lengths", _kwargs(val_data=(X, Y[:3])), ValueError, r"val_data.*same"),
    (
        "early_stopping_without_val",
        _kwargs(early_stopping=ann.EarlyStopping(monitor="val_loss")),
        ValueError,
        r"val_loss.*val_data",
    ),
    (
        "patience_0",
        _kwargs(val_data=(X, Y), early_stopping=ann.EarlyStopping(patience=0)),
        ValueError,
        r"patience",
    ),
    (
        "min_delta_neg",
        _kwargs(val_data=(X, Y), early_stopping=ann.EarlyStopping(min_delta=-1.0)),
        ValueError,
        r"min_delta",
    ),
    (
        "mode",
        _kwargs(val_data=(X, Y), early_stopping=ann.EarlyStopping(mode="up")),
        ValueError,
        r"mode",
    ),
    (
        "monitor_not_tracked",
        _kwargs(val_data=(X, Y), early_stopping=ann.EarlyStopping(monitor="val_f1")),
        ValueError,
        r"monitor",
    ),
    ("optimizer_name", _kwargs(optimizer="adam"), TypeError, r"optimizer"),
    ("optimizer_object", _kwargs(optimizer=object()), TypeError, r"optimizer"),
]

# checks that need the model's output shape, hence its initialisation
AFTER_INIT = [
    ("label_too_big", _kwargs(train_data=(X, Y + 1)), r"train_data y.*\[0, 2\)"),
    ("label_negative", _kwargs(train_data=(X, Y - 1)), r"train_data y.*\[0, 2\)"),
    ("val_label", _kwargs(val_data=(X, Y * 2)), r"val_data y.*\[0, 2\)"),
    (
        "one_hot_width",
        _kwargs(train_data=(X, np.eye(3, dtype=np.float32)[Y])),
        r"train_data y.*\(n, 2\)",
    ),
    (
        "mse_target_shape",
        _kwargs(train_data=(X, np.zeros((N, 3), np.float32)), loss="mse"),
        r"train_data y.*\(n, 2\)",
    ),
]


@pytest.fixture
def forbid(monkeypatch):
    """Returns ``forbid(init=...)``: makes training (and init) fail the test."""

    def setup(init: bool) -> None:
        monkeypatch.setattr(loop, "run_epoch", _forbidden)
        if init:
            monkeypatch.setattr(fit_module, "start_states", _forbidden)

    return setup


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [case[1:] for case in BEFORE_INIT],
    ids=[case[0] for case in BEFORE_INIT],
)
def test_bad_fit_input_raises_before_init(forbid, kwargs, error, match):
    forbid(init=True)
    with pytest.raises(error, match=match):
        ann.fit(MODEL, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [case[1:] for case in AFTER_INIT],
    ids=[case[0] for case in AFTER_INIT],
)
def test_targets_that_do_not_fit_the_model_raise_before_training(forbid, kwargs, match):
    forbid(init=False)
    with pytest.raises(ValueError, match=match):
        ann.fit(MODEL, **kwargs)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ann.sgd(0.0), "learning_rate"),
        (lambda: ann.sgd(-0.1), "learning_rate"),
        (lambda: ann.adam(0.0), "learning_rate"),
    ],
)
def test_learning_rate_must_be_positive(forbid, make, match):
    forbid(init=True)
    with pytest.raises(ValueError, match=match):
        ann.fit(MODEL, (X, Y), optimizer=make(), progress=False)


def test_any_optax_transformation_passes_the_checks(forbid):
    forbid(init=False)
    with pytest.raises(Started):  # the checks pass, training would start
        ann.fit(MODEL, (X, Y), optimizer=optax.adam(1e-3), progress=False)


@pytest.mark.parametrize(
    ("monitor", "mode", "want"),
    [
        ("val_accuracy", "min", "'max' or 'auto'"),
        ("val_loss", "max", "'min' or 'auto'"),
    ],
)
def test_early_stopping_against_the_metric_direction_raises(
    forbid, monitor, mode, want
):
    forbid(init=True)
    es = ann.EarlyStopping(monitor=monitor, mode=mode)
    with pytest.raises(ValueError, match=f"EarlyStopping mode: expected {want}"):
        ann.fit(
            MODEL, (X, Y), val_data=(X, Y), metrics=("accuracy",), early_stopping=es
        )


def test_early_stopping_validate_names_the_field():
    with pytest.raises(ValueError, match="patience"):
        ann.EarlyStopping(patience=0).validate()
    with pytest.raises(TypeError, match="patience"):
        ann.EarlyStopping(patience=1.5).validate()


# --- evaluate and predict ----------------------------------------------------


@pytest.fixture(scope="module")
def params_state():
    _, params, state = MODEL.init(jax.random.key(0), (3,))
    return params, state


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "match"),
    [
        ((X, Y[:-1]), {}, ValueError, r"data.*same"),
        ((_with_nan(X), Y), {}, ValueError, r"data X.*finite"),
        ((X, Y + 1), {}, ValueError, r"data y.*\[0, 2\)"),
        ((X, Y), {"metrics": ("nope",)}, ValueError, r"metric"),
        ((X, Y), {"loss": "nope"}, ValueError, r"loss"),
        ((X, Y), {"batch_size": 0}, ValueError, r"batch_size"),
    ],
    ids=["lengths", "nan", "labels", "metric", "loss", "batch_size"],
)
def test_bad_evaluate_input(params_state, data, kwargs, error, match):
    with pytest.raises(error, match=match):
        ann.evaluate(MODEL, *params_state, data, **kwargs)


def test_bad_predict_input(params_state):
    with pytest.raises(ValueError, match="batch_size"):
        ann.predict(MODEL, *params_state, X, batch_size=0)
    with pytest.raises(TypeError, match="x"):
        ann.predict(MODEL, *params_state, np.array(["a", "b"]))
