"""The suite views on a hand-made suite: suite_points, suite_pass_metrics, suite_metrics."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb
import pytest
from support.results_history import MS, add_invalidation, add_op


def add_run(con: duckdb.DuckDBPyConnection, run_id: str, point: str, status: str,
            minute: int | None, *, recorded_minute: int = 0) -> None:
    """A run of a point of suite ``s`` (started at ``minute``, NULL if None)."""
    started = None if minute is None else dt.datetime(2026, 1, 1, 0, minute)
    con.execute("INSERT INTO runs (run_id, status, started_at) VALUES (?, ?, ?)",
                [run_id, status, started])
    con.execute("INSERT INTO suite_runs VALUES ('s', ?, ?, ?, ?, '[]', ?, 0.5)",
                [run_id, point, f"f-{run_id}", json.dumps({"p": point}),
                 dt.datetime(2026, 1, 1, 1, recorded_minute)])


def add_cpu(con: duckdb.DuckDBPyConnection, run_id: str, repetition: int, at_ms: float,
            seconds: float) -> None:
    """A sample of the postgres server's cpu_seconds counter."""
    con.execute("INSERT INTO server_cost VALUES (?, 'pg', ?, ?, now()::TIMESTAMP, 'postgres', "
                "'cpu_seconds', ?)", [run_id, repetition, int(at_ms * MS), seconds])


def build(con: duckdb.DuckDBPyConnection) -> None:
    """Point p: run a (completed) stands for it; its two passes, times in ms."""
    add_run(con, "d", "p", "completed_with_errors", 0)   # completed, but older than a
    add_run(con, "a", "p", "completed", 1)
    add_run(con, "b", "p", "failed", 2)                  # later, but failed
    add_op(con, "get", "k", 0, 1, version="x", run_id="b", backend="pg", repetition=1)
    kw: dict[str, Any] = {"run_id": "a", "backend": "pg", "repetition": 1}
    # pass 1, span [0, 34]: W1 [0, 2], a fresh read, W2 [20, 22], a stale local read of W1
    add_op(con, "set", "k", 0, 2, version="0:0:1", server_version=1, process=0, **kw)
    add_op(con, "get", "k", 10, 2, version="0:0:1", process=1, **kw)
    add_op(con, "set", "k", 20, 2, version="0:0:2", server_version=2, process=0, **kw)
    add_op(con, "get", "k", 30, 4, version="0:0:1", process=1, local=True, **kw)
    add_invalidation(con, 1, "k", 1, 3, run_id="a", repetition=1)    # lag 1
    add_invalidation(con, 1, "k", 2, 25, run_id="a", repetition=1)   # lag 3, before the read
    # the server's CPU: 0.5 s between the samples at 5 and 30 ms (inside the span: the ops
    # started in [5, 30) ms count, not the read starting at 30); the one at 40 ms is after
    # the pass's last operation ended
    add_cpu(con, "a", 1, 5, 1.0)
    add_cpu(con, "a", 1, 30, 1.5)
    add_cpu(con, "a", 1, 40, 9.0)
    # pass 2, span [0, 8]: a set [0, 2] and a fresh read; no CPU samples
    kw["repetition"] = 2
    add_op(con, "set", "k", 0, 2, version="0:0:3", server_version=3, process=0, **kw)
    add_op(con, "get", "k", 6, 2, version="0:0:3", process=1, **kw)
    add_invalidation(con, 1, "k", 3, 4, run_id="a", repetition=2)    # lag 2
    # point q: only an interrupted run (no start time), which stands for it all the same
    add_run(con, "c", "q", "interrupted", None)


