"""The shape the code keeps (issue 21): short functions, one-way layers, no import cycle.

Read from the source with `ast`, so each rule is checked on every run, not measured by hand
once: functions of at most MAX_FUNCTION_LINES lines outside tests; `policy/` imports nothing
from `components/`; components import neither the stacks nor platformctl (only `stacks/`
reads config); no two project modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("components", "stacks", "policy", "platformctl")
MAX_FUNCTION_LINES = 80


def source_files() -> list[Path]:
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    return files + [ROOT / "__main__.py", *sorted((ROOT / ".ci").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def long_functions(source: str, name: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            if lines > MAX_FUNCTION_LINES:
                yield f"{name}:{node.lineno} {node.name}: {lines} lines"


def imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports, at any depth of the file (a function's import counts)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    files = source_files()
    modules = {module_name(p) for p in files}
    return {module_name(p): imports(p, modules) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph.get(module, ())):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_function_is_longer_than_80_lines() -> None:
    assert [f for p in source_files() for f in long_functions(p.read_text(), str(p.relative_to(ROOT)))] == []


def test_the_rules_see_a_long_function_and_a_cycle() -> None:
    def function(lines: int) -> str:  # `lines` lines in all, its `def` included
        return "def f():\n" + "    x = 1\n" * (lines - 1)

    assert list(long_functions(function(MAX_FUNCTION_LINES), "ok.py")) == []
    assert list(long_functions(function(MAX_FUNCTION_LINES + 1), "long.py")) == [f"long.py:1 f: {MAX_FUNCTION_LINES + 1} lines"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [("policy", "components"), ("components", "stacks"), ("components", "platformctl")],
)
def test_layers_depend_one_way(importer: str, imported: str) -> None:
    graph = import_graph()
    assert sorted(
        f"{module} imports {other}" for module, others in graph.items() if module.split(".")[0] == importer
        for other in others if other.split(".")[0] == imported
    ) == []


def test_components_never_read_config() -> None:
    """Only `stacks/` reads `pulumi.Config`: components get typed Args."""
    readers = [
        str(p.relative_to(ROOT)) for p in sorted((ROOT / "components").rglob("*.py"))
        if any(isinstance(n, ast.Attribute) and n.attr == "Config" and isinstance(n.value, ast.Name) and n.value.id == "pulumi"
               for n in ast.walk(ast.parse(p.read_text())))
    ]
    assert readers == []
