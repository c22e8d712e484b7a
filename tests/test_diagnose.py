"""Unit tests of ``diagnose`` on hand-made histories: every kind of finding is
triggered and not triggered, thresholds are honoured, and findings print well."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from annjax.analysis import findings as diagnostics
from annjax.analysis.diagnose import diagnose
from annjax.analysis.findings import Finding, Findings

EPOCHS = 8
LAYERS = ("dense_0", "dense_2", "dense_4")


def healthy(epochs: int = EPOCHS) -> dict[str, np.ndarray]:
    """Returns the history of a run with nothing to report."""
    t = np.arange(epochs, dtype=np.float64)
    h = {
        "loss": 2.3 * np.exp(-0.5 * t),
        "val_loss": 2.3 * np.exp(-0.45 * t) + 0.05,
        "accuracy": 1 - 0.8 * np.exp(-0.6 * t),
        "val_accuracy": 1 - 0.8 * np.exp(-0.5 * t),
    }
    for i, layer in enumerate(LAYERS):
        h[f"grad_norm/{layer}"] = np.full(epochs, 0.5 + 0.25 * i)
        h[f"grad_norm_max/{layer}"] = np.full(epochs, 1.0 + 0.25 * i)
        h[f"param_norm/{layer}"] = np.full(epochs, 5.0)
        h[f"update_ratio/{layer}"] = np.full(epochs, 1e-3)
    h["dead_fraction/relu_1"] = np.full(epochs, 0.1)
    h["saturation/sigmoid_3"] = np.full(epochs, 0.02)
    return h


def kinds(findings) -> list[str]:
    return [f.kind for f in findings]


def only(findings, kind: str) -> Finding:
    found = [f for f in findings if f.kind == kind]
    assert len(found) == 1, findings
    return found[0]


def test_healthy_history_gives_no_finding_and_prints_healthy():
    findings = diagnose(healthy())
    assert findings == [] and not findings
    assert isinstance(findings, list) and isinstance(findings, Findings)
    assert str(findings) == repr(findings) == "healthy: no finding"


@pytest.mark.parametrize("history", [{}, {"loss": []}, {"loss": [1.0]}])
def test_empty_or_short_histories_are_healthy(history):
    assert diagnose(history) == []


# ------------------------------------------------------------ vanishing


def test_vanishing_names_the_first_layer_with_the_numbers():
    h = healthy()
    h["grad_norm/dense_0"] = np.full(EPOCHS, 2e-6)
    f = only(diagnose(h), "vanishing_gradients")
    assert (f.layer, f.epoch) == ("dense_0", 0)
    assert "dense_0 gradient norm 2e-06" in f.message
    assert "2e-06 × that of the last layer dense_4" in f.message
    assert "ReLU" in f.remedy and "residual" in f.remedy


def test_vanishing_reports_the_epoch_where_it_first_shows():
    h = healthy()
    h["grad_norm/dense_0"][5:] = 1e-7
    assert only(diagnose(h), "vanishing_gradients").epoch == 5


def test_vanishing_ratio_is_honoured():
    h = healthy()
    h["grad_norm/dense_0"] = np.full(EPOCHS, 1e-2)  # 0.01 × the last layer's
    assert "vanishing_gradients" not in kinds(diagnose(h))
    assert "vanishing_gradients" in kinds(diagnose(h, vanishing_ratio=0.1))


def test_vanishing_floor_is_off_by_default_and_honoured():
    h = healthy()
    for layer in LAYERS:  # tiny everywhere: no depth ratio to see
        h[f"grad_norm/{layer}"] = np.full(EPOCHS, 1e-9)
    assert "vanishing_gradients" not in kinds(diagnose(h))
    f = only(diagnose(h, vanishing_floor=1e-8), "vanishing_gradients")
    assert "below the floor 1e-08" in f.message


def test_an_exactly_zero_gradient_is_dead_units_not_vanishing():
    h = healthy()
    h["grad_norm/dense_0"][:] = 0.0  # no path back: every ReLU is dead
    h["dead_fraction/relu_1"][:] = 1.0
    assert kinds(diagnose(h)) == ["dead_units"]


def test_ratios_ignore_epochs_with_a_non_finite_gradient():
    h = healthy()
    h["grad_norm/dense_0"][0] = 1e8  # forward overflow: the last layer's
    h["grad_norm/dense_2"][0] = np.inf  # gradient is huge, the first's less so
    h["grad_norm/dense_4"][0] = 1e16
    assert kinds(diagnose(h)) == ["non_finite"]


def test_first_and_last_layers_follow_network_order_not_key_order():
    h = healthy()
    for layer in LAYERS:
        del h[f"grad_norm/{layer}"]
    h["grad_norm/dense_10"] = np.full(EPOCHS, 1.0)  # the last layer
    h["grad_norm/residual_3/dense_0"] = np.full(EPOCHS, 1.0)
    h["grad_norm/dense_2"] = np.full(EPOCHS, 1e-7)  # the first layer
    f = only(diagnose(h), "vanishing_gradients")
    assert f.layer == "dense_2" and "dense_10" in f.message


def test_network_order():
    layers = ["dense_10", "residual_3/shortcut", "dense_2", "residual_3/dense_0"]
    layers += ["residual_3/batch_norm_1", "dense_4", "Dense_0"]
    assert sorted(layers, key=diagnostics.network_order) == [
        "Dense_0",
        "dense_2",
        "residual_3/dense_0",
        "residual_3/batch_norm_1",
        "residual_3/shortcut",
        "dense_4",
        "dense_10",
    ]


# ------------------------------------------------------------ exploding


def test_exploding_through_depth():
    h = healthy()
    h["grad_norm/dense_0"] = np.full(EPOCHS, 5e3)
    f = only(diagnose(h), "exploding_gradients")
    assert (f.layer, f.epoch) == ("dense_0", 0)
    assert "× that of the last layer dense_4" in f.message
    assert "clip" in f.remedy


def test_exploding_growth_over_epochs_and_its_threshold():
    h = healthy()
    growth = np.logspace(0, 3, EPOCHS)  # ×1000 over the run
    for layer in LAYERS:
        h[f"grad_norm/{layer}"] = h[f"grad_norm/{layer}"] * growth
    f = only(diagnose(h), "exploding_gradients")
    assert f.layer == "dense_4" and "grew" in f.message
    assert f.epoch == int(np.argmax(growth > 100))
    assert "exploding_gradients" not in kinds(diagnose(h, exploding_growth=2e3))


def test_mild_growth_is_not_exploding():
    h = healthy()
    for layer in LAYERS:
        h[f"grad_norm/{layer}"] = h[f"grad_norm/{layer}"] * np.linspace(1, 10, EPOCHS)
    assert diagnose(h) == []


def test_exploding_update_ratio_skips_epoch_0():
    h = healthy()
    h["update_ratio/dense_2"][0] = 1e9  # a zero-initialised layer's first step
    assert diagnose(h) == []
    h["update_ratio/dense_2"][3:] = 2.0
    f = only(diagnose(h), "exploding_gradients")
    assert (f.layer, f.epoch) == ("dense_2", 3)
    assert "exploding_gradients" not in kinds(diagnose(h, exploding_update_ratio=3))


def test_exploding_norm_is_off_by_default_and_honoured():
    h = healthy()
    h["grad_norm_max/dense_2"][4] = 1e6
    assert diagnose(h) == []
    f = only(diagnose(h, exploding_norm=1e3), "exploding_gradients")
    assert (f.layer, f.epoch) == ("dense_2", 4) and "1e+06" in f.message


def test_each_layer_is_reported_once_at_its_first_epoch():
    h = healthy()
    h["grad_norm/dense_0"][2:] = 1e4  # depth ratio from epoch 2
    h["update_ratio/dense_0"][1:] = 5.0  # huge steps from epoch 1
    h["grad_norm_max/dense_0"][:] = 1e4
    findings = diagnose(h, exploding_norm=1e3)  # and over the ceiling from 0
    f = only(findings, "exploding_gradients")
    assert (f.layer, f.epoch) == ("dense_0", 0)


# ------------------------------------------------------------ non-finite


def test_non_finite_comes_first_and_names_the_overflowing_layer():
    h = {k: v[:5].copy() for k, v in healthy().items()}  # fit stops at the NaN
    h["loss"][4] = np.nan
    h["grad_norm/dense_0"][4] = np.nan
    h["grad_norm/dense_2"][4] = np.inf
    h["grad_norm/dense_4"][4] = np.nan
    h["accuracy"][:] = 0.1  # under-fitting too, less severe
    findings = diagnose(h)
    assert kinds(findings) == ["non_finite", "underfitting"]
    f = findings[0]
    assert (f.layer, f.epoch) == ("dense_2", 4)
    assert "training loss became nan" in f.message
    assert "inf in dense_2 (3 of 3 layers non-finite)" in f.message
    assert "learning rate" in f.remedy


def test_non_finite_epochs_do_not_count_for_the_other_findings():
    h = healthy()
    h["loss"][6:] = np.nan
    h["val_loss"][6:] = np.nan
    for layer in LAYERS:
        h[f"grad_norm/{layer}"][6:] = [1e-9, np.nan]
    h["dead_fraction/relu_1"][6:] = 1.0
    assert kinds(diagnose(h)) == ["non_finite"]


def test_non_finite_validation_loss_alone():
    h = healthy()
    h["val_loss"][2] = np.inf
    f = only(diagnose(h), "non_finite")
    assert f.layer is None and f.epoch == 2
    assert "validation loss became inf" in f.message


def test_non_finite_gradient_while_the_loss_is_finite():
    h = healthy()
    h["grad_norm/dense_4"][7] = np.inf
    h["grad_norm_max/dense_4"][7] = np.inf
    (f,) = diagnose(h)  # not exploding: an inf is non_finite's alone
    assert (f.kind, f.layer, f.epoch) == ("non_finite", "dense_4", 7)


# ------------------------------------------------------------ activations


@pytest.mark.parametrize(
    "kind, key, layer, threshold",
    [
        ("dead_units", "dead_fraction/relu_1", "relu_1", "dead_fraction"),
        ("saturation", "saturation/sigmoid_3", "sigmoid_3", "saturated_fraction"),
    ],
)
def test_activation_health(kind, key, layer, threshold):
    h = healthy()
    h[key] = np.array([0.1, 0.2, 0.6, 0.4, 0.6, 0.7, 0.8, 0.9])
    f = only(diagnose(h), kind)
    assert (f.layer, f.epoch) == (layer, 4)  # from epoch 4 on to the end
    assert "60%" in f.message and "90% in the last epoch" in f.message
    assert kind not in kinds(diagnose(h, **{threshold: 0.95}))
    assert only(diagnose(h, **{threshold: 0.35}), kind).epoch == 2


@pytest.mark.parametrize("key", ["dead_fraction/relu_1", "saturation/sigmoid_3"])
def test_activation_health_that_recovers_is_not_reported(key):
    h = healthy()
    h[key] = np.array([0.9, 0.9, 0.9, 0.9, 0.3, 0.2, 0.1, 0.1])
    assert diagnose(h) == []


def test_dead_units_remedy_is_leaky_relu():
    h = healthy()
    h["dead_fraction/relu_1"][:] = 0.9
    assert "Leaky ReLU" in only(diagnose(h), "dead_units").remedy


# ------------------------------------------------------------ under-fitting


def test_underfitting_from_accuracy():
    h = healthy()
    h["accuracy"] = np.linspace(0.1, 0.35, EPOCHS)
    h["loss"] = np.linspace(2.3, 1.8, EPOCHS)
    h["val_loss"] = np.linspace(2.3, 1.9, EPOCHS)
    f = only(diagnose(h), "underfitting")
    assert f.layer is None and f.epoch == EPOCHS - 1
    assert "best training accuracy is 0.35" in f.message
    assert "capacity" in f.remedy and "more training" in f.remedy
    assert "underfitting" not in kinds(diagnose(h, underfit_accuracy=0.3))


def test_low_accuracy_with_a_wide_generalisation_gap_is_not_underfitting():
    h = healthy()
    h["accuracy"] = np.linspace(0.1, 0.35, EPOCHS)
    h["loss"] = np.linspace(2.3, 1.0, EPOCHS)
    h["val_loss"] = np.linspace(2.3, 2.0, EPOCHS)  # 2× the training loss
    assert "underfitting" not in kinds(diagnose(h))
    assert "underfitting" in kinds(diagnose(h, underfit_gap=1.5))


def test_underfitting_from_the_loss_without_accuracy():
    h = {"loss": np.linspace(2.3, 1.9, EPOCHS)}  # 17% better than epoch 0
    f = only(diagnose(h), "underfitting")
    assert "fell only 17%" in f.message and f.epoch == EPOCHS - 1
    assert diagnose(h, underfit_improvement=0.1) == []
    assert diagnose({"loss": np.linspace(2.3, 0.5, EPOCHS)}) == []


def test_an_accuracy_without_any_value_is_no_evidence():
    h = healthy()
    h["accuracy"][:] = np.nan
    assert diagnose(h) == []


def test_high_accuracy_is_not_underfitting_even_if_the_loss_barely_moved():
    h = healthy()
    h["loss"] = np.linspace(0.10, 0.09, EPOCHS)  # all learnt in epoch 0
    h["val_loss"] = np.linspace(0.11, 0.10, EPOCHS)
    assert diagnose(h) == []


# ------------------------------------------------------------ over-fitting


def overfit_history():
    h = healthy()
    h["val_loss"] = np.array([1.0, 0.8, 0.6, 0.5, 0.52, 0.58, 0.66, 0.75])
    return h


def test_overfitting_reports_the_epoch_where_validation_turned():
    f = only(diagnose(overfit_history()), "overfitting")
    assert f.layer is None and f.epoch == 3
    assert "minimum 0.5 in epoch 3, then rose to 0.75 (+50%) by epoch 7" in f.message
    assert "dropout" in f.remedy and "early stopping" in f.remedy.lower()


def test_overfitting_thresholds_are_honoured():
    h = overfit_history()
    assert "overfitting" not in kinds(diagnose(h, overfit_patience=5))
    assert "overfitting" not in kinds(diagnose(h, overfit_rise=0.6))
    assert "overfitting" in kinds(diagnose(h, overfit_patience=4, overfit_rise=0.5))


def test_noise_around_a_plateau_is_not_overfitting():
    h = healthy()
    h["val_loss"] = 0.5 + 0.01 * np.array([3, 1, 0, -1, 1, 0, 2, 1])
    assert "overfitting" not in kinds(diagnose(h))


def test_validation_and_training_rising_together_is_not_overfitting():
    h = overfit_history()
    h["loss"] = h["val_loss"] - 0.1
    assert "overfitting" not in kinds(diagnose(h))


def test_overfitting_in_an_early_stopped_history():
    h = {k: v[:7] for k, v in overfit_history().items()}  # stopped, patience 3
    assert only(diagnose(h), "overfitting").epoch == 3


def test_loss_only_history_without_profiler_keys():
    h = {k: v for k, v in overfit_history().items() if "/" not in k}
    assert kinds(diagnose(h)) == ["overfitting"]


# ------------------------------------------------------------ order, print, errors


def test_findings_are_ordered_by_severity_then_network_order():
    h = {k: v[:6].copy() for k, v in healthy().items()}
    h["loss"][5] = np.nan
    h["val_loss"] = np.array([1.0, 0.6, 0.8, 0.9, 1.0, 1.0])
    h["accuracy"][:] = 0.2
    h["grad_norm/dense_0"][:] = 1e-8
    h["update_ratio/dense_2"][:] = 3.0
    h["saturation/sigmoid_3"][:] = 0.9
    h["dead_fraction/relu_5"] = np.full(6, 0.9)
    h["dead_fraction/relu_1"][:] = 0.9
    got = [(f.kind, f.layer) for f in diagnose(h)]
    assert got == [
        ("non_finite", None),
        ("exploding_gradients", "dense_2"),
        ("vanishing_gradients", "dense_0"),
        ("dead_units", "relu_1"),
        ("dead_units", "relu_5"),
        ("saturation", "sigmoid_3"),
        ("underfitting", None),
        ("overfitting", None),
    ]


def test_print_format_one_finding_per_line_with_its_remedy():
    findings = diagnose(overfit_history() | {"dead_fraction/relu_1": np.ones(8)})
    text = str(findings)
    assert repr(findings) == text
    lines = text.splitlines()
    assert len(lines) == 2 * len(findings) == 4
    assert lines[0].startswith("dead_units (relu_1, epoch 0): 100% of relu_1's")
    assert lines[1].startswith("    remedy: Leaky ReLU")
    assert lines[2].startswith("overfitting (epoch 3): the validation loss")
    assert str(findings[1]) == "\n".join(lines[2:])


def test_finding_is_a_named_tuple():
    f = Finding("overfitting", None, 3, "m", "r")
    assert f._fields == ("kind", "layer", "epoch", "message", "remedy")
    assert f == ("overfitting", None, 3, "m", "r")
    assert set(diagnostics.REMEDIES) == set(diagnostics.KINDS)


def test_a_fit_result_is_accepted():
    result = types.SimpleNamespace(history=overfit_history())
    assert kinds(diagnose(result)) == ["overfitting"]


def test_unknown_threshold_names_raise_type_error():
    with pytest.raises(TypeError, match=r"unknown threshold.*vanish_ratio"):
        diagnose(healthy(), vanish_ratio=1e-3)


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("vanishing_ratio", -1.0, ValueError),
        ("dead_fraction", 1.5, ValueError),
        ("overfit_patience", 0, ValueError),
        ("overfit_patience", 2.5, TypeError),
        ("overfit_rise", "big", TypeError),
        ("underfit_gap", math.nan, ValueError),
        ("eval_gap", -0.5, ValueError),
        ("eval_accuracy_drop", 1.5, ValueError),
        ("chance_accuracy", 2.0, ValueError),
        ("chance_train_accuracy", -0.1, ValueError),
        ("vanishing_ratio", None, TypeError),  # only chance_accuracy may be None
        ("chance_train_accuracy", None, TypeError),
    ],
)
def test_invalid_threshold_values(name, value, error):
    with pytest.raises(error, match=name):
        diagnose(healthy(), **{name: value})


def test_invalid_histories():
    with pytest.raises(TypeError, match="mapping"):
        diagnose([1.0, 0.5])
    with pytest.raises(ValueError, match="fit_many"):
        diagnose({"loss": np.ones((4, 2))})


def test_per_layer_returns_network_order():
    h = {"grad_norm/dense_10": [1.0], "grad_norm/dense_2": [2.0], "loss": [1.0]}
    assert list(diagnostics.per_layer(h)) == ["dense_2", "dense_10"]
    assert diagnostics.per_layer(h, "dead_fraction") == {}


# ---------------------------------------------- train/eval-mode gap, chance


def with_eval(lag: float, drop: float, epochs: int = EPOCHS) -> dict:
    """Returns ``healthy()`` plus the training data's eval-mode loss/accuracy,
    ``lag`` × the training-mode loss and ``drop`` below its accuracy."""
    h = healthy(epochs)
    h["train_eval_loss"] = h["loss"] * lag
    h["train_eval_accuracy"] = h["accuracy"] - drop
    return h


def test_eval_mode_close_to_train_mode_is_healthy():
    # the usual case: after the epoch, eval mode is a little better
    assert diagnose(with_eval(0.9, -0.02)) == []


def test_train_eval_gap_from_batch_norm_lag():
    h = with_eval(4.0, 0.5)
    f = only(diagnose(h), "train_eval_gap")
    assert f.layer is None and f.epoch == 0
    assert "+300%" in f.message and "momentum" in f.remedy
    assert f.remedy == diagnostics.REMEDIES["train_eval_gap"]


def test_train_eval_gap_that_closes_is_not_reported():
    h = with_eval(4.0, 0.5)
    h["train_eval_loss"][-2:] = h["loss"][-2:]  # the statistics caught up
    h["train_eval_accuracy"][-2:] = h["accuracy"][-2:]
    assert diagnose(h) == []


def test_train_eval_gap_reports_where_it_holds_from():
    h = with_eval(1.0, 0.0)
    h["train_eval_loss"][3:] *= 3
    h["train_eval_accuracy"][3:] -= 0.3
    assert only(diagnose(h), "train_eval_gap").epoch == 3


def test_train_eval_gap_thresholds_are_honoured():
    h = with_eval(1.4, 0.2)  # +40%: below the default +50%
    assert diagnose(h) == []
    assert kinds(diagnose(h, eval_gap=0.3)) == ["train_eval_gap"]
    h = with_eval(4.0, 0.05)  # the loss gap without the accuracy drop
    assert diagnose(h) == []
    assert kinds(diagnose(h, eval_accuracy_drop=0.01)) == ["train_eval_gap"]


def test_train_eval_gap_without_accuracy_reads_the_loss():
    h = with_eval(3.0, 0.0)
    del h["train_eval_accuracy"]
    assert kinds(diagnose(h)) == ["train_eval_gap"]


def test_chance_validation_with_high_training_accuracy():
    h = healthy()
    h["val_accuracy"] = np.full(EPOCHS, 0.1)
    h["val_loss"] = np.full(EPOCHS, 2.3)
    h["train_eval_accuracy"] = np.full(EPOCHS, 0.1)
    found = diagnose(h)
    f = only(found, "chance_validation")
    assert f.layer is None and f.epoch == int(np.argmax(h["accuracy"] >= 0.8))
    assert "0.1" in f.message and "evaluation mode scores 0.1" in f.message
    assert "Standardizer" in f.remedy


def _binary(val_accuracy: float) -> dict[str, np.ndarray]:
    """Returns a healthy history renamed to binary_accuracy, with a flat
    validation accuracy and the same gap in loss as in accuracy."""
    h = healthy()
    h["binary_accuracy"] = h.pop("accuracy")
    h.pop("val_accuracy")
    h["val_binary_accuracy"] = np.full(EPOCHS, val_accuracy)
    h["val_loss"] = np.full(EPOCHS, 0.69)
    return h


def test_chance_validation_of_a_binary_task_is_near_one_half():
    # two classes' chance is 0.5: the ten-class default (0.2) would never fire
    f = only(diagnose(_binary(0.52)), "chance_validation")
    assert "binary_accuracy is 0.52 (at most 0.6, chance level)" in f.message
    assert "chance_validation" not in kinds(diagnose(_binary(0.75)))
    assert "chance_validation" not in kinds(
        diagnose(_binary(0.52), chance_accuracy=0.45)
    )
    h = healthy()
    h["val_accuracy"] = np.full(EPOCHS, 0.52)  # ten classes: well above chance
    assert "chance_validation" not in kinds(diagnose(h))


def test_chance_validation_needs_high_training_accuracy_and_honours_thresholds():
    h = healthy()
    h["val_accuracy"] = np.full(EPOCHS, 0.3)  # above chance (0.2)
    assert "chance_validation" not in kinds(diagnose(h))
    assert "chance_validation" in kinds(diagnose(h, chance_accuracy=0.35))
    h["accuracy"] = np.full(EPOCHS, 0.5)  # the model learnt nothing either
    assert "chance_validation" not in kinds(diagnose(h, chance_accuracy=0.35))
