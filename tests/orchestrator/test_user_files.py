"""The orchestrator never writes over a user's file: reports go only where no file is or where
its own report was, and only a pgcache results database (or a new one) is ever opened."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
from support.commands import cli, cli_here, env_for, write_workload
from support.filesystems import tmpfs
from support.repo import ROOT

from orchestrator.reports.output import MARKER
from orchestrator.services import Services

NULL_RUN = {"processes": 1, "writers": 1, "readers": 1, "write_iterations": 5,
            "read_iterations": 5, "keyspace": 4, "backends": ["null"]}


@pytest.fixture(scope="module")
def recorded(services: Services, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A results database holding one tiny run (of the null backend), and its log dir."""
    tmp = tmp_path_factory.mktemp("recorded")
    db = tmp / "results.duckdb"
    env = env_for(services, tmp)
    result = cli("run", str(write_workload(tmp, NULL_RUN)), "--results", str(db), env=env)
    assert result.returncode == 0, result.stderr
    log_dir = next((tmp / "logs").iterdir())
    return {"db": db, "log_dir": log_dir, "env": env}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables(path: Path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return sorted(r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()")
                      .fetchall())


def _copy(recorded: dict[str, Any], tmp_path: Path, name: str = "copy.duckdb") -> Path:
    copy = tmp_path / name
    shutil.copy(recorded["db"], copy)
    return copy


class TestReportOutput:
    """`report -o` writes only where no file is, or over a report of its own."""

    def test_never_over_a_database(self, recorded: dict[str, Any], tmp_path: Path) -> None:
        """-o naming the results database, any DuckDB file or a write-ahead log is refused
        (exit 2, file unchanged), --force or not."""
        db = _copy(recorded, tmp_path)
        other, wal = tmp_path / "other.db", tmp_path / "other.db.wal"
        with duckdb.connect(str(other)) as con:
            con.execute("CREATE TABLE mine AS SELECT 42 AS answer")
        wal.write_bytes(b"not really a log")
        before = {db: _digest(db), other: _digest(other), wal: _digest(wal)}
        results = [cli("report", "--html", "-o", str(db), "--results", str(db),
                       env=recorded["env"]),
                   cli_here("report", "--html", "-o", str(db), "--force", "--results", str(db)),
                   cli_here("report", "--html", "-o", str(other), "--force", "--results",
                            str(db)),
                   cli_here("report", "--html", "-o", str(wal), "--force", "--results",
                            str(db))]
        for result, target in zip(results, (db, db, other, wal), strict=True):
            assert result.returncode == 2, result.stderr
            assert result.stderr.startswith(f"error: -o {target}: refusing to write the report "
                                            "over a DuckDB database"), result.stderr
            assert "nothing was written" in result.stderr
        assert {path: _digest(path) for path in before} == before
        assert _tables(other) == ["mine"]
        assert not list(tmp_path.glob(".*.tmp"))

    def test_never_over_another_file(self, recorded: dict[str, Any], tmp_path: Path) -> None:
        """An existing file that is not its own report, or a directory, is refused (exit 2,
        unchanged); --force replaces a file, never a directory."""
        notes, kept = tmp_path / "notes.html", tmp_path / "kept.html"
        for path in (notes, kept):
            path.write_text("<html>my own notes</html>")
        folder = tmp_path / "folder"
        folder.mkdir()
        db = str(recorded["db"])
        refused = cli_here("report", "--html", "-o", str(kept), "--results", db)
        forced = cli_here("report", "--html", "-o", str(notes), "--force", "--results", db)
        into_folder = cli_here("report", "--html", "-o", str(folder), "--force", "--results", db)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith(f"error: -o {kept}: refusing to write the report over "
                                         "a file this tool did not write as a report")
        assert "--force" in refused.stderr
        assert kept.read_text() == "<html>my own notes</html>"
        assert forced.returncode == 0, forced.stderr
        assert MARKER in notes.read_text()
        assert into_folder.returncode == 2, into_folder.stderr
        assert "is a directory" in into_folder.stderr
        assert not list(folder.iterdir())

    def test_replaces_its_own_report(self, recorded: dict[str, Any], tmp_path: Path) -> None:
        """A report it wrote (its marker on the first lines) is replaced; a new name is
        written; -o without --html is refused."""
        out, db = tmp_path / "r.html", str(recorded["db"])
        first = cli_here("report", "--html", "-o", str(out), "--results", db)
        assert first.returncode == 0, first.stderr
        assert MARKER in out.read_text().splitlines()[0]
        again = cli_here("report", "--html", "-o", str(out), "--results", db)
        text_o = cli_here("report", "--format", "json", "-o", str(tmp_path / "r.json"),
                          "--results", db)
        assert again.returncode == 0, again.stderr
        assert text_o.returncode == 2
        assert "-o writes the HTML report" in text_o.stderr
        assert not (tmp_path / "r.json").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]

    def test_failed_write_leaves_the_old_report(self, recorded: dict[str, Any],
                                                tmp_path: Path) -> None:
        """A report that cannot be written whole (a full disk) leaves the earlier report as it
        was and no partial file: exit 2."""
        with tmpfs(tmp_path / "small", "4k") as small:
            out = small / "r.html"
            old = f"<!DOCTYPE html>{MARKER}<p>the earlier report</p>"
            out.write_text(old)
            result = cli_here("report", "--html", "-o", str(out), "--results",
                              str(recorded["db"]))
            assert result.returncode == 2, result.stderr
            assert result.stderr.startswith(f"error: -o {out}: cannot write the report there")
            assert out.read_text() == old
            assert [p.name for p in small.iterdir()] == ["r.html"]


