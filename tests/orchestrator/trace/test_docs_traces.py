"""docs/traces.md's examples run as written: its commands and its Python."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from support.repo import ROOT

PAGE = ROOT / "docs" / "traces.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), re.S)


class TestExamples:
    def test_the_commands(self, tmp_path: Path) -> None:
        """Each command of the page's sh block succeeds, in order, in a temporary directory
        (the block is not ``bash``: tests/test_readme.py runs those lines in the checkout,
        where the trace would be left behind)."""
        (block,) = _blocks("sh")
        commands = block.replace("\\\n", " ").strip().splitlines()
        assert len(commands) == 2
        for command in commands:
            args = shlex.split(command)
            assert args[:3] == ["python", "-m", "orchestrator"]
            result = subprocess.run([sys.executable, *args[1:]], cwd=tmp_path,
                                    capture_output=True, text=True, timeout=600, check=False)
            assert result.returncode == 0, result.stderr
        assert "operations per instance:" in result.stdout

    def test_the_python(self, tmp_path: Path) -> None:
        """The page's Python example runs and prints a summary."""
        (block,) = _blocks("python")
        out = io.StringIO()
        cwd = Path.cwd()
        os.chdir(tmp_path)
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(block, str(PAGE), "exec"), {})
        finally:
            os.chdir(cwd)
        assert "10,000 operations" in out.getvalue()