def assert_rows(rows: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    """Rows equal, their floats to pytest.approx's tolerance."""
    assert len(rows) == len(expected), rows
    for row, want in zip(rows, expected, strict=True):
        assert row == pytest.approx(want), (row, want)


class TestSuitePoints:
    """suite_points: a point's latest completed run, else its latest run whatever its status."""

    def test_the_run_of_each_point(self, con: duckdb.DuckDBPyConnection) -> None:
        """Point p: a (completed after d, completed with errors; b failed later); point q:
        c, its only run (interrupted); each with its run's tag."""
        build(con)
        rows = con.execute("SELECT suite_id, point, run_id, status, started_at, fingerprint, "
                           "axes->>'p', on_axes, load_avg FROM suite_points "
                           "ORDER BY point").fetchall()
        assert rows == [
            ("s", "p", "a", "completed", dt.datetime(2026, 1, 1, 0, 1), "f-a", "p", "[]", 0.5),
            ("s", "q", "c", "interrupted", None, "f-c", "q", "[]", 0.5)]

    def test_ties_go_to_the_latest_tagged(self, con: duckdb.DuckDBPyConnection) -> None:
        """Two completed runs started at the same time: the one tagged last stands."""
        add_run(con, "e", "p", "completed", 3, recorded_minute=5)
        add_run(con, "f", "p", "completed", 3, recorded_minute=6)
        assert con.execute("SELECT run_id FROM suite_points").fetchall() == [("f",)]

    def test_completed_with_errors_counts_as_completed(
            self, con: duckdb.DuckDBPyConnection) -> None:
        """A run completed with errors stands for its point before a later failed one."""
        add_run(con, "g", "r", "completed_with_errors", 0)
        add_run(con, "h", "r", "failed", 4)
        assert con.execute("SELECT run_id FROM suite_points").fetchall() == [("g",)]


SUITE_COLUMNS = (
    "ops_per_s, get_ops_per_s, get_p50_ms, get_p99_ms, local_rate, set_ops_per_s, set_p50_ms, "
    "set_p99_ms, stale_rate, stale_beyond_invalidation, lag_p99_ms, server, server_cpu_s, "
    "server_cpu_us_per_op, server_cpu_us_per_write")


class TestSuitePassMetrics:
    """suite_pass_metrics: each pass of each point's run, its figures and its server CPU."""

    def test_rows(self, con: duckdb.DuckDBPyConnection) -> None:
        """Pass 1: 4 ops over 34 ms; gets 2 over [10, 34] (latencies 2, 4: p50 3, p99 3.98),
        one local; sets 2 over [0, 22]; one stale read of two, beyond its invalidation; lags
        1 and 3; 0.5 s of CPU over the 2 ops (1 write) started in [5, 30) ms. Pass 2: 2 ops
        over 8 ms, nothing stale, lag 2, no CPU samples."""
        build(con)
        rows = con.execute(
            "SELECT suite_id, point, run_id, backend, repetition, ops, span_s, window_ops, "
            f"window_writes, {SUITE_COLUMNS} FROM suite_pass_metrics ORDER BY repetition"
        ).fetchall()
        assert_rows(rows, [
            ("s", "p", "a", "pg", 1, 4, 0.034, 2, 1,
             4 / 0.034, 2 / 0.024, 3.0, 3.98, 0.5, 2 / 0.022, 2.0, 2.0, 0.5, 1, 3.0,
             "postgres", 0.5, 250_000.0, 500_000.0),
            ("s", "p", "a", "pg", 2, 2, 0.008, None, None,
             2 / 0.008, 1 / 0.002, 2.0, 2.0, 0.0, 1 / 0.002, 2.0, 2.0, 0.0, 0, 2.0,
             None, None, None, None),
        ])


class TestSuiteMetrics:
    """suite_metrics: the same per point and backend, every pass pooled."""

    def test_rows(self, con: duckdb.DuckDBPyConnection) -> None:
        """6 ops over 42 ms; gets 3 over 24 + 2 ms (latencies 2, 4, 2: p50 2, p99 3.96), one
        local; sets 3 over 22 + 2 ms; one stale read of three; lags 1, 3, 2 (p99 3); the CPU
        of the one pass that has it, over its window's ops and writes."""
        build(con)
        rows = con.execute(f"SELECT suite_id, point, run_id, backend, passes, {SUITE_COLUMNS} "
                           "FROM suite_metrics").fetchall()
        assert_rows(rows, [
            ("s", "p", "a", "pg", 2, 6 / 0.042, 3 / 0.026, 2.0, 3.96, 1 / 3, 3 / 0.024, 2.0,
             2.0, 1 / 3, 1, 3.0, "postgres", 0.5, 250_000.0, 500_000.0)])
