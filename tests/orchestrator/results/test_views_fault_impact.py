"""The fault_impact view on hand-made fault schedules."""

from __future__ import annotations

import json

import duckdb
from support.results_history import (
    MS,
    add_op,
)


def add_fault(con: duckdb.DuckDBPyConnection, fault: int, label: str, start_ms: float,
              end_ms: float, backend: str = "b", late_ms: float = 0.0) -> None:
    """A fault's start and end events, as the parent logs them for a pass; ``late_ms``: how
    long after the schedule asked for it the fault took effect."""
    for event, at in (("fault_start", start_ms), ("fault_end", end_ms)):
        data = {"fault": fault, "label": label, "proxy": "valkey", "toxic": "down",
                "t_ns": int(at * MS), "at_s": 10.0, "offset_s": 10.0 + late_ms / 1000}
        con.execute("INSERT INTO events VALUES ('r1', ?, 0, -1, now()::TIMESTAMP, ?, 'info', "
                    "?, ?)", [backend, int(at * MS) + 5, event, json.dumps(data)])


class TestFaultImpact:
    """fault_impact: errors and stale reads during and after each fault, and recovery."""

    def build(self, con: duckdb.DuckDBPyConnection) -> None:
        rows = []
        for ms in range(0, 5000):
            latency, error = 1.0, None
            if 1000 <= ms <= 2000:
                latency, error = 50.0, ("down" if ms % 2 else None)  # the fault
            elif 2000 < ms < 2100:
                latency, error = 5.0, "still down"                    # errors go on
            elif 2100 <= ms < 2300:
                latency = 10.0                                        # slow, no errors
            rows.append(("r1", "b", 0, 0, 1, "get", "x", ms * MS, int(latency * MS), None,
                         False, None, None, error))
        con.executemany("INSERT INTO ops VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        rows)
        add_op(con, "set", "k", 900, 1, version="0:0:1")
        add_op(con, "set", "k", 1500, 1, version="0:0:2")
        add_op(con, "get", "k", 1600, 0.5, version="0:0:1")   # stale during the fault
        add_op(con, "get", "k", 2500, 0.5, version="0:0:1")   # stale after it
        add_fault(con, 0, "valkey down", 1000, 2000)
        add_fault(con, 1, "harmless", 3005, 3500, late_ms=5)  # in effect from 3000

    def test_rows(self, con: duckdb.DuckDBPyConnection) -> None:
        """Errors and stale reads are split at the fault's end; recovery waits for the last
        error to complete and for a 100 ms window whose p99 is within 2x the baseline; a fault
        counts from when it was asked for."""
        self.build(con)
        rows = con.execute(
            "SELECT fault, label, duration_ms, baseline_p99_ms, errors_during, errors_after, "
            "stale_during, stale_after, errors_stop_ms, recovery_ms FROM fault_impact "
            "ORDER BY fault").fetchall()
        assert rows == [
            (0, "valkey down", 1000.0, 1.0, 500, 99, 1, 1, 104.0, 300.0),
            (1, "harmless", 500.0, 1.0, 0, 0, 0, 0, 0.0, 0.0),
        ]

    def test_never_recovered(self, con: duckdb.DuckDBPyConnection) -> None:
        """Errors until the next fault starts: no recovery time."""
        self.build(con)
        con.execute("UPDATE ops SET error = 'x' WHERE start_ns BETWEEN 2000 * 1000000::BIGINT "
                    "AND 3000 * 1000000::BIGINT")
        assert con.execute("SELECT recovery_ms FROM fault_impact WHERE fault = 0"
                           ).fetchall() == [(None,)]
