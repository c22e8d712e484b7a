"""Tests of ann.analysis.loss_landscape and random_direction.

Oracles: ``ann.evaluate`` at the perturbed params (the grid's values), NumPy
norms of each filter (filter normalisation, Li et al. 2018).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann


def _problem(model, n=50, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, k, n).astype(np.int32)
    _, params, state = model.init(jax.random.key(seed), (d,))
    return params, state, x, y


def _bn_model():
    return ann.serial(
        ann.dense(8), ann.batch_norm(), ann.activation("relu"), ann.dense(3)
    )


def _moved(params, coefs, dirs):
    return jax.tree.map(
        lambda t, *ds: t + sum(c * d for c, d in zip(coefs, ds, strict=True)),
        params,
        *dirs,
    )


def test_the_grid_is_the_loss_at_each_point_and_the_centre_is_params():
    model = _bn_model()
    params, state, x, y = _problem(model)
    # running statistics that differ from the batch's, so eval mode matters
    state = jax.tree.map(lambda s: s + 0.3, state)
    # batches of 16 over 50 examples leave a remainder; chunks of 7 over 25 points
    ls = ann.analysis.loss_landscape(
        model,
        params,
        state,
        (x, y),
        resolution=5,
        span=0.5,
        metrics=("accuracy",),
        key=jax.random.key(1),
        chunk=7,
        batch_size=16,
    )
    assert ls.loss.shape == ls.metrics["accuracy"].shape == (5, 5)
    np.testing.assert_allclose(ls.coords, [-0.5, -0.25, 0, 0.25, 0.5])
    ref = ann.evaluate(model, params, state, (x, y), metrics=("accuracy",))
    np.testing.assert_allclose(ls.loss[2, 2], ref["loss"], rtol=1e-5)
    assert ls.metrics["accuracy"][2, 2] == pytest.approx(ref["accuracy"])
    for i, j in [(0, 4), (3, 1)]:
        p = _moved(params, (ls.coords[i], ls.coords[j]), ls.directions)
        want = ann.evaluate(model, p, state, (x, y), metrics=("accuracy",))
        np.testing.assert_allclose(ls.loss[i, j], want["loss"], rtol=1e-5)
        assert ls.metrics["accuracy"][i, j] == pytest.approx(want["accuracy"])


def test_one_direction_and_reusing_a_landscape_give_the_same_slice():
    model = ann.mlp([8, 3], activation="tanh")
    params, state, x, y = _problem(model)
    one = ann.analysis.loss_landscape(
        model,
        params,
        state,
        (x, y),
        directions=1,
        resolution=7,
        key=jax.random.key(3),
    )
    assert one.loss.shape == (7,) and len(one.directions) == 1
    ref = ann.evaluate(model, params, state, (x, y))["loss"]
    np.testing.assert_allclose(one.loss[3], ref, rtol=1e-5)
    again = ann.analysis.loss_landscape(
        model, params, state, (x, y), directions=one, resolution=7, chunk=2
    )
    np.testing.assert_allclose(again.loss, one.loss, rtol=1e-6)


def test_interpolation_between_two_solutions():
    model = ann.mlp([8, 3], activation="tanh")
    pa, state, x, y = _problem(model)
    _, pb, _ = model.init(jax.random.key(9), (6,))
    ls = ann.analysis.loss_landscape(
        model, pa, state, (x, y), directions=(pa, pb), span=(0.0, 1.0), resolution=3
    )
    mid = jax.tree.map(lambda a, b: (a + b) / 2, pa, pb)
    want = [ann.evaluate(model, p, state, (x, y))["loss"] for p in (pa, mid, pb)]
    np.testing.assert_allclose(ls.loss, want, rtol=1e-5)


def test_filter_normalisation_matches_each_filter_norm():
    params = {
        "dense_0": {"w": jnp.arange(1.0, 13.0).reshape(3, 4), "b": jnp.ones(3)},
        "conv_1": {"w": jnp.linspace(0.1, 2.0, 2 * 2 * 3 * 5).reshape(2, 2, 3, 5)},
        "Dense_2": {"kernel": jnp.linspace(0.5, 3.0, 12).reshape(4, 3)},
        "batch_norm_3": {"scale": jnp.full(3, 2.0), "offset": jnp.ones(3)},
    }
    d = ann.analysis.random_direction(params, jax.random.key(0))

    def norms(a, axes):
        return np.sqrt((np.asarray(a) ** 2).sum(axes))

    for path, axes in [
        ("dense_0/w", 1),
        ("conv_1/w", (0, 1, 2)),
        ("Dense_2/kernel", 0),
    ]:
        layer, leaf = path.split("/")
        np.testing.assert_allclose(
            norms(d[layer][leaf], axes), norms(params[layer][leaf], axes), rtol=1e-5
        )
    assert not np.any(d["dense_0"]["b"]) and not np.any(d["batch_norm_3"]["scale"])
    with_b = ann.analysis.random_direction(
        params, jax.random.key(0), "layer", include_biases=True
    )
    for layer, leaf in [("dense_0", "w"), ("dense_0", "b"), ("batch_norm_3", "scale")]:
        np.testing.assert_allclose(
            np.linalg.norm(with_b[layer][leaf]),
            np.linalg.norm(params[layer][leaf]),
            rtol=1e-5,
        )
    raw = ann.analysis.random_direction(params, jax.random.key(0), None)
    ratio = np.asarray(raw["dense_0"]["w"] / d["dense_0"]["w"])
    # the same Gaussian, one scale per row (filter)
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], (3, 4)), rtol=1e-5)


def test_a_second_call_does_not_recompile():
    import importlib

    module = importlib.import_module("annjax.analysis.landscape")
    model = ann.mlp([4, 3])
    params, state, x, y = _problem(model)
    ann.analysis.loss_landscape(
        model, params, state, (x, y), resolution=3, key=jax.random.key(0)
    )
    size = module._compiled_grid._cache_size()
    ann.analysis.loss_landscape(
        model, params, state, (x, y), resolution=3, key=jax.random.key(1)
    )
    assert module._compiled_grid._cache_size() == size


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"directions": 3}, "directions"),
        ({"directions": True}, "directions"),
        ({"resolution": 1}, "resolution"),
        ({"span": 0.0}, "span"),
        ({"span": (1.0, -1.0)}, "span"),
        ({"normalization": "batch"}, "normalization"),
        ({"key": None}, "key"),
        ({"chunk": 0}, "chunk"),
        ({"batch_size": 0}, "batch_size"),
        ({"loss": "nope"}, "nope"),
        ({"metrics": ("nope",)}, "metric"),
        ({"directions": ({"a": 1}, {"a": 2})}, "directions\\[0\\]"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    model = ann.mlp([4, 3])
    params, state, x, y = _problem(model)
    kwargs = {"key": jax.random.key(0), **kwargs}
    with pytest.raises(ValueError, match=match):
        ann.analysis.loss_landscape(model, params, state, (x, y), **kwargs)


def test_data_that_does_not_fit_is_refused():
    model = ann.mlp([4, 3])
    params, state, x, y = _problem(model)
    with pytest.raises(ValueError, match="same number"):
        ann.analysis.loss_landscape(
            model, params, state, (x, y[:3]), key=jax.random.key(0)
        )
    with pytest.raises(TypeError, match="Layer"):
        ann.analysis.loss_landscape(None, params, state, (x, y), key=jax.random.key(0))
