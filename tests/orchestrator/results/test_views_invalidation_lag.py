"""The invalidation-lag views on hand-made histories: invalidation_lag,
invalidation_lag_summary and invalidation_lag_summary_by_pass."""

from __future__ import annotations

from typing import Any

import duckdb
from support.results_history import (
    add_flush,
    add_invalidation,
    add_op,
)


class TestInvalidationLag:
    """invalidation_lag matches each set to its arrival in every other worker."""

    def build(self, con: duckdb.DuckDBPyConnection) -> None:
        add_op(con, "set", "k", 9, 1, version="0:0:1", backend="pg", process=0,
               server_version=5)                                    # finishes at 10
        add_op(con, "set", "k", 12, 1, version="1:0:1", backend="pg", process=1,
               server_version=7)                                    # finishes at 13
        add_op(con, "get", "k", 20, 1, backend="pg", process=2)
        add_op(con, "set", "k", 30, 1, version="1:0:2", backend="pg", process=1,
               server_version=9, error="timeout")                   # failed: not expected
        add_op(con, "set", "k", 0, 1, version="0:0:1", backend="valkey")
        add_invalidation(con, 0, "k", 5, 10.5)   # the writer's own: ignored
        add_invalidation(con, 1, "k", 5, 11)
        add_invalidation(con, 2, "k", 7, 14)     # coalesced: delivers 5 and 7
        add_invalidation(con, 0, "other", 7, 13.5)

    def test_rows(self, con: duckdb.DuckDBPyConnection) -> None:
        """One row per delivered (write, receiving process) with the lag from completion."""
        self.build(con)
        rows = con.execute(
            "SELECT server_version, writer_process, receiver_process, received_server_version, "
            "lag_ms FROM invalidation_lag ORDER BY server_version, receiver_process"
        ).fetchall()
        assert rows == [(5, 0, 1, 5, 1.0), (5, 0, 2, 7, 4.0), (7, 1, 2, 7, 1.0)]

    def test_summary(self, con: duckdb.DuckDBPyConnection) -> None:
        """The summary counts expected and missing deliveries and gives the lag quantiles."""
        self.build(con)
        rows = con.execute(
            "SELECT backend, writes, expected, count, missing, p50_ms, p99_ms, max_ms "
            "FROM invalidation_lag_summary"
        ).fetchall()
        assert rows == [("pg", 2, 4, 3, 1, 1.0, 4.0, 4.0)]

    def test_flush_delivers(self, con: duckdb.DuckDBPyConnection) -> None:
        """A worker's local-cache flush after a write counts as delivering it, if earlier."""
        self.build(con)
        add_flush(con, 0, 9.5)   # before the sv-7 write finished (13): delivers nothing
        add_flush(con, 0, 20)    # delivers sv 7 to process 0 after 7 ms
        add_flush(con, 2, 12)    # earlier than process 2's arrival (14) for sv 5: wins
        rows = con.execute(
            "SELECT server_version, receiver_process, via, received_server_version, lag_ms "
            "FROM invalidation_lag ORDER BY server_version, receiver_process"
        ).fetchall()
        assert rows == [
            (5, 1, "invalidation", 5, 1.0),
            (5, 2, "flush", None, 2.0),
            (7, 0, "flush", None, 7.0),
            (7, 2, "invalidation", 7, 1.0),
        ]


    def test_unversioned(self, con: duckdb.DuckDBPyConnection) -> None:
        """Without versions, a set is delivered to another worker by the first invalidation of
        its key there after the set started and before the key's next write started; later
        ones belong to that next write, so the pair is missing rather than misattributed."""
        kw = {"backend": "vk"}
        add_op(con, "set", "k", 0, 1, version="0:0:1", process=0, **kw)    # ends at 1
        add_op(con, "set", "k", 10, 1, version="0:0:2", process=0, **kw)   # ends at 11
        add_op(con, "get", "k", 20, 1, process=1, **kw)
        add_op(con, "get", "k", 20, 1, process=2, **kw)
        add_invalidation(con, 1, "k", None, 0.5, backend="vk")   # before the reply: -0.5
        add_invalidation(con, 1, "k", None, 12, backend="vk")
        add_invalidation(con, 2, "k", None, 15, backend="vk")    # after the next write began
        add_invalidation(con, 0, "k", None, 16, backend="vk")    # the writer itself: ignored
        rows = con.execute(
            "SELECT version, receiver_process, via, server_version, lag_ms "
            "FROM invalidation_lag ORDER BY version, receiver_process").fetchall()
        assert rows == [("0:0:1", 1, "invalidation", None, -0.5),
                        ("0:0:2", 1, "invalidation", None, 1.0),
                        ("0:0:2", 2, "invalidation", None, 4.0)]
        summary = con.execute("SELECT backend, writes, expected, count, missing, max_ms "
                              "FROM invalidation_lag_summary").fetchall()
        assert summary == [("vk", 2, 4, 3, 1, 4.0)]


class TestLagSummaryByPass:
    """invalidation_lag_summary_by_pass is the summary of each pass alone; the summary pools
    them."""

    def build(self, con: duckdb.DuckDBPyConnection) -> None:
        TestInvalidationLag().build(con)   # pass 0: 2 writes, 4 expected, lags 1, 4, 1
        kw: dict[str, Any] = {"backend": "pg", "repetition": 1}
        add_op(con, "set", "k", 4, 1, version="0:0:1", process=0, server_version=3, **kw)
        add_op(con, "get", "k", 20, 1, process=1, **kw)
        add_invalidation(con, 1, "k", 3, 8, repetition=1)         # lag 3 ms
        add_invalidation(con, 2, "k", 3, 6, repetition=1)         # no such process there

    def test_each_pass_alone(self, con: duckdb.DuckDBPyConnection) -> None:
        """Pass 0's three deliveries of four; pass 1's one of one (its lag 3 ms)."""
        self.build(con)
        rows = con.execute(
            "SELECT backend, repetition, writes, expected, count, missing, p50_ms, p99_ms, "
            "max_ms, mean_ms, clock_uncertainty_ms FROM invalidation_lag_summary_by_pass "
            "ORDER BY repetition").fetchall()
        assert rows == [("pg", 0, 2, 4, 3, 1, 1.0, 4.0, 4.0, 2.0, 0.0),
                        ("pg", 1, 1, 1, 1, 0, 3.0, 3.0, 3.0, 3.0, 0.0)]

    def test_summary_pools_the_passes(self, con: duckdb.DuckDBPyConnection) -> None:
        """Pooled: 3 writes (one version in two passes counts twice), 5 expected, 4 delivered;
        quantiles over the lags 1, 1, 3, 4 of both passes."""
        self.build(con)
        rows = con.execute(
            "SELECT backend, writes, expected, count, missing, p50_ms, p99_ms, max_ms, "
            "mean_ms FROM invalidation_lag_summary").fetchall()
        assert rows == [("pg", 3, 5, 4, 1, 1.0, 4.0, 4.0, 2.25)]
