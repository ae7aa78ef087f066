"""Every package's docstring names its modules, one line each, and names nothing else.

A package's ``__init__.py`` docstring is its map: each module (and each subpackage) of the
package has a line of its own beginning with its name in double backquotes and a colon,
``name``: what it is. The check compares those lines with the files on disk, so a module
added, moved or renamed without its line (or a line left for a module that is gone) fails with
the exact line to add or remove. The checker itself is tested on a made-up tree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from support.repo import ROOT, write_tree

PACKAGES = ("orchestrator", "proxies", "pgcache")
# A docstring line that names a module: ``name``: what it is.
ENTRY = re.compile(r"^``([A-Za-z_][A-Za-z0-9_]*)``: \S")


def packages(root: Path, tops: tuple[str, ...]) -> list[Path]:
    """Every directory of ``tops`` that holds Python modules (a package, or one meant to be)."""
    found = []
    for top in tops:
        for path in sorted([root / top, *(root / top).rglob("*")]):
            if path.is_dir() and path.name != "__pycache__" and any(path.glob("*.py")):
                found.append(path)
    return found


def members(package: Path) -> set[str]:
    """The modules and subpackages of ``package``, as its docstring must name them."""
    modules = {p.stem for p in package.glob("*.py") if p.name != "__init__.py"}
    subpackages = {p.name for p in package.iterdir()
                   if p.is_dir() and (p / "__init__.py").exists()}
    return modules | subpackages


def named(docstring: str) -> list[str]:
    """The names the docstring's module lines give, in order (a name twice: listed twice)."""
    return [m.group(1) for line in docstring.splitlines() if (m := ENTRY.match(line.strip()))]


def problems(root: Path, tops: tuple[str, ...]) -> list[str]:
    """What to change so that every package docstring names exactly its modules."""
    found: list[str] = []
    for package in packages(root, tops):
        init = package / "__init__.py"
        where = init.relative_to(root).as_posix()
        dotted = ".".join(package.relative_to(root).parts)
        if not init.exists():
            found.append(f"{where}: missing; create it with a docstring naming the modules of "
                         f"{dotted}, one line each (``module``: what it is)")
            continue
        docstring = ast.get_docstring(ast.parse(init.read_text(), str(init))) or ""
        names = named(docstring)
        present = members(package)
        for name in sorted(present - set(names)):
            kind = "package" if (package / name).is_dir() else "module"
            found.append(f"{where}: add the line ``{name}``: ... to the docstring "
                         f"({kind} {dotted}.{name} has none)")
        for name in sorted(set(names) - present):
            found.append(f"{where}: remove the line ``{name}``: ... from the docstring "
                         f"({dotted}.{name} does not exist)")
        for name in sorted({n for n in names if names.count(n) > 1}):
            found.append(f"{where}: the docstring names ``{name}`` on {names.count(name)} "
                         "lines; keep one")
    return found


class TestProject:
    """The project's own packages."""

    def test_every_package_docstring_names_exactly_its_modules(self) -> None:
        """Each package of orchestrator, proxies and pgcache names each of its modules and
        subpackages on a line of its own, and no module that does not exist."""
        assert problems(ROOT, PACKAGES) == []

    def test_every_package_is_checked(self) -> None:
        """The walk finds the packages it is meant to (a walk that found none would pass)."""
        found = {".".join(p.relative_to(ROOT).parts) for p in packages(ROOT, PACKAGES)}
        assert {"orchestrator", "orchestrator.run", "orchestrator.workload", "proxies",
                "proxies.toxiproxy", "pgcache"} <= found


class TestChecker:
    """The checker finds what it is meant to find, and says which line to change."""

    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        return write_tree(tmp_path, {
            "app/__init__.py": '''\
                """The app.

                ``one``: the first module.
                ``sub``: a subpackage.
                """
                ''',
            "app/one.py": "",
            "app/sub/__init__.py": '"""Sub.\n\n``two``: the second.\n"""\n',
            "app/sub/two.py": "",
        })

    def test_a_true_map_passes(self, root: Path) -> None:
        """Docstrings that name exactly their modules and subpackages raise nothing."""
        assert problems(root, ("app",)) == []

    def test_a_module_without_its_line(self, root: Path) -> None:
        """A new module is reported with the line to add."""
        (root / "app" / "sub" / "pacer.py").write_text("")
        assert problems(root, ("app",)) == [
            "app/sub/__init__.py: add the line ``pacer``: ... to the docstring "
            "(module app.sub.pacer has none)"]

    def test_a_line_for_a_module_that_is_gone(self, root: Path) -> None:
        """A renamed module is reported twice: its new name to add, its old line to remove."""
        (root / "app" / "one.py").rename(root / "app" / "first.py")
        assert problems(root, ("app",)) == [
            "app/__init__.py: add the line ``first``: ... to the docstring "
            "(module app.first has none)",
            "app/__init__.py: remove the line ``one``: ... from the docstring "
            "(app.one does not exist)"]

    def test_a_package_without_init_and_a_name_twice(self, root: Path) -> None:
        """A directory of modules without ``__init__.py`` is reported, and a doubled line."""
        write_tree(root, {"app/bare/three.py": "",
                     "app/sub/__init__.py": '"""Sub.\n\n``two``: one.\n``two``: two.\n"""\n'})
        assert problems(root, ("app",)) == [
            "app/bare/__init__.py: missing; create it with a docstring naming the modules of "
            "app.bare, one line each (``module``: what it is)",
            "app/sub/__init__.py: the docstring names ``two`` on 2 lines; keep one"]

    def test_a_name_in_prose_is_not_a_line(self, root: Path) -> None:
        """A module mentioned inside a sentence does not count as its line."""
        write_tree(root, {"app/sub/__init__.py": '"""Sub, see ``two``: it is there.\n"""\n'})
        assert problems(root, ("app",)) == [
            "app/sub/__init__.py: add the line ``two``: ... to the docstring "
            "(module app.sub.two has none)"]
