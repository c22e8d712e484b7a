"""The package's shape: no import cycle, floors that never reach up, a true map.

The folders are the architecture (shared/DESIGN.md); these tests keep them so.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "annjax"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


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


def test_training_never_imports_analysis():
    # analysis/ is the floor above training/: the train step's measurements
    # live in training/measure.py, and the profiler reads them from there
    offenders = {
        m: sorted(d for d in _imports(m) if d.startswith("annjax.analysis"))
        for m in MODULES
        if m.startswith("annjax.training")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_no_private_jax_api():
    users = [m for m, path in MODULES.items() if "jax._src" in path.read_text()]
    assert users == []


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
            name = path.parent.name + "/"  # a folder: "data/", never ""
        elif module == "annjax":
            rel = name = "__init__.py"
        else:
            name = path.name
        assert name in text or rel in text, f"{rel} missing"
