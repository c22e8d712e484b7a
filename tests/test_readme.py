"""The README's quick start and its complete example work as written: the extras
and scripts its commands name exist, and its Python example runs unchanged."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_commands_name_existing_extras_and_files():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    commands = "\n".join(blocks)
    named = set(re.findall(r'pip install -e "\.\[([a-z0-9_,]+)\]"', commands))
    assert {"examples", "dev", "docs"} <= {e for n in named for e in n.split(",")}
    assert all(e in extras for n in named for e in n.split(","))
    for script in re.findall(r"python (examples/\S+\.py)", commands):
        assert (ROOT / script).is_file(), script
    assert "python -m sphinx -W --keep-going -n -b html docs docs/_build/html" in (
        commands
    )
    for link in re.findall(r"\]\(((?:docs|examples)/[^)#]+)", README):
        assert (ROOT / link).exists(), f"README links to a missing {link}"


def test_the_complete_example_runs_as_written(tmp_path, monkeypatch):
    (example,) = re.findall(r"## A complete `fit`\n\n```python\n(.*?)```", README, re.S)
    monkeypatch.chdir(tmp_path)  # it writes digits.ckpt
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.stop_reason and (tmp_path / "digits.ckpt").is_file()
    assert "grad_norm/dense_0" in result.history


def _numbers_and_words(text: str) -> list:
    """Returns the text's tokens, numbers as floats (compared within a tolerance)."""
    tokens = []
    for token in text.split():
        try:
            tokens.append(float(token))
        except ValueError:
            tokens.append(token)
    return tokens


def test_the_many_models_example_prints_what_the_readme_quotes(capsys):
    section = README.split("## Many models at once", 1)[1]
    (code, quoted) = re.findall(
        r"```python\n(.*?)```.*?```text\n(.*?)```", section, re.S
    )[0]
    exec(compile(code, "README.md", "exec"), {})
    printed = _numbers_and_words(capsys.readouterr().out)
    expected = _numbers_and_words(quoted)
    assert len(printed) == len(expected)
    for got, want in zip(printed, expected, strict=True):
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=2e-3), (got, want)
        else:
            assert got == want
