"""Where the repository's files are, for tests that run its commands or read its files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SHIPPED = sorted((ROOT / "workloads").glob("*.yaml"))
# Suite files (a base workload and axes to sweep) are named suite*.yaml; the rest are
# workloads.
SUITES = [p for p in _SHIPPED if p.name.startswith("suite")]
WORKLOADS = [p for p in _SHIPPED if p not in SUITES]
