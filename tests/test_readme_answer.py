"""The README's answer is what the committed suite result renders to, and the export and the
renderer work on a suite measured here."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.commands import cli, env_for
from support.repo import ROOT

from orchestrator.reports.readme_answer import (
    BEGIN,
    END,
    check_schema,
    current_block,
    render,
    splice,
)
from orchestrator.services import Services

ANSWER = ROOT / "docs" / "answer" / "suite.json"
README = ROOT / "README.md"


def _committed() -> dict[str, Any]:
    return dict(json.loads(ANSWER.read_text()))


def _renderer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.reports.readme_answer", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


class TestCommittedAnswer:
    """README.md's answer block and docs/answer/suite.json cannot drift apart."""

    def test_readme_shows_the_rendered_file(self) -> None:
        """The block between the markers is exactly what the committed file renders to."""
        shown = current_block(README.read_text())
        assert shown, f"README.md has no {BEGIN} ... {END} block"
        assert shown == render(_committed()), (
            "README.md's answer differs from what docs/answer/suite.json renders to: run "
            "`make answer-render`")

    def test_answer_comes_first(self) -> None:
        """Line 1 asks the question; the answer block follows it before anything else."""
        lines = README.read_text().splitlines()
        assert lines[0].startswith("# ") and lines[0].endswith("?")
        assert next(line for line in lines[1:] if line.strip()) == BEGIN

    def test_check_sees_an_edited_block(self, tmp_path: Path) -> None:
        """`render --check` passes on the README as committed and fails, naming the make
        target, once a figure of its block is edited by hand."""
        readme, answer = tmp_path / "README.md", tmp_path / "docs" / "answer" / "suite.json"
        readme.write_text(README.read_text())
        answer.parent.mkdir(parents=True)
        answer.write_text(ANSWER.read_text())
        assert _renderer("render", "--check", str(answer), str(readme)).returncode == 0
        block = current_block(readme.read_text())
        edited = re.sub(r"meets \((\d)/", r"meets (0/", block, count=1)
        assert edited != block
        readme.write_text(splice(readme.read_text(), edited))
        result = _renderer("render", "--check", str(answer), str(readme))
        assert result.returncode == 1
        assert "run `make answer-render`" in result.stderr

    def test_file_schema(self) -> None:
        """The committed file has every field the renderer reads, a commit, the machine and
        the command that measured it, and a verdict for every point and backend."""
        doc = _committed()
        assert check_schema(doc) == []
        prov = doc["provenance"]
        assert prov["commits"] and all(re.fullmatch(r"[0-9a-f]{40}", c)
                                       for c in prov["commits"])
        assert prov["command"].startswith("python -m orchestrator suite workloads/suite.yaml")
        machine = prov["machine"]
        assert machine["cpus"] >= 1 and machine["memory_bytes"] > 0
        assert machine["cpu_model"] and machine["kernel"]
        suite = doc["suite"]
        points = {p["point"] for p in suite["points"]}
        for backend in doc["backends"]:
            judged = {v["point"] for v in suite["verdicts"] if v["backend"] == backend}
            assert judged and judged <= points, backend
        measured = [c for v in suite["verdicts"] for c in v["conditions"]]
        assert measured and all(c["limit"] is not None for c in measured)

    def test_schema_check_finds_problems(self) -> None:
        """A file that lacks a field, or has one of the wrong type, is refused by name."""
        doc = _committed()
        broken = copy.deepcopy(doc)
        del broken["suite"]["verdicts"][0]["meets"]
        broken["provenance"]["measured_s"] = "ten minutes"
        problems = check_schema(broken)
        assert "suite.verdicts[0].meets: expected bool, found NoneType" in problems
        assert "provenance.measured_s: expected int, found str" in problems
        assert check_schema({**doc, "version": 0})

    def test_sentences_follow_the_verdicts(self) -> None:
        """Every point where postgres-cache misses is named as a miss in its table row, and
        the sentences say at how many points it meets the target."""
        doc = _committed()
        block = render(doc)
        verdicts = [v for v in doc["suite"]["verdicts"] if v["backend"] == "postgres-cache"]
        met = sum(v["meets"] for v in verdicts)
        rows = [line for line in block.splitlines() if line.startswith("| ")][1:]
        assert len(rows) == len({v["point"] for v in doc["suite"]["verdicts"]})
        assert sum("misses:" in row.split(" | ")[1] for row in rows) == len(verdicts) - met
        if met in (0, len(verdicts)):
            assert ("at no point" if met == 0 else "at every point") in block
        else:
            assert f"postgres-cache (pgcache, defaults) meets the target at {met} of " \
                   f"{len(verdicts)} points" in block


