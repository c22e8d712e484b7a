"""The machine's float32 GEMM speed: C = A·B with NumPy (BLAS) and jax.numpy (XLA).

Training an MLP is mostly matrix products, so the best GEMM speed bounds the
FLOP rate any implementation can reach.
"""

from __future__ import annotations

import numpy as np


def _operands(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((n, n), dtype=np.float32),
        rng.standard_normal((n, n), dtype=np.float32),
    )


def make_numpy(n: int):
    """Returns ``matmul()`` computing one n×n product with NumPy."""
    a, b = _operands(n)
    out = np.empty((n, n), np.float32)

    def matmul() -> None:
        np.matmul(a, b, out=out)

    return matmul


def make_jnp(n: int):
    """Returns ``matmul()`` computing one n×n product with a jitted ``jnp.matmul``."""
    import jax
    import jax.numpy as jnp

    a, b = (jnp.asarray(m) for m in _operands(n))
    product = jax.jit(jnp.matmul)

    def matmul() -> None:
        product(a, b).block_until_ready()

    return matmul


def runtime_info() -> dict:
    info = {"numpy": np.__version__}
    try:
        config = np.show_config(mode="dicts")
        info["blas"] = config["Build Dependencies"]["blas"].get("name")
    except Exception:  # the layout of show_config differs between versions
        pass
    return info
