"""The summary views on hand-made histories: summary, summary_by_pass, repeat_summary."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
from support.results_history import (
    add_op,
)

from orchestrator.results import schema


class TestRepeatSummary:
    """repeat_summary puts repeated passes side by side, with their spread."""

    def test_median_spread_and_cv(self, con: duckdb.DuckDBPyConnection) -> None:
        """Per-pass ops/s (ops over the pass's span) give the median, min, max and the
        coefficient of variation (sample standard deviation / mean)."""
        for rep, gap in ((1, 10), (2, 20), (3, 40)):  # 5 gets over 4 gaps: 4 x gap ms
            for i in range(5):
                add_op(con, "get", "k", i * gap, 0, version="v", repetition=rep,
                       local=i < 4)
        (passes, median, low, high, cv, local), = con.execute(
            "SELECT passes, ops_per_s_median, ops_per_s_min, ops_per_s_max, ops_per_s_cv, "
            "local_rate_median FROM repeat_summary").fetchall()
        rates = [5 / (4 * gap / 1000) for gap in (10, 20, 40)]
        mean = sum(rates) / 3
        sd = (sum((r - mean) ** 2 for r in rates) / 2) ** 0.5
        assert (passes, local) == (3, 0.8)
        assert (median, low, high) == pytest.approx((rates[1], rates[2], rates[0]))
        assert cv == pytest.approx(sd / mean)


def summary_history(con: duckdb.DuckDBPyConnection) -> None:
    """Two passes of one backend, times in ms: gets and sets, one failed op in pass 1."""
    # pass 1: gets at 0, 10, 20, 30 (latency 1, 2, 3, 4: the last one failed), spanning
    # [0, 34]; sets at 5 and 25 (latency 2 and 6): span [5, 31]
    add_op(con, "get", "k", 0, 1, version="v1", repetition=1, local=True)
    add_op(con, "get", "k", 10, 2, version="v1", repetition=1)
    add_op(con, "get", "k", 20, 3, repetition=1)                        # a miss
    add_op(con, "get", "k", 30, 4, repetition=1, error="boom")
    add_op(con, "set", "k", 5, 2, version="v1", repetition=1)
    add_op(con, "set", "k", 25, 6, version="v2", repetition=1)
    # pass 2 (starting at 1000 ms, idle time between passes not counted): gets at 1000 and
    # 1008 (latency 5 and 2), span [1000, 1010]
    add_op(con, "get", "k", 1000, 5, version="v2", repetition=2, local=True)
    add_op(con, "get", "k", 1008, 2, version="v2", repetition=2, local=True)
    # another backend and another run never mix in
    add_op(con, "get", "k", 0, 100, version="v", backend="other")
    add_op(con, "get", "k", 0, 100, version="v", run_id="r2")


def assert_rows(rows: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    """Rows equal, their floats to pytest.approx's tolerance."""
    assert len(rows) == len(expected), rows
    for row, want in zip(rows, expected, strict=True):
        assert row == pytest.approx(want), (row, want)


SUMMARY_SQL = ("SELECT {keys}, ops, errors, ops_per_s, mean_ms, p50_ms, p95_ms, p99_ms, "
               "p999_ms, hit_rate, local_rate FROM {view} WHERE run_id = 'r1' "
               "AND backend = 'b' ORDER BY ALL")


class TestSummary:
    """summary pools every pass of a run; its latency figures cover successful ops only."""

    def test_every_pass_pooled(self, con: duckdb.DuckDBPyConnection) -> None:
        """Per op: all ops and errors counted, ops/s over the summed spans of the passes,
        percentiles interpolated over the successful ops of every pass, hit and local rate
        over successful gets."""
        summary_history(con)
        rows = con.execute(SUMMARY_SQL.format(keys="op", view="summary")).fetchall()
        # gets: 6 ops over spans 34 + 10 ms; successful latencies 1, 2, 3, 5, 2
        # (sorted 1, 2, 2, 3, 5): mean 2.6, p50 2, p95 = 3 + 0.8 * 2 = 4.6,
        # p99 = 3 + 0.96 * 2 = 4.92, p999 = 3 + 0.996 * 2 = 4.992; hits 4 of 5, local 3 of 5
        # sets: 2 ops over a 26 ms span; latencies 2, 6: mean 4, p50 4, p95 5.8, p99 5.96
        assert_rows(rows, [
            ("get", 6, 1, 6 / 0.044, 2.6, 2.0, 4.6, 4.92, 4.992, 0.8, 0.6),
            ("set", 2, 0, 2 / 0.026, 4.0, 4.0, 5.8, 5.96, 5.996, None, None),
        ])

    def test_columns(self, con: duckdb.DuckDBPyConnection) -> None:
        """The view's columns are schema.SUMMARY_COLUMNS, in that order."""
        columns = [d[0] for d in con.execute("SELECT * FROM summary LIMIT 0").description]
        assert tuple(columns) == schema.SUMMARY_COLUMNS

    def test_other_backend_and_run_apart(self, con: duckdb.DuckDBPyConnection) -> None:
        """Each (run, backend) is a row of its own."""
        summary_history(con)
        rows = con.execute("SELECT run_id, backend, op, ops, mean_ms FROM summary "
                           "ORDER BY ALL").fetchall()
        assert rows == [("r1", "b", "get", 6, 2.6), ("r1", "b", "set", 2, 4.0),
                        ("r1", "other", "get", 1, 100.0), ("r2", "b", "get", 1, 100.0)]


class TestSummaryByPass:
    """summary_by_pass is the summary of each pass alone."""

    def test_each_pass_alone(self, con: duckdb.DuckDBPyConnection) -> None:
        """Pass 1's gets and sets and pass 2's gets, each over its own span and ops."""
        summary_history(con)
        rows = con.execute(SUMMARY_SQL.format(keys="op, repetition",
                                              view="summary_by_pass")).fetchall()
        # pass 1 gets: 4 ops over 34 ms; successful latencies 1, 2, 3: mean 2, p50 2,
        # p95 = 2 + 0.9 * 1 = 2.9, p99 2.98, p999 2.998; hits 2 of 3, local 1 of 3
        # pass 2 gets: 2 ops over 10 ms; latencies 2, 5: mean 3.5, p50 3.5, p95 4.85,
        # p99 4.97, p999 4.997; both hits, both local
        assert_rows(rows, [
            ("get", 1, 4, 1, 4 / 0.034, 2.0, 2.0, 2.9, 2.98, 2.998, 2 / 3, 1 / 3),
            ("get", 2, 2, 0, 2 / 0.010, 3.5, 3.5, 4.85, 4.97, 4.997, 1.0, 1.0),
            ("set", 1, 2, 0, 2 / 0.026, 4.0, 4.0, 5.8, 5.96, 5.996, None, None),
        ])
