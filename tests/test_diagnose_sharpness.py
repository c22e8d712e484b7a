"""diagnose reads the sharpness: edge of stability, and the cause of an exploding
loss (histories built by hand; the real runs are in tests/test_sharpness.py)."""

from __future__ import annotations

import numpy as np
import pytest

from annjax.analysis import findings
from annjax.analysis.diagnose import diagnose

NAN = np.nan


def history(sharpness, loss=None, lr=0.1, limit=True) -> dict[str, np.ndarray]:
    """Returns a falling loss and the given sharpness (NaN: not measured)."""
    sharpness = np.asarray(sharpness, np.float64)
    epochs = sharpness.size
    h = {
        "loss": 2.0 * np.exp(-np.arange(epochs)) if loss is None else loss,
        "sharpness": sharpness,
    }
    if limit:  # what fit records for plain gradient descent: 2/lr
        h["sharpness_limit"] = np.where(np.isnan(sharpness), NAN, 2 / lr)
    return {k: np.asarray(v, np.float64) for k, v in h.items()}


def kinds(found) -> list[str]:
    return [f.kind for f in found]


def test_sharpness_below_two_over_lr_is_healthy():
    assert diagnose(history([5.0, 9.0, 14.0, 18.0, 19.5])) == []


def test_sharpness_at_two_over_lr_is_the_edge_of_stability():
    found = diagnose(history([5.0, 12.0, 19.0, 20.0, 20.3, 19.8]))
    assert kinds(found) == ["edge_of_stability"]
    f = found[0]
    assert f.epoch == 3 and f.layer is None
    assert f.message.startswith(
        "edge of stability: the learning rate is at the curvature limit"
    )
    assert "20 " in f.message and "2/lr = 20" in f.message
    assert "2 of 6 measurements" in f.message
    for word in ("lower learning rate", "warm-up", "normalisation"):
        assert word in f.remedy


def test_the_edge_reads_the_measured_epochs_only():
    # every other epoch measured (track_sharpness=2): NaN between
    found = diagnose(history([5.0, NAN, 21.0, NAN, 20.5, NAN]))
    assert found[0].epoch == 2 and "2 of 3 measurements" in found[0].message


def test_without_the_limit_there_is_no_edge_finding():
    # momentum or Adam: fit records no sharpness_limit (theirs is not 2/lr)
    assert diagnose(history([5.0, 30.0, 60.0], limit=False)) == []


def test_edge_of_stability_threshold_is_honoured():
    h = history([5.0, 12.0, 19.0, 19.5])
    assert diagnose(h) == []
    assert kinds(diagnose(h, edge_of_stability=0.9)) == ["edge_of_stability"]


def test_growing_sharpness_before_a_loss_spike_is_named_its_cause():
    loss = [2.0, 1.2, 0.8, 0.6, 0.5, 5.0, 3.0]
    sharpness = [4.0, 8.0, 13.0, 17.0, 24.0, 15.0, 12.0]
    found = diagnose(history(sharpness, loss))
    assert kinds(found) == ["exploding_loss", "edge_of_stability"]
    f = found[0]
    assert f.epoch == 5
    assert "jumped from 0.5 (epoch 4) to 5 in epoch 5" in f.message
    assert "its last 5 measurements, from 4 (epoch 0) to 24 (epoch 4)" in f.message
    assert "120% of 2/lr = 20" in f.message
    assert "cause of the exploding loss" in f.message
    assert "learning rate" in f.remedy and "warm-up" in f.remedy


def test_a_spike_into_a_non_finite_loss_is_explained_too():
    loss = [2.0, 1.2, 0.8, 0.6, NAN, NAN]
    sharpness = [4.0, 8.0, 13.0, 22.0, NAN, NAN]
    found = diagnose(history(sharpness, loss))
    assert kinds(found) == ["non_finite", "exploding_loss", "edge_of_stability"]
    assert found[1].epoch == 4 and "to nan in epoch 4" in found[1].message


def test_a_spike_without_growing_sharpness_names_no_curvature_cause():
    loss = [2.0, 1.2, 0.8, 0.6, 0.5, 5.0]
    sharpness = [10.0, 9.0, 11.0, 10.5, 10.0, 10.0]  # flat: the cause is elsewhere
    assert diagnose(history(sharpness, loss)) == []


def test_growth_without_a_spike_is_no_exploding_loss():
    assert "exploding_loss" not in kinds(diagnose(history([4.0, 8.0, 13.0, 17.0])))


def test_spike_and_sharpening_thresholds_are_honoured():
    loss = [2.0, 1.2, 0.8, 0.6, 0.5, 0.8]  # ×1.6: below the default ×2
    sharpness = [4.0, 5.0, 3.0, 7.0, 9.0, 9.0]  # 3 rising measurements (not 4)
    h = history(sharpness, loss)
    assert diagnose(h) == []
    assert kinds(diagnose(h, loss_spike=1.5)) == ["exploding_loss"]
    assert diagnose(h, loss_spike=1.5, sharpening=4) == []


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("edge_of_stability", -1.0, ValueError),
        ("loss_spike", -2.0, ValueError),
        ("sharpening", 1, ValueError),
        ("sharpening", 2.5, TypeError),
    ],
)
def test_invalid_sharpness_thresholds(name, value, error):
    with pytest.raises(error, match=name):
        diagnose(history([1.0, 2.0]), **{name: value})


def test_new_kinds_have_remedies_and_a_severity():
    assert {"edge_of_stability", "exploding_loss"} <= set(findings.REMEDIES)
    assert findings.KINDS.index("exploding_loss") < findings.KINDS.index(
        "edge_of_stability"
    )
