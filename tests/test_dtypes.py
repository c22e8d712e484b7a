"""dtypes in every layer (issue 21): ``dtype`` (compute) and ``param_dtype``
(storage) with flax's meaning, integer and bfloat16 images in every image
layer, and model-wide mixed precision (``ann.mixed_precision``).

Oracle: flax.linen's ``Dense``, ``Conv``, ``LayerNorm`` and ``BatchNorm`` built
with the same ``dtype``/``param_dtype`` and given the same params.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann

BF16, F32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)
PRECISIONS = [(None, F32), (BF16, F32), (None, BF16), (BF16, BF16)]
INPUTS = [F32, BF16, jnp.dtype(jnp.uint8)]


def _images(dtype, shape=(2, 6, 6, 3)) -> jax.Array:
    x = jax.random.uniform(jax.random.key(1), shape, minval=0, maxval=255)
    x = jnp.floor(x)  # whole numbers: the same values in uint8, bf16, f32
    return x.astype(dtype) if dtype == jnp.uint8 else (x / 255).astype(dtype)


def _tolerance(*dtypes) -> dict:
    """bfloat16 keeps 8 significant bits (rel. 2⁻⁸ ≈ 0.4 % per rounding)."""
    low = any(d is not None and jnp.dtype(d) == BF16 for d in dtypes)
    return {"rtol": 3e-2, "atol": 3e-2} if low else {"rtol": 1e-5, "atol": 1e-5}


def _close(ours, theirs, *dtypes, rtol=1e-5):
    assert ours.dtype == theirs.dtype
    tol = _tolerance(*dtypes)
    tol["rtol"] = max(tol["rtol"], rtol)
    np.testing.assert_allclose(
        np.asarray(ours, np.float32), np.asarray(theirs, np.float32), **tol
    )


@pytest.mark.parametrize("dtype, param_dtype", PRECISIONS)
@pytest.mark.parametrize("x_dtype", INPUTS)
def test_conv2d_equals_flax_conv(dtype, param_dtype, x_dtype):
    x = _images(x_dtype)
    ours = ann.conv2d(4, 3, dtype=dtype, param_dtype=param_dtype)
    _, params, state = ours.init(jax.random.key(0), x.shape[1:])
    assert {a.dtype for a in params.values()} == {param_dtype}
    conv = nn.Conv(4, (3, 3), padding="SAME", dtype=dtype, param_dtype=param_dtype)
    theirs = conv.apply({"params": {"kernel": params["w"], "bias": params["b"]}}, x)
    _close(ours.apply(params, state, x)[0], theirs, dtype, param_dtype, x_dtype)


@pytest.mark.parametrize("dtype, param_dtype", PRECISIONS)
@pytest.mark.parametrize("x_dtype", INPUTS)
def test_dense_equals_flax_dense(dtype, param_dtype, x_dtype):
    x = _images(x_dtype, (4, 5))
    ours = ann.dense(3, dtype=dtype, param_dtype=param_dtype)
    _, params, state = ours.init(jax.random.key(0), (5,))
    dense = nn.Dense(3, dtype=dtype, param_dtype=param_dtype)
    theirs = dense.apply({"params": {"kernel": params["w"].T, "bias": params["b"]}}, x)
    _close(ours.apply(params, state, x)[0], theirs, dtype, param_dtype, x_dtype)


@pytest.mark.parametrize("dtype, param_dtype", PRECISIONS)
@pytest.mark.parametrize("x_dtype", INPUTS)
def test_layer_norm_equals_flax_layer_norm(dtype, param_dtype, x_dtype):
    x = _images(x_dtype)
    ours = ann.layer_norm(dtype=dtype, param_dtype=param_dtype)
    _, params, state = ours.init(jax.random.key(0), x.shape[1:])
    assert {a.dtype for a in params.values()} == {param_dtype}
    ln = nn.LayerNorm(dtype=dtype, param_dtype=param_dtype)
    theirs = ln.apply({"params": params}, x)
    # flax's variance is E[x²] − E[x]² (one pass), annjax's Σ(x − μ)²/n: they
    # part by ~2e-4 where a pixel's 3 channels nearly agree (σ² ≪ μ²)
    y = ours.apply(params, state, x)[0]
    _close(y, theirs, dtype, param_dtype, x_dtype, rtol=1e-3)


@pytest.mark.parametrize("dtype, param_dtype", PRECISIONS)
@pytest.mark.parametrize("x_dtype", INPUTS)
def test_batch_norm_equals_flax_batch_norm(dtype, param_dtype, x_dtype):
    x = _images(x_dtype)
    ours = ann.batch_norm(momentum=0.9, dtype=dtype, param_dtype=param_dtype)
    _, params, state = ours.init(jax.random.key(0), x.shape[1:])
    bn = nn.BatchNorm(
        use_running_average=False,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        param_dtype=param_dtype,
    )
    variables = {"params": params, "batch_stats": state}
    theirs, updates = bn.apply(variables, x, mutable=["batch_stats"])
    y, new_state = ours.apply(params, state, x, train=True)
    _close(y, theirs, dtype, param_dtype, x_dtype)
    for k in ("mean", "var"):  # running statistics: float32, as flax's
        assert new_state[k].dtype == F32
        _close(new_state[k], updates["batch_stats"][k], dtype, param_dtype, x_dtype)


IMAGE_LAYERS = {
    "conv2d": lambda: ann.conv2d(2, 3),
    "max_pool": lambda: ann.max_pool(2),
    "avg_pool": lambda: ann.avg_pool(2, padding="SAME", count_include_pad=False),
    "global_avg_pool": ann.global_avg_pool,
    "layer_norm": ann.layer_norm,
    "batch_norm": ann.batch_norm,
    "resnet": lambda: ann.resnet((4,), num_classes=3),
}


@pytest.mark.parametrize("name", sorted(IMAGE_LAYERS))
@pytest.mark.parametrize("x_dtype", [jnp.dtype(jnp.uint8), BF16])
def test_every_image_layer_takes_integer_and_bfloat16_images(name, x_dtype):
    # was a raw lax.conv_general_dilated TypeError for conv2d (issue 21)
    layer = IMAGE_LAYERS[name]()
    x = _images(x_dtype)
    _, params, state = layer.init(jax.random.key(0), x.shape[1:])
    y, _ = layer.apply(params, state, x, train=True)
    reference, _ = layer.apply(params, state, x.astype(F32), train=True)
    if x_dtype == jnp.uint8:  # integer images compute in float32, exactly
        assert y.dtype == F32
        np.testing.assert_array_equal(y, reference)
    else:  # bf16 stays bf16 without params; promoted with float32 params
        assert y.dtype == (BF16 if not params else F32)
        np.testing.assert_allclose(np.asarray(y, F32), reference, rtol=0, atol=0.05)


def test_fit_on_uint8_images():
    x = _images(jnp.uint8, (16, 6, 6, 1))
    y = np.arange(16) % 2
    model = ann.serial(
        ann.conv2d(2, 3, activation="relu"),
        ann.max_pool(2),
        ann.flatten(),
        ann.dense(2),
    )
    result = ann.fit(model, (np.asarray(x), y), epochs=1, batch_size=8, progress=False)
    assert np.isfinite(result.history["loss"]).all()


def _dot_dtypes(model, x) -> set:
    """Returns the operand dtypes of every matrix product in the model's apply."""
    _, params, state = model.init(jax.random.key(0), x.shape[1:])
    jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, state, x)[0])(params, x)
    return {
        str(v.aval.dtype)
        for eqn in jaxpr.jaxpr.eqns
        if eqn.primitive.name in ("dot_general", "conv_general_dilated")
        for v in eqn.invars
    }


