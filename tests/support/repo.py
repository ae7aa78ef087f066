"""Where the repository's files are, for tests that run its commands or read its files."""

import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SHIPPED = sorted((ROOT / "workloads").glob("*.yaml"))
# Suite files (a base workload and axes to sweep) are named suite*.yaml; the rest are
# workloads.
SUITES = [p for p in _SHIPPED if p.name.startswith("suite")]
WORKLOADS = [p for p in _SHIPPED if p not in SUITES]


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """A made-up source tree under ``root``: each relative path written with its (dedented)
    text, folders made as needed; for tests of checkers that walk a tree."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root
