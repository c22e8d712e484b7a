"""fit(track_gradients=True): measuring every k-th step leaves training as is."""

import numpy as np
import pytest
from conftest import separable_classes

import annjax as ann

MODEL = ann.mlp([16, 16, 3])


@pytest.fixture(scope="module")
def data():
    return separable_classes()


def _fit(data, **kwargs):
    return ann.fit(
        MODEL,
        data,
        optimizer=ann.sgd(0.1),
        epochs=3,
        batch_size=8,  # 13 steps an epoch: groups of 4 leave a tail of 1
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def untracked(data):
    return _fit(data)


@pytest.mark.parametrize("every", [1, 4, 13, 50])
def test_tracking_changes_nothing_in_training(data, untracked, every):
    tracked = _fit(data, track_gradients=True, track_every=every)
    np.testing.assert_allclose(
        untracked.params["dense_0"]["w"],
        tracked.params["dense_0"]["w"],
        rtol=1e-6,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        untracked.history["loss"], tracked.history["loss"], rtol=1e-6
    )
    for layer in ("dense_0", "dense_2", "dense_4"):
        norms = tracked.history[f"grad_norm/{layer}"]
        assert norms.shape == (3,) and np.all(norms > 0)
        assert np.all(tracked.history[f"grad_norm_max/{layer}"] >= norms)


def test_every_step_and_every_fourth_measure_alike(data):
    # Same training, so the mean gradient norm over 3 of 13 steps is of the
    # order of the mean over all 13 (a wrong selection, e.g. zeros, is not), and
    # the maximum over a subset of the steps is at most the maximum over all.
    every = _fit(data, track_gradients=True, track_every=1).history
    fourth = _fit(data, track_gradients=True, track_every=4).history
    ratio = fourth["grad_norm/dense_0"] / every["grad_norm/dense_0"]
    assert np.all((ratio > 0.3) & (ratio < 3))
    assert np.all(
        fourth["grad_norm_max/dense_0"] <= every["grad_norm_max/dense_0"] * (1 + 1e-6)
    )


def test_track_every_must_be_positive(data):
    with pytest.raises(ValueError, match="track_every"):
        _fit(data, track_gradients=True, track_every=0)
