"""Names that say where things live: each class name is used once across the project.

Two classes of one name (two ``ProtocolError``s, a ``Point`` in a suite and in a benchmark)
make every import and every traceback ambiguous; the check reads the source (``ast``). The
checker itself is tested on a made-up tree.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from support.repo import ROOT

PACKAGES = ("orchestrator", "proxies", "pgcache")


def shared_class_names(root: Path, packages: tuple[str, ...]) -> dict[str, list[str]]:
    """Class name -> the modules (paths) that define a class of that name, where more than
    one does."""
    where: defaultdict[str, list[str]] = defaultdict(list)
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef):
                    where[node.name].append(path.relative_to(root).as_posix())
    return {name: paths for name, paths in where.items() if len(paths) > 1}


class TestClassNames:
    def test_each_class_name_once(self) -> None:
        """No class name of orchestrator, proxies or pgcache is defined twice."""
        assert shared_class_names(ROOT, PACKAGES) == {}

    def test_the_checker_finds_a_shared_name(self, tmp_path: Path) -> None:
        """Two modules defining ProtocolError are reported, with both paths."""
        for name in ("a", "b"):
            (tmp_path / "app").mkdir(exist_ok=True)
            (tmp_path / "app" / f"{name}.py").write_text("class ProtocolError(Exception):\n"
                                                         "    pass\n")
        (tmp_path / "app" / "c.py").write_text("class Other:\n    pass\n")
        assert shared_class_names(tmp_path, ("app",)) == {
            "ProtocolError": ["app/a.py", "app/b.py"]}
