"""End to end: train on the digits, diagnose the history, find the lecture's
problems where they are and nowhere else.

Each case asserts the finding and, from the history, that its numbers are far
from the threshold (not borderline): runs use fixed keys, small subsets and
few epochs, so the file runs in well under a minute or two on two cores.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import annjax as ann
from annjax.analysis import findings as diagnostics
from annjax.analysis.diagnose import diagnose
from annjax.training.epoch import TRAIN_EVAL_EXAMPLES

sklearn_datasets = pytest.importorskip("sklearn.datasets")

DEEP = [32] * 10 + [10]  # ten hidden layers


@pytest.fixture(scope="module")
def digits():
    """Returns ((X, y) training, (X, y) validation): 8×8 digits scaled to [0, 1]."""
    d = sklearn_datasets.load_digits()
    x, y = (d.data / 16).astype(np.float32), d.target.astype(np.int32)
    return (x[:300], y[:300]), (x[1400:], y[1400:])


def train(
    digits, model, optimizer, *, n=300, epochs=3, batch_size=64, track=True, **fit
):
    (x, y), val = digits
    result = ann.fit(
        model,
        (x[:n], y[:n]),
        val_data=val,
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        metrics=("accuracy",),
        track_gradients=track,
        progress=False,
        key=jax.random.key(0),
        **fit,
    )
    findings = diagnose(result.history)
    print(findings)  # shown by pytest -s, and on failure
    return result.history, findings


def depth_ratio(history) -> np.ndarray:
    """Returns ‖g_first‖ / ‖g_last‖ per epoch."""
    grads = list(diagnostics.per_layer(history).values())
    return grads[0] / grads[-1]


def kinds(findings) -> set[str]:
    return {f.kind for f in findings}


def test_deep_sigmoid_with_lecture_init_has_vanishing_gradients(digits):
    model = ann.mlp(DEEP, "sigmoid", w_init=ann.initializers.lecture_uniform)
    history, findings = train(digits, model, ann.sgd(0.1))
    (f,) = [f for f in findings if f.kind == "vanishing_gradients"]
    assert (f.layer, f.epoch) == ("dense_0", 0)
    assert "that of the last layer dense_20" in f.message
    # σ' ≤ 1/4 and |w| ≤ 1/2 through ten layers: ~4e-5, 25× below 1e-3.
    assert np.all(depth_ratio(history) < 1e-4)


@pytest.mark.parametrize(
    "model",
    [ann.mlp(DEEP, "relu"), ann.mlp(DEEP, "relu", residual=True, batch_norm=True)],
    ids=["relu-he", "residual-batch-norm"],
)
def test_relu_he_and_residual_batch_norm_have_no_vanishing_gradients(digits, model):
    history, findings = train(digits, model, ann.sgd(0.1))
    assert "vanishing_gradients" not in kinds(findings)
    assert not kinds(findings) & {"non_finite", "exploding_gradients"}
    assert np.all(depth_ratio(history) > 1e-1)  # 100× above the threshold


def large_init_model():
    return ann.mlp([32] * 6 + [10], "relu", w_init=ann.initializers.uniform(-3, 3))


def test_large_initialisation_explodes(digits):
    _, findings = train(digits, large_init_model(), ann.sgd(0.1), epochs=2)
    assert kinds(findings) & {"exploding_gradients", "non_finite"}
    assert findings[0].kind in ("non_finite", "exploding_gradients")


def test_gradient_clipping_removes_the_explosion(digits):
    optimizer = ann.sgd(0.1, clip_norm=1.0)
    history, findings = train(digits, large_init_model(), optimizer, epochs=2)
    assert not kinds(findings) & {"exploding_gradients", "non_finite"}
    ratios = diagnostics.per_layer(history, "update_ratio").values()
    assert max(r.max() for r in ratios) < 1e-2  # clipped steps: 100× below 1


def test_large_network_on_few_examples_overfits(digits):
    model, optimizer = ann.mlp([256, 256, 10]), ann.adam(1e-2)
    settings = {"n": 100, "batch_size": 50, "track": False}
    history, findings = train(digits, model, optimizer, epochs=25, **settings)
    (f,) = [f for f in findings if f.kind == "overfitting"]
    val = history["val_loss"]
    turn = int(np.argmin(val))
    assert f.epoch == turn and f"epoch {turn}" in f.message
    assert 0 < turn < 20 and val[-1] > 1.3 * val[turn]  # +30%, 3× the threshold
    assert history["loss"][-1] < 0.1 * history["loss"][turn]
    # Stopped early, the same run (same compiled epoch) still shows where it turned.
    stop = ann.EarlyStopping(patience=4)
    stopped, findings = train(
        digits, model, optimizer, epochs=25, early_stopping=stop, **settings
    )
    assert len(stopped["loss"]) == turn + 5
    (f,) = [f for f in findings if f.kind == "overfitting"]
    assert f.epoch == turn


def test_one_unit_bottleneck_underfits(digits):
    model = ann.serial(ann.dense(1), ann.activation("relu"), ann.dense(10))
    history, findings = train(digits, model, ann.adam(1e-2), epochs=10, track=False)
    assert "underfitting" in kinds(findings)
    assert "overfitting" not in kinds(findings)
    assert history["accuracy"].max() < 0.4  # far below 0.6


def _lagging_batch_norm(momentum: float) -> ann.Layer:
    return ann.serial(
        ann.dense(64),
        ann.batch_norm(momentum=momentum),
        ann.activation("relu"),
        ann.dense(10),
    )


@pytest.mark.parametrize(
    ("steps_per_call", "eval_batch_size", "m"),
    [(None, 100, 100), (2, 1024, TRAIN_EVAL_EXAMPLES)],  # the slice: ≤ 256
)
def test_batch_norm_lag_is_a_train_eval_gap_with_chance_validation(
    digits, steps_per_call, eval_batch_size, m
):
    """momentum 0.999 after ~90 steps: the running statistics are still near
    their initial (0, 1) while the inputs' offset of 10 moves every
    pre-activation; evaluation mode sees other activations than training."""
    (x, y), (xv, yv) = digits
    result = ann.fit(
        _lagging_batch_norm(0.999),
        (x + 10, y),
        val_data=(xv + 10, yv),
        optimizer=ann.adam(1e-2),
        epochs=4,
        batch_size=64,
        metrics=("accuracy",),
        eval_batch_size=eval_batch_size,
        steps_per_call=steps_per_call,
        progress=False,
        key=jax.random.key(0),
    )
    h = result.history
    # the slice in eval mode: the first m training examples
    slice_scores = ann.evaluate(
        _lagging_batch_norm(0.999),
        result.params,
        result.state,
        (x[:m] + 10, y[:m]),
        loss="softmax_cross_entropy",
        metrics=("accuracy",),
    )
    assert h["train_eval_loss"][-1] == pytest.approx(slice_scores["loss"], rel=1e-5)
    assert h["train_eval_accuracy"][-1] == pytest.approx(slice_scores["accuracy"])
    assert h["accuracy"][-1] > 0.9 and h["train_eval_accuracy"][-1] < 0.2
    findings = diagnose(h)
    assert {"train_eval_gap", "chance_validation"} <= kinds(findings)
    gap = next(f for f in findings if f.kind == "train_eval_gap")
    assert "momentum" in gap.remedy


def test_batch_norm_that_keeps_up_has_no_train_eval_gap(digits):
    (x, y), (xv, yv) = digits
    history, findings = train(
        ((x, y), (xv, yv)),
        _lagging_batch_norm(0.9),
        ann.adam(1e-2),
        epochs=4,
        track=False,
    )
    assert history["train_eval_loss"][-1] < 2 * history["loss"][-1]
    assert not {"train_eval_gap", "chance_validation"} & kinds(findings)
