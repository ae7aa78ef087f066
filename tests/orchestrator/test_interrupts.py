"""Ctrl-C, SIGTERM and --timeout during the SQL of `query` and `report`, run as a subprocess
against a results database whose queries take minutes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.commands import cli, start, wait_until_open

from orchestrator.cli import DEFAULT_QUERY_TIMEOUT_S, build_parser, main
from orchestrator.results import store

# Minutes of work for DuckDB, whatever the machine: ten billion hashes.
ENDLESS = "SELECT sum(hash(range)) FROM range(10000000000)"
# How long a stopped command may take to end: the grace (3 s) and a loaded machine's delays.
STOP_WITHIN_S = 10


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results database with one run whose ``ops`` are ten billion rows (a view), so that
    `report` runs for minutes too."""
    path = tmp_path_factory.mktemp("interrupts") / "r.duckdb"
    conn = store.connect(path)
    try:
        conn.execute("INSERT INTO runs (run_id, workload, status, started_at) "
                     "VALUES ('r1', 'w', 'completed', TIMESTAMP '2026-01-01')")
        conn.execute("DROP TABLE ops CASCADE")
        conn.execute(
            "CREATE VIEW ops AS SELECT 'r1' AS run_id, 'b' AS backend, 1 AS repetition, "
            "0 AS process, 0 AS task, 'get' AS op, 'k' AS key, i AS start_ns, "
            "hash(i) % 1000 AS latency_ns, true AS hit, false AS local, "
            "NULL::VARCHAR AS version, NULL::BIGINT AS server_version, NULL::VARCHAR AS error "
            "FROM range(10000000000) t(i)")
    finally:
        conn.close()
    return path


def _stopped(args: list[str], db: Path, sig: signal.Signals) -> tuple[int, str, float]:
    """Start a command, signal its process group once its SQL runs; its exit code, stderr
    and how long it took to end after the signal."""
    proc = start(args, dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        wait_until_open(proc, db)
        time.sleep(0.5)  # into the query itself, past opening the database
        os.killpg(proc.pid, sig)
        signalled = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        return proc.returncode, stderr, time.monotonic() - signalled
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{args[0]} still ran 30 s after {sig.name}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


class TestSignals:
    """SIGINT and SIGTERM end a command's long SQL at once: exit 130, one line."""

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGINT,
                                     signal.SIGTERM], ids=["int", "term", "int-2", "term-2"])
    def test_query(self, results: Path, sig: signal.Signals) -> None:
        """`query` running for minutes ends within seconds of the signal, exit 130,
        `interrupted` its only line on stderr."""
        code, stderr, took = _stopped(["query", ENDLESS, "--results", str(results)],
                                      results, sig)
        assert (code, stderr.splitlines()) == (130, ["interrupted"]), stderr[-2000:]
        assert took < STOP_WITHIN_S

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
    def test_report(self, results: Path, sig: signal.Signals) -> None:
        """`report` whose summary runs for minutes ends the same way."""
        code, stderr, took = _stopped(["report", "--results", str(results)], results, sig)
        assert (code, stderr.splitlines()) == (130, ["interrupted"]), stderr[-2000:]
        assert took < STOP_WITHIN_S


class TestTimeout:
    """`query --timeout` bounds how long a query runs."""

    def test_stops_the_query(self, results: Path) -> None:
        """A query past its --timeout is stopped: exit 1, one line naming the limit."""
        started = time.monotonic()
        result = cli("query", ENDLESS, "--timeout", "1", "--results", str(results), timeout=60)
        assert result.returncode == 1, result.stderr[-2000:]
        assert result.stderr.splitlines() == [
            "error: the query ran for --timeout 1 s without finishing and was stopped; narrow "
            "it (a WHERE, a LIMIT) or allow it longer: --timeout SECONDS (0: no limit)"]
        assert time.monotonic() - started < 30

    def test_default_and_bad_values(self, results: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
        """The default is 300 s, 0 means none, and a negative or non-numeric one is bad
        input (exit 2)."""
        assert DEFAULT_QUERY_TIMEOUT_S == 300
        assert build_parser().parse_args(["query", "SELECT 1"]).timeout == 300
        assert main(["query", "SELECT 42 AS answer", "--timeout", "0", "--results",
                     str(results)]) == 0
        assert "42" in capsys.readouterr().out
        for bad in ("-1", "soon", "nan"):
            with pytest.raises(SystemExit) as exited:
                build_parser().parse_args(["query", "SELECT 1", "--timeout", bad])
            assert exited.value.code == 2
            assert "--timeout: expected a number of seconds >= 0" in capsys.readouterr().err
