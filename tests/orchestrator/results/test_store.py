"""orchestrator.results.store and .logs: the log files, their idempotent ingest, the summary."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestrator.errors import UsageError
from orchestrator.results import store
from orchestrator.results.logs import (
    OPS_COLUMNS,
    CsvRecorder,
    WorkerFiles,
    csv_row,
    worker_stem,
)


def _pass_files(tmp_path: Path, process: int, rows: Sequence[tuple[Any, ...]]) -> WorkerFiles:
    files = WorkerFiles.of(tmp_path, worker_stem("b", 1, process), process)
    recorder = CsvRecorder(files.ops)
    recorder.rows.extend(csv_row(*row) for row in rows)
    recorder.close()
    files.events.write_text(json.dumps({
        "ts": "2026-01-01 00:00:00.000001", "ts_ns": 5, "level": "info", "event": "ready",
        "run_id": "r1", "backend": "b", "repetition": 1, "process": process,
        "data": {"tasks": 2}}) + "\n")
    return files


ROWS = [
    (0, "set", "k1", 1_000, 2_000_000, None, None, "0:0:1", 7, None),
    (1, "get", "k1", 3_000_000, 1_000_000, 1, 1, "0:0:1", None, None),
    (1, "get", "ké,\"2", 4_000_000, 3_000_000, 0, 0, None, None, None),
    (1, "get", "k3", 5_000_000, 9_000_000, None, None, None, None, "TimeoutError: slow"),
]


@pytest.fixture
def conn(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con: duckdb.DuckDBPyConnection = store.connect(tmp_path / "r.duckdb")
    store.record_run_start(con, store.RunRecord(
        run_id="r1", workload="w", workload_yaml="writers: 1\n", seed=1,
        started_at=None, host="h", versions={}, git_commit=None, network={"mode": "none"}))
    return con


class TestIngest:
    """Worker files land in ops/events exactly once per pass."""

    def test_rows_and_types(self, conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
        """Every CSV column arrives with its type; quoting survives commas and quotes."""
        files = [_pass_files(tmp_path, 0, ROWS)]
        assert store.ingest_pass(conn, "r1", "b", 1, files) == 4
        got = conn.execute("SELECT task, op, key, start_ns, latency_ns, hit, local, version, "
                           "server_version, error FROM ops ORDER BY start_ns").fetchall()
        assert got[0] == (0, "set", "k1", 1_000, 2_000_000, None, None, "0:0:1", 7, None)
        assert got[1][5:8] == (True, True, "0:0:1")
        assert got[2][2] == 'ké,"2' and got[2][5] is False
        assert got[3][9] == "TimeoutError: slow"
        assert conn.execute("SELECT event, data->>'tasks' FROM events").fetchall() == [
            ("ready", "2")]

    def test_idempotent(self, conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
        """Ingesting the same pass twice leaves one copy."""
        files = [_pass_files(tmp_path, 0, ROWS), _pass_files(tmp_path, 1, ROWS[:1])]
        store.ingest_pass(conn, "r1", "b", 1, files)
        store.ingest_pass(conn, "r1", "b", 1, files)
        assert conn.execute("SELECT count(*) FROM ops").fetchone() == (5,)
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (2,)

    def test_invalidation_arrivals(self, conn: duckdb.DuckDBPyConnection,
                                   tmp_path: Path) -> None:
        """A worker's invalidations file becomes 'invalidation' events with data key,
        server_version and ts_ns (what the analysis views read), once per pass."""
        files = [_pass_files(tmp_path, 1, ROWS[:1])]
        arrivals = files[0].invalidations
        assert arrivals.name == "b.r1.p1.invalidations.csv"
        recorder = CsvRecorder(arrivals)
        recorder.rows += ["k1,7,123456789,1767225600000001000\n",
                          '"ké,""2",8,123456790,1767225600000002000\n']
        recorder.close()
        store.ingest_pass(conn, "r1", "b", 1, files)
        store.ingest_pass(conn, "r1", "b", 1, files)
        got = conn.execute(
            "SELECT backend, repetition, process, ts, ts_ns, level, data->>'key', "
            "(data->>'server_version')::BIGINT, (data->>'ts_ns')::BIGINT FROM events "
            "WHERE event = 'invalidation' ORDER BY ts_ns").fetchall()
        assert [row[4:] for row in got] == [(123456789, "info", "k1", 7, 123456789),
                                            (123456790, "info", 'ké,"2', 8, 123456790)]
        assert got[0][:3] == ("b", 1, 1)
        assert str(got[0][3]) == "2026-01-01 00:00:00.000001"

    def test_truncated_file(self, conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
        """A missing or empty file (a worker killed early) is skipped, not an error."""
        files = [WorkerFiles.of(tmp_path, "x", 0)]
        files[0].ops.touch()
        assert store.ingest_pass(conn, "r1", "b", 1, files) == 0

    def test_csv_is_whole_lines(self, tmp_path: Path) -> None:
        """The recorder writes complete CSV lines in OPS_COLUMNS order."""
        ops = _pass_files(tmp_path, 0, ROWS).ops
        lines = list(csv.reader(ops.open()))
        assert len(lines) == 4 and all(len(line) == len(OPS_COLUMNS) for line in lines)


class TestSummary:
    """The summary view is computed over all ops of the run."""

    def test_columns(self, conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
        """Counts include errors; latency and hit rate cover successful operations."""
        store.ingest_pass(conn, "r1", "b", 1, [_pass_files(tmp_path, 0, ROWS)])
        rows = {r["op"]: r for r in store.summary(conn, "r1")}
        get = rows["get"]
        assert (get["ops"], get["errors"]) == (3, 1)
        assert get["hit_rate"] == pytest.approx(0.5)
        assert get["mean_ms"] == pytest.approx(2.0)
        # Span: first start 3 ms to last end 14 ms -> 3 ops in 11 ms.
        assert get["ops_per_s"] == pytest.approx(3 / 0.011)
        assert rows["set"]["p50_ms"] == pytest.approx(2.0)

    def test_pooled_not_averaged(self, conn: duckdb.DuckDBPyConnection,
                                 tmp_path: Path) -> None:
        """Percentiles pool every process's ops instead of averaging per-process figures."""
        fast = [(0, "get", "k", i * 10, 1_000_000, 0, 0, None, None, None) for i in range(99)]
        slow = [(1, "get", "k", i * 10, 100_000_000, 0, 0, None, None, None) for i in range(1)]
        store.ingest_pass(conn, "r1", "b", 1, [_pass_files(tmp_path, 0, fast),
                                                 _pass_files(tmp_path, 1, slow)])
        (row,) = store.summary(conn, "r1")
        assert row["p50_ms"] == pytest.approx(1.0)
        assert row["ops"] == 100

    def test_resolve_run_id(self, conn: duckdb.DuckDBPyConnection) -> None:
        """'latest' names the newest run; an unknown id is a usage error."""
        assert store.resolve_run_id(conn, "latest") == "r1"
        with pytest.raises(UsageError):
            store.resolve_run_id(conn, "nope")
