"""Bad input, round two: the edge cases of issue 21 (data, arguments, files).

Each test asserts the exact outcome: the error type and the words of its
message, or the correct value against its oracle. The cases on several
devices run in one subprocess with 8 host devices (see ``_on_8_devices``).
"""

from __future__ import annotations

import os
import stat

import jax
import numpy as np
import pytest

import annjax as ann
from annjax.training import loop

RNG = np.random.RandomState(0)
X = RNG.randn(60, 4).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int32)


class Started(Exception):
    """Raised when fit got past its checks into training."""


@pytest.fixture
def no_training(monkeypatch):
    """Makes any epoch fail the test: the error must come before compiling."""

    def forbidden(*args, **kwargs):
        raise Started("fit reached training before rejecting its input")

    monkeypatch.setattr(loop.Engine, "epoch", forbidden)


# ------------------------------------------------- files: the user's umask


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it after."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_checkpoints_and_exports_follow_the_umask_as_open_does(
    tmp_path, umask, mask, mode
):
    umask(mask)
    model = ann.dense(1)
    result = ann.fit(model, (X, X[:, :1]), loss="mse", epochs=1, progress=False)
    saved = ann.save(tmp_path / "run.ckpt", result)
    exported = ann.export(model, result.params, result.state, (4,), tmp_path / "m")
    with open(tmp_path / "plain", "w"):
        pass  # the oracle: what open() makes under this umask
    assert stat.S_IMODE(os.stat(tmp_path / "plain").st_mode) == mode
    for path in (saved, exported):
        assert stat.S_IMODE(os.stat(path).st_mode) == mode


# ----------------------------------------- non-finite rates and penalties


@pytest.mark.parametrize("make", [ann.sgd, ann.adam, ann.adamw])
@pytest.mark.parametrize("lr", [float("inf"), float("nan"), -float("inf")])
def test_optimizer_refuses_a_non_finite_learning_rate(make, lr):
    with pytest.raises(ValueError, match="learning_rate: expected a finite number > 0"):
        make(lr)


def test_optimizer_refuses_an_infinite_weight_decay():
    with pytest.raises(ValueError, match="weight_decay: expected finite values >= 0"):
        ann.sgd(0.1, weight_decay=float("inf"))


@pytest.mark.parametrize("name", ["l1", "l2"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_fit_and_fit_many_refuse_a_non_finite_penalty_alike(no_training, name, value):
    data = (X, Y)
    for run in (ann.fit, ann.fit_many):
        with pytest.raises(ValueError, match=f"{name}: expected finite values >= 0"):
            run(ann.mlp([3, 2]), data, epochs=1, progress=False, **{name: value})


# ------------------------------------------ a custom Layer breaking the protocol


def _two_value_layer() -> ann.Layer:
    def init(key, input_shape):
        return (2,), {"w": jax.random.normal(key, (2, input_shape[-1]))}

    def apply(params, state, x, *, key=None, train=False):
        return x @ params["w"].T, state

    return ann.Layer(init, apply, "mine")


@pytest.mark.parametrize("wrap", [lambda m: m, lambda m: ann.serial(m, ann.dense(2))])
def test_custom_layer_whose_init_returns_two_values_raises(no_training, wrap):
    match = (
        r"expected init\(key, input_shape\) to return \(output_shape, params, "
        r"state\), the Layer protocol, got 2 values"
    )
    with pytest.raises(TypeError, match=match):
        ann.fit(wrap(_two_value_layer()), (X, Y), epochs=1, progress=False)


# ------------------------------------------------------------- sparse input


@pytest.mark.parametrize("where", ["fit", "predict"])
def test_scipy_sparse_x_raises_saying_densify(no_training, where):
    sparse = pytest.importorskip("scipy.sparse")
    xs = sparse.csr_matrix(X)
    match = r"[xX]: expected a dense array, got a scipy sparse csr_matrix .*X\.toarray"
    model = ann.mlp([3, 2])
    with pytest.raises(TypeError, match=match):
        if where == "fit":
            ann.fit(model, (xs, Y), epochs=1, progress=False)
        else:
            _, params, state = model.init(jax.random.key(0), (4,))
            ann.predict(model, params, state, xs)
