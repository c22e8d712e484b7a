"""fit(track_sharpness=N): the top Hessian eigenvalue recorded in the compiled
epoch equals ann.analysis.hessian(top_k=1) on the same batch and params."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import annjax as ann
from annjax.curvature import SHARPNESS_ITERATIONS, SHARPNESS_SEED

X = np.random.default_rng(0).normal(size=(48, 3)).astype(np.float32)
Y = (X[:, 0] * X[:, 1] > 0).astype(np.int32)
MODEL = ann.mlp([6, 2], activation="tanh")
KW = dict(optimizer=ann.sgd(0.2), batch_size=16, progress=False)


def oracle(params, state, batch_size=16, loss="softmax_cross_entropy"):
    """Returns hessian(top_k=1)'s top eigenvalue on fit's sharpness batch."""
    spectrum = ann.analysis.hessian(
        MODEL,
        params,
        state,
        (X[:batch_size], Y[:batch_size]),
        loss=loss,
        top_k=1,
        iterations=SHARPNESS_ITERATIONS,
        key=jax.random.key(SHARPNESS_SEED),
    )
    return float(spectrum.eigenvalues[0])


def test_fit_records_hessians_top_eigenvalue_every_n_epochs():
    r = ann.fit(MODEL, (X, Y), epochs=3, track_sharpness=2, key=jax.random.key(1), **KW)
    s = r.history["sharpness"]
    assert s.shape == (3,)
    assert np.isnan(s[1]) and np.isfinite(s[[0, 2]]).all()  # epochs 0 and 2
    # the compiled epoch's Lanczos against the standalone one: same iterations,
    # key, batch and params, so equal up to float rounding in another program
    np.testing.assert_allclose(s[2], oracle(r.params, r.state), rtol=1e-4)
    np.testing.assert_allclose(r.history["sharpness_limit"], 2 / 0.2, rtol=1e-6)


def test_without_track_sharpness_nothing_is_recorded():
    r = ann.fit(MODEL, (X, Y), epochs=1, key=jax.random.key(1), **KW)
    assert "sharpness" not in r.history and "sharpness_limit" not in r.history


def test_momentum_and_adam_record_no_limit_of_plain_gradient_descent():
    for optimizer in (ann.sgd(0.1, momentum=0.9), ann.adam(1e-2)):
        r = ann.fit(
            MODEL,
            (X, Y),
            epochs=1,
            track_sharpness=1,
            **{**KW, "optimizer": optimizer},
        )
        assert np.isfinite(r.history["sharpness"]).all()
        assert "sharpness_limit" not in r.history


def test_fit_many_records_each_models_sharpness():
    keys = jax.random.split(jax.random.key(2), 2)
    many = ann.fit_many(
        MODEL, (X, Y), keys=keys, epochs=2, track_sharpness=1, lr_scale=[1, 0.5], **KW
    )
    s = many.history["sharpness"]
    assert s.shape == (2, 2) and np.isfinite(s).all()
    for i in range(2):
        params, state = jax.tree.map(lambda a, i=i: a[i], (many.params, many.state))
        np.testing.assert_allclose(s[-1, i], oracle(params, state), rtol=1e-4)
    np.testing.assert_allclose(many.history["sharpness_limit"][-1], [10, 20], rtol=1e-6)


def test_steps_per_call_records_the_same_sharpness():
    one = ann.fit(MODEL, (X, Y), epochs=2, track_sharpness=1, **KW)
    parts = ann.fit(MODEL, (X, Y), epochs=2, track_sharpness=1, steps_per_call=2, **KW)
    np.testing.assert_allclose(
        parts.history["sharpness"], one.history["sharpness"], rtol=1e-4
    )


def test_resume_with_track_sharpness_continues_the_series(tmp_path):
    path = tmp_path / "run.ann"
    whole = ann.fit(MODEL, (X, Y), epochs=3, track_sharpness=1, **KW)
    ann.fit(MODEL, (X, Y), epochs=2, track_sharpness=1, checkpoint=path, **KW)
    resumed = ann.fit(MODEL, (X, Y), epochs=1, track_sharpness=1, resume=path, **KW)
    np.testing.assert_allclose(
        resumed.history["sharpness"], whole.history["sharpness"], rtol=1e-4
    )


def test_resume_without_track_sharpness_is_refused(tmp_path):
    path = tmp_path / "run.ann"
    ann.fit(MODEL, (X, Y), epochs=1, track_sharpness=1, checkpoint=path, **KW)
    with pytest.raises(ValueError, match="sharpness"):
        ann.fit(MODEL, (X, Y), epochs=1, resume=path, **KW)


@pytest.mark.parametrize(
    "value, error", [(-1, ValueError), (1.5, TypeError), ("2", TypeError)]
)
def test_invalid_track_sharpness(value, error):
    with pytest.raises(error, match="track_sharpness"):
        ann.fit(MODEL, (X, Y), epochs=1, track_sharpness=value, **KW)
    with pytest.raises(error, match="track_sharpness"):
        ann.fit_many(MODEL, (X, Y), epochs=1, track_sharpness=value, lr_scale=[1, 2])


def test_a_real_run_at_the_edge_of_stability_is_diagnosed():
    # full-batch gradient descent with MSE and lr = 1.9 / λ_max at the start:
    # the sharpness starts below 2/lr and rises past it (progressive
    # sharpening, Cohen et al. 2021), near epoch 30 of 40
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = np.sin(x @ rng.normal(size=(4, 1))).astype(np.float32)
    model = ann.mlp([16, 1], activation="tanh")
    kw = dict(loss="mse", batch_size=32, key=jax.random.key(0), progress=False)
    start = ann.fit(model, (x, y), epochs=0, **kw)
    lam = ann.analysis.hessian(
        model, start.params, start.state, (x, y), loss="mse", key=jax.random.key(0)
    ).eigenvalues[0]
    lr = 1.9 / float(lam)
    r = ann.fit(
        model, (x, y), optimizer=ann.sgd(lr), epochs=40, track_sharpness=1, **kw
    )
    s = r.history["sharpness"]
    assert s[0] < 2 / lr <= s[-1], (s, 2 / lr)
    found = [f for f in ann.diagnose(r.history) if f.kind == "edge_of_stability"]
    assert len(found) == 1 and found[0].epoch > 0
    assert "learning rate is at the curvature limit" in found[0].message
