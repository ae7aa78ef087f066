"""pgcache's shape: no class grows past what one reader holds in mind."""

from __future__ import annotations

import ast
from pathlib import Path

import pgcache

MAX_CLASS_LINES = 400


class TestLayout:
    def test_no_class_is_over_400_lines(self) -> None:
        """Every class in pgcache/ fits in 400 lines (split one that does not)."""
        package = Path(pgcache.__file__).parent
        too_long = []
        for module in sorted(package.glob("*.py")):
            for node in ast.walk(ast.parse(module.read_text())):
                if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_CLASS_LINES:
                        too_long.append(f"{module.name}: {node.name} ({lines} lines)")
        assert not too_long, too_long
