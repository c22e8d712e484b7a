"""The package's shape: no import cycle, small files and functions, a true map.

The folders are the architecture (shared/DESIGN.md); these tests keep them so.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "annjax"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """Returns the annjax module ``name`` refers to (a module or its package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    """Returns the annjax modules that importing ``module`` runs first.

    Every import anywhere in its body counts (lazy ones too); ``from p import
    m`` imports the module p.m when there is one, else p; importing p.m also
    runs the packages above it, except ``module``'s own parents.
    """
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found, explicit = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                for a in node.names
            ]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "annjax" and (target := _resolve(name)):
                found |= {target, *_packages_of(target)}
                explicit.add(target)
    return (found - {module, *_packages_of(module)}) | (explicit & {"annjax"})


def _packages_of(module: str) -> list[str]:
    """Returns the packages whose __init__ runs before ``module`` (parents)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_the_package_has_no_import_cycle():
    graph = {m: _imports(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if state.get(target) is None:
                visit(target, [*stack, target])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert len(state) == len(MODULES)


def test_no_module_imports_the_top_level_package():
    offenders = [
        m for m, deps in ((m, _imports(m)) for m in MODULES) if "annjax" in deps
    ]
    assert offenders == ["annjax"] or offenders == [], offenders


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_and_functions_stay_small(module):
    path = MODULES[module]
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path.name}: {len(lines)} lines"
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = set()
        if ast.get_docstring(node, clean=False) is not None:
            first = node.body[0]
            doc = set(range(first.lineno, first.end_lineno + 1))
        code = [
            i
            for i in range(node.lineno, node.end_lineno + 1)
            if i not in doc
            and lines[i - 1].strip()
            and not lines[i - 1].strip().startswith("#")
        ]
        assert len(code) <= MAX_FUNCTION_LINES, (
            f"{module}.{node.name}: {len(code)} lines of code"
        )


def test_every_subpackage_says_what_it_is():
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc and doc.strip(), f"{module} has no docstring"


def test_the_architecture_map_names_every_module():
    text = ARCHITECTURE.read_text()
    for module, path in MODULES.items():
        rel = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" and module != "annjax":
            rel = path.parent.relative_to(PACKAGE).as_posix() + "/"
        elif module == "annjax":
            rel = "__init__.py"
        assert rel.split("/")[-1] in text or rel in text, f"{rel} missing"
