"""The suite's XLA setting (tests/conftest.py): unoptimised compiles, also in
the subprocesses that tests start."""

from __future__ import annotations

import os

import jax


def test_the_suite_compiles_unoptimised_and_tells_its_subprocesses():
    assert jax.config.values["jax_disable_most_optimizations"] is True
    assert os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "1"
