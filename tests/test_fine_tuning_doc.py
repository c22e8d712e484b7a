"""docs/fine_tuning.md runs as written: its ```python blocks, in order, in one
namespace (each block may use what the earlier ones defined)."""

from __future__ import annotations

import pathlib
import re

PAGE = pathlib.Path(__file__).parent.parent / "docs" / "fine_tuning.md"


def test_every_python_block_of_the_page_runs():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 6
    namespace: dict = {}
    for number, block in enumerate(blocks):
        code = compile(block, f"{PAGE.name} block {number}", "exec")
        exec(code, namespace)
