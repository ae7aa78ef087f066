"""What a command-line user expects: --version, --quiet, did-you-mean, validate of a suite,
query as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import yaml
from support.commands import cli, env_for, write_workload

from orchestrator.services import Services


class TestVersion:
    """--version says which pgcache this is."""

    def test_version(self) -> None:
        """It prints the installed distribution's version and exits 0."""
        result = cli("--version")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("python -m orchestrator (pgcache 0.")


class TestQuiet:
    """--quiet keeps the summary and drops the progress lines."""

    def test_quiet_run(self, services: Services, tmp_path: Path) -> None:
        """A quiet run prints no progress or set-up line, and the summary."""
        path = write_workload(tmp_path, {"processes": 1, "writers": 1, "readers": 1,
                                         "write_iterations": 20, "read_iterations": 20,
                                         "backends": ["null"]})
        quiet = cli("run", str(path), "--quiet", "--results", str(tmp_path / "b.duckdb"),
                    env=env_for(services, tmp_path))
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr == ""  # a loud run says its set-up and progress there
        assert quiet.stdout.splitlines()[2].split()[:2] == ["backend", "op"]
        assert any(line.split()[:2] == ["null", "get"] for line in quiet.stdout.splitlines()
                   if line.strip())


class TestDidYouMean:
    """A misspelt key or backend name is answered with the name meant."""

    def test_unknown_key(self, tmp_path: Path) -> None:
        """writrs: did you mean 'writers'? (exit 2)."""
        path = write_workload(tmp_path, {"writrs": 2})
        result = cli("validate", str(path))
        assert result.returncode == 2
        assert "writrs: expected one of the known keys" in result.stderr
        assert "found an unknown key; did you mean 'writers'?" in result.stderr

    def test_unknown_backend_in_file_and_flag(self, tmp_path: Path) -> None:
        """A backend name one letter off, in the file or in --backends, is named."""
        path = write_workload(tmp_path, {"backends": ["valkey-trackin"]})
        result = cli("validate", str(path))
        assert result.returncode == 2
        assert "did you mean 'valkey-tracking'?" in result.stderr
        good = write_workload(tmp_path, {"backends": ["null"]}, name="g.yaml")
        flag = cli("validate", str(good), "--backends", "postgress-cache")
        assert flag.returncode == 2
        assert "'postgress-cache'; did you mean 'postgres-cache'?" in flag.stderr

    def test_nothing_close_is_not_guessed(self, tmp_path: Path) -> None:
        """A key like no known one gets no suggestion."""
        result = cli("validate", str(write_workload(tmp_path, {"colour": 1})))
        assert result.returncode == 2
        assert "did you mean" not in result.stderr


class TestValidateSuite:
    """validate recognises a suite file."""

    def test_shipped_suite(self) -> None:
        """The shipped suite validates as a suite, with its points and target."""
        result = cli("validate", "workloads/suite.yaml")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("workloads/suite.yaml: OK — a suite 'suite': 11 points "
                                        "(4 with --quick) along latency_ms, read_share, "
                                        "instances, target 'get.p99_ms < 2")

    def test_bad_suite(self, tmp_path: Path) -> None:
        """A suite with a bad axis is reported as a suite's problems, exit 2."""
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({"axes": {"latency_ms": [-1]}, "target": "x"}))
        result = cli("validate", str(path))
        assert result.returncode == 2
        assert "axes.latency_ms[0]: expected a round-trip latency" in result.stderr


class TestQueryCsv:
    """query --format csv is CSV a spreadsheet reads."""

    def test_csv(self, tmp_path: Path) -> None:
        """A header, NULL as an empty field, a comma or quote inside a value quoted."""
        db = tmp_path / "r.duckdb"
        duckdb.connect(str(db)).close()
        result = cli("query", "SELECT 1 AS a, NULL AS b, 'x,\"y\"' AS c", "--format", "csv",
                     "--results", str(db))
        assert result.returncode == 0, result.stderr
        assert list(csv.reader(io.StringIO(result.stdout))) == [["a", "b", "c"],
                                                                ["1", "", 'x,"y"']]
