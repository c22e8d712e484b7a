"""docs/fine_tuning.md runs as written: its ```python blocks, in order, in one
namespace (each block may use what the earlier ones defined)."""

from __future__ import annotations

import pathlib
import re

import jax

PAGE = pathlib.Path(__file__).parent.parent / "docs" / "fine_tuning.md"


def test_every_python_block_of_the_page_runs():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 6
    namespace: dict = {}
    # Compile-bound (tiny data, a dozen models): most of XLA's optimisations
    # off halves what compiling costs, as in tests/test_examples.py.
    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        for number, block in enumerate(blocks):
            code = compile(block, f"{PAGE.name} block {number}", "exec")
            exec(code, namespace)
    finally:  # the in-memory caches do not key on the flag: cleared
        jax.config.update("jax_disable_most_optimizations", before)
        jax.clear_caches()
