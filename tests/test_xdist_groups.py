"""support.xdist_groups: tests sharing a fixture wider than one test run on one
pytest-xdist worker, whatever files they are in; the others spread over the workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.repo import ROOT

CONFTEST = '''
import os, json, pytest
pytest_plugins = ("support.xdist_groups",)

@pytest.fixture(scope="session")
def cluster():
    return os.getpid()
'''

SHARED = '''
import os, json, pytest

@pytest.fixture(scope="module")
def run():
    return os.getpid()

def _note(name, pid):
    with open(os.environ["NOTES"], "a") as notes:
        notes.write(json.dumps([name, pid, os.getpid()]) + "\\n")

{tests}
'''


def _module(prefix: str, fixture: str, count: int) -> str:
    tests = "\n".join(f"def test_{prefix}{i}({fixture}):\n    _note('{prefix}', {fixture})\n"
                      for i in range(count))
    return SHARED.format(tests=tests)


class TestGroups:
    """Run a small suite of its own with four workers and see where each test ran."""

    def test_shared_fixtures_keep_their_tests_together(self, tmp_path: Path) -> None:
        """A module fixture's tests ran in one worker and set it up once; a session fixture
        used from two files (the Ray cluster's case) was set up in one worker only; the
        plain tests spread over more than one worker."""
        (tmp_path / "conftest.py").write_text(CONFTEST)
        (tmp_path / "test_a.py").write_text(_module("a", "run", 6))
        (tmp_path / "test_b.py").write_text(_module("b", "cluster", 3))
        (tmp_path / "test_c.py").write_text(_module("c", "cluster", 3))
        (tmp_path / "test_d.py").write_text(
            "import os, json\n" + "".join(
                f"def test_d{i}():\n    import time; time.sleep(0.3)\n"
                f"    open(os.environ['NOTES'], 'a').write(json.dumps(['d', 0, os.getpid()])"
                " + '\\n')\n" for i in range(12)))
        notes = tmp_path / "notes.jsonl"
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-n", "4", "-p", "no:cacheprovider",
             "--dist", "loadgroup", "-o", "addopts=", "--rootdir", str(tmp_path),
             str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**__import__("os").environ, "NOTES": str(notes),
                 "PYTHONPATH": str(ROOT / "tests")}, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        seen = [json.loads(line) for line in notes.read_text().splitlines()]
        by = {name: [(fix, pid) for n, fix, pid in seen if n == name] for name in "abcd"}
        assert len(by["a"]) == 6 and len({pid for _, pid in by["a"]}) == 1, by["a"]
        assert len({fix for fix, _ in by["a"]}) == 1  # the module fixture ran once
        cluster = by["b"] + by["c"]
        assert len(cluster) == 6 and len({pid for _, pid in cluster}) == 1, cluster
        assert len({pid for _, pid in by["d"]}) > 1, by["d"]
