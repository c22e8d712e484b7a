"""Tests of annjax.training.export: the model runs in a process that never builds it.

The oracle is ``ann.predict`` on the same params: the exported function must
give the same outputs (to 1e-6) for any batch size, here and in a fresh
Python process that imports annjax but no model code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import annjax as ann

FEATURES = 5
MODEL = ann.serial(
    ann.dense(16),
    ann.batch_norm(),
    ann.activation("tanh"),
    ann.dropout(0.5),
    ann.dense(3),
)


@pytest.fixture(scope="module")
def trained():
    x = jax.random.normal(jax.random.key(0), (64, FEATURES))
    y = (x[:, 0] + x[:, 1] > 0).astype(jnp.int32)
    result = ann.fit(
        MODEL, (x, y), epochs=2, batch_size=16, progress=False, key=jax.random.key(2)
    )
    return result


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.annx"
    out = ann.export(MODEL, trained.params, trained.state, (FEATURES,), path)
    assert out == path and path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    return path


@pytest.mark.parametrize("batch", [1, 7, 130])
def test_loaded_function_equals_predict_for_any_batch(trained, exported, batch):
    x = jax.random.normal(jax.random.key(batch), (batch, FEATURES))
    f = ann.load_exported(exported)
    want = ann.predict(MODEL, trained.params, trained.state, x)
    got = f(x)
    assert got.shape == (batch, 3)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6)


def test_fresh_process_without_the_model_code(trained, exported, tmp_path):
    x = np.asarray(jax.random.normal(jax.random.key(5), (33, FEATURES)))
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        import annjax as ann
        os.chdir({str(tmp_path)!r})
        f = ann.load_exported({str(exported)!r})
        np.save("y.npy", np.asarray(f(np.load("x.npy"))))
        np.save("y1.npy", np.asarray(f(np.zeros((1, {FEATURES})))))
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    want = ann.predict(MODEL, trained.params, trained.state, x)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, atol=1e-6, rtol=1e-6)
    assert np.load(tmp_path / "y1.npy").shape == (1, 3)


def test_export_for_cpu_and_cuda_records_both(trained, tmp_path):
    path = tmp_path / "two.annx"
    try:
        ann.export(
            MODEL, trained.params, trained.state, (FEATURES,), path, ("cpu", "cuda")
        )
    except Exception as exc:  # no CUDA lowering rules in this jaxlib
        pytest.skip(f"cannot lower for cuda here: {exc}")
    f = ann.load_exported(path)
    assert f.platforms == ("cpu", "cuda")
    assert f.exported.platforms == ("cpu", "cuda")
    x = jnp.ones((4, FEATURES))
    np.testing.assert_allclose(
        f(x), ann.predict(MODEL, trained.params, trained.state, x), atol=1e-6
    )


def test_exported_function_checks_its_input(exported):
    f = ann.load_exported(exported)
    with pytest.raises(ValueError, match=r"x: expected examples of shape \(5,\)"):
        f(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="for one example pass x"):
        f(np.zeros(FEATURES))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "mlp"}, TypeError, "export model"),
        ({"input_shape": (0,)}, ValueError, "export input_shape"),
        ({"input_shape": "5"}, ValueError, "export input_shape"),
        ({"platforms": ()}, ValueError, "export platforms"),
        ({"platforms": ("gpu",)}, ValueError, "export platforms"),
    ],
)
def test_export_checks_its_arguments(trained, tmp_path, kwargs, error, match):
    args = {
        "model": MODEL,
        "params": trained.params,
        "state": trained.state,
        "input_shape": (FEATURES,),
        "path": tmp_path / "m.annx",
        **kwargs,
    }
    with pytest.raises(error, match=match):
        ann.export(**args)
    assert not (tmp_path / "m.annx").exists()


def test_load_exported_refuses_other_and_corrupted_files(trained, tmp_path):
    checkpoint = ann.save(tmp_path / "run.ckpt", trained)
    with pytest.raises(ValueError, match="expected an annjax export"):
        ann.load_exported(checkpoint)
    path = ann.export(MODEL, trained.params, trained.state, 5, tmp_path / "m.annx")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        ann.load_exported(path)
    with pytest.raises(FileNotFoundError):
        ann.load_exported(tmp_path / "missing.annx")


def test_calling_on_a_platform_not_exported_for_fails_clearly(trained, tmp_path):
    if jax.default_backend() != "cpu":
        pytest.skip("checks a CPU process")
    path = tmp_path / "cuda.annx"
    try:
        ann.export(MODEL, trained.params, trained.state, (FEATURES,), path, "cuda")
    except Exception as exc:  # no CUDA lowering rules in this jaxlib
        pytest.skip(f"cannot lower for cuda here: {exc}")
    with pytest.raises(ValueError, match="exported for platforms"):
        ann.load_exported(path)(np.ones((2, FEATURES)))
