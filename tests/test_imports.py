"""The import structure: no cycles at any level, no hidden imports, proxies below orchestrator.

The checks read the source (``ast``), so they see every import, including those inside
functions and under ``if TYPE_CHECKING:``. A cycle is looked for between modules, and between
packages at every depth (``orchestrator.run`` and ``orchestrator.results`` importing each other
through any of their modules is a cycle too). The checker itself is tested on a made-up tree.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.repo import ROOT, write_tree

PACKAGES = ("orchestrator", "proxies", "pgcache")
# Imports that may stay inside a function: optional dependencies only (Ray: the `distributed`
# extra).
OPTIONAL = {"uvloop", "ray"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (a project module, or the top of a third-party one)
    line: int
    in_function: bool


def find_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return True
    return False


def find_imports(modules: dict[str, Path]) -> Iterator[Import]:
    """Every import statement of every module, resolved to project modules where it names one."""
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        parents = _parents(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for target in targets:
                if target not in modules:
                    target = target.split(".")[0]  # a third-party (or standard) module
                yield Import(name, target, node.lineno, _in_function(node, parents))


def dynamic_imports(modules: dict[str, Path]) -> Iterator[str]:
    """Calls that load modules by name (importlib.import_module, find_spec, __import__)."""
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(
                    func, "id", "")
                if called in ("import_module", "find_spec", "__import__"):
                    yield f"{name}:{node.lineno}: {called}"


def graph_at(imports: list[Import], modules: dict[str, Path],
             depth: int | None) -> dict[str, set[str]]:
    """Imports between project modules, each name cut to its first ``depth`` parts."""
    def cut(name: str) -> str:
        return name if depth is None else ".".join(name.split(".")[:depth])

    graph: dict[str, set[str]] = {cut(m): set() for m in modules}
    for imp in imports:
        if imp.target in modules and cut(imp.module) != cut(imp.target):
            graph[cut(imp.module)].add(cut(imp.target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def all_cycles(root: Path, packages: tuple[str, ...]) -> dict[str, list[list[str]]]:
    """The cycles of the tree: between modules, and between packages at each depth."""
    modules = find_modules(root, packages)
    imports = list(find_imports(modules))
    deepest = max(name.count(".") + 1 for name in modules)
    levels: dict[str, list[list[str]]] = {"modules": cycles(graph_at(imports, modules, None))}
    for depth in range(1, deepest):
        levels[f"packages at depth {depth}"] = cycles(graph_at(imports, modules, depth))
    return {level: found for level, found in levels.items() if found}


MODULES = find_modules(ROOT, PACKAGES)
IMPORTS = list(find_imports(MODULES))


class TestProject:
    """The project's own import structure."""

    def test_no_cycles_at_any_level(self) -> None:
        """No module, and no package at any depth, imports itself through others."""
        assert all_cycles(ROOT, PACKAGES) == {}

    def test_no_imports_inside_functions(self) -> None:
        """Imports sit at the top of a module, except those of optional dependencies."""
        hidden = [f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS
                  if i.in_function and i.target not in OPTIONAL]
        assert hidden == []

    def test_no_modules_loaded_by_name(self) -> None:
        """Modules that always ship are imported, never looked up or loaded by name."""
        assert list(dynamic_imports(MODULES)) == []

    @pytest.mark.parametrize(("package", "forbidden"), [
        ("proxies", {"orchestrator"}), ("pgcache", {"orchestrator", "proxies"})])
    def test_lower_layers_do_not_import_upper_ones(self, package: str,
                                                   forbidden: set[str]) -> None:
        """proxies never imports orchestrator; pgcache imports neither."""
        upward = [f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS
                  if i.module.split(".")[0] == package and i.target.split(".")[0] in forbidden]
        assert upward == []


class TestChecker:
    """The checker finds what it is meant to find (so a green project test means something)."""

    def test_module_cycle_through_a_function_import(self, tmp_path: Path) -> None:
        """Two modules importing each other, one of them inside a function, is a cycle."""
        root = write_tree(tmp_path, {"app/__init__.py": "", "app/a.py": "from app import b\n",
                                "app/b.py": "def f():\n    from app.a import x\n"})
        assert all_cycles(root, ("app",))["modules"] == [["app.a", "app.b"]]
        modules = find_modules(root, ("app",))
        assert [(i.module, i.in_function) for i in find_imports(modules)
                if i.target.startswith("app.")] == [("app.a", False), ("app.b", True)]

    def test_package_cycle_without_a_module_cycle(self, tmp_path: Path) -> None:
        """x.one -> y.two and y.three -> x.four: no module cycle, but x and y form one."""
        root = write_tree(tmp_path, {
            "app/__init__.py": "", "app/x/__init__.py": "", "app/y/__init__.py": "",
            "app/x/one.py": "import app.y.two\n", "app/y/two.py": "",
            "app/y/three.py": "from app.x import four\n", "app/x/four.py": "",
        })
        found = all_cycles(root, ("app",))
        assert "modules" not in found
        assert found["packages at depth 2"] == [["app.x", "app.y"]]

    def test_relative_imports_and_dynamic_loading(self, tmp_path: Path) -> None:
        """Relative imports resolve to their modules; import_module is reported."""
        root = write_tree(tmp_path, {
            "app/__init__.py": "from ._a import x\n",
            "app/_a.py": "import importlib\nm = importlib.import_module('app._b')\n",
            "app/_b.py": "from . import _a\n"})
        modules = find_modules(root, ("app",))
        edges = {(i.module, i.target) for i in find_imports(modules)}
        assert {("app", "app._a"), ("app._b", "app._a")} <= edges
        assert list(dynamic_imports(modules)) == ["app._a:2: import_module"]
