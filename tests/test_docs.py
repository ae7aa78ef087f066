"""The reference under docs/ and the READMEs cannot drift from the code: the workload keys,
the results schema, the links between pages, the dated measurements' provenance."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from support.repo import ROOT

from orchestrator.results import schema
from orchestrator.workload.validation import NETWORK_KEYS, PLACEMENT_KEYS, WORKLOAD_KEYS

PAGES = [ROOT / "README.md", ROOT / "pgcache" / "README.md", ROOT / "results" / "README.md",
         *sorted((ROOT / "docs").rglob("*.md"))]


def _reference_block() -> str:
    """The YAML block of docs/workloads.md that lists every key with its default."""
    text = (ROOT / "docs" / "workloads.md").read_text()
    return re.findall(r"```yaml\n(.*?)```", text, re.S)[0]


def _keys(block: str, indent: int, parent: str | None = None) -> set[str]:
    """The keys at ``indent`` (under ``parent:`` when given) of the reference block."""
    found, inside = set(), parent is None
    for line in block.splitlines():
        if parent is not None and re.match(r"[a-z_]+:", line):
            inside = line.startswith(f"{parent}:")
            continue
        match = re.match(" " * indent + r"([a-z_]+):", line)
        if inside and match and (indent == 0 or line[indent] != " "):
            found.add(match.group(1))
    return found


class TestWorkloadReference:
    """docs/workloads.md names exactly the keys the workload model accepts."""

    def test_top_level_keys(self) -> None:
        """Every top-level key is documented, and nothing else is."""
        assert _keys(_reference_block(), 0) == set(WORKLOAD_KEYS)

    @pytest.mark.parametrize(("parent", "keys"), [("network", NETWORK_KEYS),
                                                  ("placement", PLACEMENT_KEYS)])
    def test_nested_keys(self, parent: str, keys: tuple[str, ...]) -> None:
        """The keys of network and placement are documented, and nothing else is."""
        assert _keys(_reference_block(), 2, parent) == set(keys)

    def test_checker_finds_a_missing_key(self) -> None:
        """The comparison sees a key taken out of the reference."""
        block = _reference_block().replace("\nwarmup_s:", "\n# warmup_s:")
        assert _keys(block, 0) == set(WORKLOAD_KEYS) - {"warmup_s"}


class TestResultsReference:
    """results/README.md describes every table and view the schema creates."""

    def test_every_table_and_view(self) -> None:
        """Each table and view of a new results database is named in a heading or a row."""
        con = duckdb.connect()
        schema.install(con)
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        con.close()
        text = (ROOT / "results" / "README.md").read_text()
        missing = sorted(name for name in tables | set(schema.VIEW_NAMES)
                         if f"`{name}`" not in text)
        assert missing == []


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug)
    return out


class TestLinks:
    """Every relative link between the pages leads to a file, and to a heading if it names
    one."""

    @pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
    def test_links_resolve(self, page: Path) -> None:
        """No link of this page is broken."""
        broken = []
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            unknown = bool(anchor) and path.suffix == ".md" and anchor not in _anchors(path)
            if not path.exists() or unknown:
                broken.append(target)
        assert broken == []


class TestMeasurements:
    """Each dated measurement says how it was taken: its command, commit and machine."""

    @pytest.mark.parametrize("page", sorted((ROOT / "docs" / "measurements").glob("*.md")),
                             ids=lambda p: p.name)
    def test_provenance(self, page: Path) -> None:
        """A date in the name, a command block, a commit and the machine."""
        text = page.read_text()
        assert re.match(r"\d{4}-\d{2}-\d{2}-", page.name)
        assert "```bash\npython -m orchestrator" in text
        assert re.search(r"commit [0-9a-f]{7}", text)
        assert "2 shared cores" in text or "2 cores" in text