TINY_SUITE = {
    "name": "tiny",
    "workload": {"seed": 7, "processes": 1, "writers": 2, "readers": 4, "warmup_s": 0.1,
                 "duration_s": 0.4, "target_rate": {"reads": 400, "writes": 40},
                 "keyspace": 50, "prefill": True, "value_size": 64, "ttl_s": 60},
    "backends": ["postgres-cache", "valkey-tracking"],
    "repeat": 2,
    "axes": {"latency_ms": [0, 1.5]},
    "base": {"latency_ms": 0},
    "target": "get.p99_ms < 50 and set.p99_ms < 50 and stale_rate < 0.5",
}


@pytest.fixture(scope="module")
def fresh(services: Services, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A two-point suite measured here, exported and rendered."""
    tmp = tmp_path_factory.mktemp("answer")
    suite, db, out = tmp / "tiny.yaml", tmp / "r.duckdb", tmp / "answer.json"
    suite.write_text(yaml.safe_dump(TINY_SUITE))
    env = env_for(services, tmp)
    ran = cli("suite", str(suite), "--quiet", "--results", str(db), env=env, timeout=600)
    assert ran.returncode in (0, 99), ran.stderr[-3000:]
    exported = subprocess.run(
        [sys.executable, "-m", "orchestrator.reports.readme_answer", "export", "--results",
         str(db), "--suite", "tiny", "--command", f"python -m orchestrator suite {suite}",
         "-o", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        check=False)
    assert exported.returncode == 0, exported.stderr
    report = cli("report", "--suite", "tiny", "--format", "json", "--results", str(db),
                 env=env)
    assert report.returncode == 0, report.stderr
    readme = tmp / "README.md"
    readme.write_text(f"# Question?\n\n{BEGIN}\n{END}\n\nthe rest\n")
    rendered = _renderer("render", str(out), str(readme))
    assert rendered.returncode == 0, rendered.stderr
    return {"doc": json.loads(out.read_text()), "report": json.loads(report.stdout),
            "readme": readme.read_text()}


class TestFreshSuite:
    """The export and the renderer on a suite measured in the test."""

    def test_export_is_the_suite_report(self, fresh: dict[str, Any]) -> None:
        """The exported answer is `report --suite --format json`, field for field: one
        source of truth."""
        assert fresh["doc"]["suite"] == fresh["report"]
        assert check_schema(fresh["doc"]) == []

    def test_provenance(self, fresh: dict[str, Any]) -> None:
        """The commit the runs recorded, this machine, the command and the backends'
        settings are in the file."""
        doc = fresh["doc"]
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        assert [c.removesuffix("+dirty") for c in doc["provenance"]["commits"]] == [head]
        assert doc["provenance"]["machine"]["cpus"] >= 1
        assert doc["provenance"]["command"].startswith("python -m orchestrator suite ")
        assert doc["backends"]["postgres-cache"] == {"type": "pgcache", "options": {}}
        assert doc["backends"]["valkey-tracking"]["type"] == "valkey-tracking"
        assert doc["load"]["target_rate"] == {"reads": 400.0, "writes": 40.0}

    def test_rendered_block(self, fresh: dict[str, Any]) -> None:
        """The README gets a row per point and a column per backend, each cell the verdict
        the file holds, the sentences and the provenance line; the rest is untouched."""
        doc, text = fresh["doc"], fresh["readme"]
        assert text.startswith("# Question?\n\n" + BEGIN) and text.endswith(END + "\n\nthe rest\n")
        rows = [line for line in text.splitlines() if line.startswith("| ")]
        assert rows[0] == "| point | postgres-cache | valkey-tracking |"
        assert [r.split(" | ")[0] for r in rows[1:]] == ["| 0 ms (base)", "| 1.5 ms"]
        label = {p["point"]: "| 0 ms (base)" if p["values"]["latency_ms"] == 0 else "| 1.5 ms"
                 for p in doc["suite"]["points"]}
        for verdict in doc["suite"]["verdicts"]:
            row = next(r for r in rows[1:] if r.split(" | ")[0] == label[verdict["point"]])
            cell = row.split(" | ")[1 + ["postgres-cache", "valkey-tracking"].index(
                verdict["backend"])]
            assert cell.startswith("meets" if verdict["meets"] else "misses:"), (row, verdict)
        assert "postgres-cache (pgcache, defaults) meets the target" in text
        assert f"at commit {doc['provenance']['commits'][0][:7]}" in text
        assert "`python -m orchestrator suite " in text
