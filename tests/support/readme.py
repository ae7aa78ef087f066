"""The commands the READMEs show, for the tests that run them."""

from __future__ import annotations

import re
import shlex

from support.repo import ROOT

# The READMEs and the reference under docs/: every command any of them shows is run.
DOCS = [ROOT / "README.md", ROOT / "results" / "README.md",
        *sorted((ROOT / "docs").rglob("*.md"))]


def commands(prefix: str) -> list[tuple[str, str]]:
    """(document, line) for each line of a bash block that starts with ``prefix``."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.splitlines():
                # ``python -m orchestrator`` is the command line, not a module beneath it
                # (``python -m orchestrator.pgcache_bench.microbench``: a minutes-long run).
                rest = line[len(prefix):]
                if line.startswith(prefix) and not (prefix[-1].isalnum() and rest
                                                    and not rest[0].isspace()):
                    found.append((doc.name, line.split("  #")[0].strip()))
    return found


def about_suites(line: str) -> bool:
    """Whether a ``python -m orchestrator`` line needs a measured suite: ``suite``,
    ``report --suite`` and queries of the suite tables. tests/orchestrator/
    test_suite_command.py runs these against the quick suite's database; the other lines
    run in tests/test_readme.py with tiny runs."""
    words = shlex.split(line)
    return words[3] == "suite" or "--suite" in words or (words[3] == "query"
                                                        and "suite_" in line)
