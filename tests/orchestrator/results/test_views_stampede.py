"""The stampede views on a hand-made history: stampede_events and stampede."""

from __future__ import annotations

import duckdb
from support.results_history import (
    add_op,
)


class TestStampede:
    """stampede_events and stampede count loader executions per miss and the readers' waits."""

    def build(self, con: duckdb.DuckDBPyConnection) -> None:
        def call(task: int, start: float, latency: float, error: str | None = None,
                 got: str | None = "0:1:L1") -> None:
            add_op(con, "get_or_set", "h", start, latency, task=task, error=error,
                   version=None if error else got)

        def load(task: int, start: float, latency: float) -> None:
            add_op(con, "load", "h", start, latency, task=task, version=f"0:{task}:L1")

        add_op(con, "delete", "h", 10, 1)           # miss event 1: [10, 100)
        call(5, 10.5, 0.1, got="w:0:1")              # an older value: did not wait
        call(1, 11, 25)
        load(1, 12, 20)                              # its call returns at 36: refilled
        call(2, 12, 25)
        call(3, 13, 30, got="0:3:L1")
        load(3, 14, 20)                              # a second load for the same miss
        call(4, 40, 0.1)                             # after the refill: did not wait
        add_op(con, "delete", "h", 100, 1)          # miss event 2: never refilled
        call(1, 101, 5, error="boom")
        call(2, 120, 1, got="0:1:L1")                # an older value: did not wait
        add_op(con, "delete", "other", 50, 1)       # nobody get_or_sets "other"

    def test_events(self, con: duckdb.DuckDBPyConnection) -> None:
        """One row per delete of a key readers get_or_set, with its loads and waiters."""
        self.build(con)
        rows = con.execute(
            "SELECT miss_ns / 1e6, refill_ms, loads, failed_loads, waiting_readers, errors, "
            "max_wait_ms FROM stampede_events ORDER BY miss_ns").fetchall()
        assert rows == [(10.0, 26.0, 2, 0, 3, 0, 30.0), (100.0, None, 0, 0, 1, 1, 5.0)]

    def test_summary(self, con: duckdb.DuckDBPyConnection) -> None:
        """Per backend: miss events, loads per miss, waiting readers and their waits."""
        self.build(con)
        rows = con.execute(
            "SELECT miss_events, loads, loads_per_miss, max_loads_per_miss, waiting_per_miss, "
            "errors, wait_p50_ms, wait_p99_ms, wait_max_ms, refill_p50_ms FROM stampede"
        ).fetchall()
        assert rows == [(2, 2, 1.0, 2, 2.0, 1, 25.0, 30.0, 30.0, 26.0)]