def test_mlp_dtype_rule_for_bfloat16_input():
    # issue 21, case 6: the rule is flax's promotion, and it is documented
    x = jnp.ones((3, 4), BF16)
    plain, fast = ann.mlp([8, 2]), ann.mlp([8, 2], dtype=jnp.bfloat16)
    assert _dot_dtypes(plain, x) == {"float32"}  # bf16 x, f32 params: f32
    assert _dot_dtypes(fast, x) == {"bfloat16"}
    assert _dot_dtypes(fast, x.astype(F32)) == {"bfloat16"}
    _, params, state = fast.init(jax.random.key(0), (4,))
    assert {a.dtype for a in jax.tree_util.tree_leaves(params)} == {F32}
    assert fast.apply(params, state, x)[0].dtype == BF16
    low = ann.mlp([8, 2], batch_norm=True, param_dtype=jnp.bfloat16)
    _, params, state = low.init(jax.random.key(0), (4,))
    assert {a.dtype for a in jax.tree_util.tree_leaves(params)} == {BF16}
    assert {a.dtype for a in jax.tree_util.tree_leaves(state)} == {F32}  # as flax
    assert _dot_dtypes(low, x) == {"bfloat16"}


def test_mlp_passes_momentum_to_its_batch_norms():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), F32)
    model = ann.mlp([4, 4, 2], batch_norm=True, momentum=0.5)
    _, params, state = model.init(jax.random.key(0), (3,))
    _, new = model.apply(params, state, x, train=True)
    h = x @ params["dense_0"]["w"].T + params["dense_0"]["b"]
    np.testing.assert_allclose(new["batch_norm_1"]["mean"], 0.5 * h.mean(0), 1e-5, 1e-6)
    assert model != ann.mlp([4, 4, 2], batch_norm=True)
    with pytest.raises(
        ValueError, match=r"mlp momentum: expected a number in \[0, 1\)"
    ):
        ann.mlp([4, 2], batch_norm=True, momentum=1.0)