class TestResultsDatabase:
    """Only a pgcache results database, or a new (or empty) DuckDB file, is opened."""

    def test_another_programs_duckdb(self, recorded: dict[str, Any], tmp_path: Path) -> None:
        """A DuckDB file with tables of its own named runs and ops is refused by every command
        that opens the results (exit 2, named, bytes and tables unchanged)."""
        theirs = tmp_path / "theirs.duckdb"
        with duckdb.connect(str(theirs)) as con:
            con.execute("CREATE TABLE runs (x INTEGER); CREATE TABLE ops (y VARCHAR); "
                        "INSERT INTO runs VALUES (1)")
        before = _digest(theirs)
        workload = str(write_workload(tmp_path, NULL_RUN))
        results = [cli("run", workload, "--results", str(theirs), env=recorded["env"])] + [
            cli_here(*command, "--results", str(theirs)) for command in (
                ["suite", str(ROOT / "workloads/suite.yaml"), "--quick"],
                ["suite", str(ROOT / "workloads/suite.yaml"), "--quick", "--list"],
                ["ingest", str(recorded["log_dir"])], ["query", "SELECT 1"], ["report"],
                ["report", "--html", "-o", str(tmp_path / "r.html")])]
        for result in results:
            assert result.returncode == 2, (result.args, result.stderr)
            assert result.stderr.startswith(f"error: {theirs} is not a pgcache results "
                                            "database"), (result.args, result.stderr)
            assert "Traceback" not in result.stderr
        assert _digest(theirs) == before
        assert _tables(theirs) == ["ops", "runs"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.duckdb", "w.yaml"]

    def test_files_that_are_not_duckdb(self, recorded: dict[str, Any], tmp_path: Path) -> None:
        """A text, HTML, random or empty file, or a directory, given as --results: exit 2,
        named, unchanged, whichever command; a location that cannot be written: exit 2."""
        files = {"notes.txt": b"my notes\n", "page.html": b"<!DOCTYPE html><p>mine</p>",
                 "noise.duckdb": bytes(range(256)) * 64, "empty.duckdb": b""}
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)
        (tmp_path / "folder.duckdb").mkdir()
        workload = str(write_workload(tmp_path, NULL_RUN))
        commands = [["run", workload], ["ingest", str(recorded["log_dir"])],
                    ["report", "--html"], ["query", "SELECT 1"], ["run", workload]]
        targets = [*files, "folder.duckdb"]
        results = [cli_here(*command, "--results", str(tmp_path / target))
                   for command, target in zip(commands, targets, strict=True)]
        unwritable = cli_here("ingest", str(recorded["log_dir"]), "--results",
                              "/proc/pgcache/r.duckdb")
        assert unwritable.returncode == 2, unwritable.stderr
        assert unwritable.stderr.startswith("error: cannot open the results database "
                                            "/proc/pgcache/r.duckdb"), unwritable.stderr
        for result, target in zip(results, targets, strict=True):
            assert result.returncode == 2, (result.args, result.stderr)
            assert result.stderr.startswith(f"error: {tmp_path / target} is not a pgcache "
                                            "results database"), (result.args, result.stderr)
            assert "Traceback" not in result.stderr
        for name, data in files.items():
            assert (tmp_path / name).read_bytes() == data
        assert not list((tmp_path / "folder.duckdb").iterdir())
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*targets, "w.yaml"])

    def test_empty_duckdb_is_initialised(self, recorded: dict[str, Any],
                                         tmp_path: Path) -> None:
        """An empty DuckDB database is a new results database: report says it holds no run
        (exit 2), ingest fills it."""
        db = tmp_path / "empty.duckdb"
        duckdb.connect(str(db)).close()
        empty = cli_here("report", "--results", str(db))
        assert (empty.returncode, empty.stderr) == (
            2, "error: the results database holds no run yet\n")
        result = cli_here("ingest", str(recorded["log_dir"]), "--results", str(db))
        assert result.returncode == 0, result.stderr
        assert {"runs", "ops", "schema_info"} <= set(_tables(db))