@pytest.mark.parametrize(
    "factory",
    [ann.conv2d, ann.layer_norm, ann.mlp, ann.resnet],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("arg", ["dtype", "param_dtype"])
def test_bad_dtypes_raise(factory, arg):
    args = {ann.conv2d: (2, 3), ann.mlp: ([2],)}.get(factory, ())
    with pytest.raises(ValueError, match=rf"{arg}: expected a float dtype"):
        factory(*args, **{arg: jnp.int32}).init(jax.random.key(0), (4, 4, 1))


# ------------------------------------------------------------ mixed precision


def test_mixed_precision_computes_in_bfloat16_and_returns_float32():
    model = ann.mixed_precision(
        ann.serial(
            ann.conv2d(3, 3, use_bias=False),
            ann.batch_norm(),
            ann.global_avg_pool(),
            ann.dense(3),
        )
    )
    x = _images(F32, (2, 6, 6, 1))
    assert _dot_dtypes(model, x) == {"bfloat16"}
    _, params, state = model.init(jax.random.key(0), (6, 6, 1))
    y, new_state = model.apply(params, state, x, train=True)
    assert y.dtype == F32
    assert {a.dtype for a in jax.tree_util.tree_leaves((params, new_state))} == {F32}
    with pytest.raises(TypeError, match="mixed_precision: expected an annjax Layer"):
        ann.mixed_precision(nn.Dense(3))
    with pytest.raises(ValueError, match="compute_dtype: expected a float dtype"):
        ann.mixed_precision(ann.dense(2), compute_dtype=jnp.int8)


def test_mixed_precision_training_matches_float32():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype("f4")
    y = ((x[:, 0] * x[:, 1]) > 0).astype("i4")
    kw = {
        "epochs": 10,
        "batch_size": 32,
        "optimizer": ann.adam(1e-2),
        "metrics": ("accuracy",),
        "progress": False,
        "key": jax.random.key(0),
    }
    model = ann.mlp([32, 32, 2], batch_norm=True)
    full = ann.fit(model, (x, y), **kw)
    mixed = ann.fit(ann.mixed_precision(model), (x, y), **kw)
    # Tolerance: bfloat16 rounds each product to 8 bits (≈0.4 %); over 40
    # steps the two runs drift apart by at most 0.03 in the loss (measured
    # 0.004-0.02) while learning the same function.
    np.testing.assert_allclose(mixed.history["loss"], full.history["loss"], atol=0.03)
    assert abs(mixed.history["accuracy"][-1] - full.history["accuracy"][-1]) <= 0.05
    leaves = jax.tree_util.tree_leaves(
        (mixed.params, mixed.state, mixed.train_state.opt_state)
    )
    assert {a.dtype for a in leaves if jnp.issubdtype(a.dtype, jnp.floating)} == {F32}
    assert mixed.history["loss"].dtype == np.float32


@pytest.mark.usefixtures("strict_promotion")
@pytest.mark.parametrize("name", ["batch_norm", "layer_norm", "conv2d"])
def test_bfloat16_compute_under_strict_promotion(name):
    layer = {
        "batch_norm": lambda: ann.batch_norm(dtype=jnp.bfloat16),
        "layer_norm": lambda: ann.layer_norm(dtype=jnp.bfloat16),
        "conv2d": lambda: ann.conv2d(2, 3, dtype=jnp.bfloat16),
    }[name]()
    x = _images(BF16)
    _, params, state = layer.init(jax.random.key(0), x.shape[1:])
    assert layer.apply(params, state, x, train=True)[0].dtype == BF16
