"""Hand-made histories in a results database: ops and events inserted one by one.

Times are in milliseconds for readable expectations; the schema is the orchestrator's own.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from orchestrator.results import schema
from orchestrator.workload.thresholds import Threshold, parse_threshold

MS = 1_000_000

OpRow = tuple[Any, ...]


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """The results database's tables (empty) and views, as the orchestrator creates them."""
    schema.install(con)


def parsed(thresholds: dict[str, list[str]]) -> dict[str, tuple[Threshold, ...]]:
    """Threshold expressions parsed as a workload's are."""
    return {key: tuple(parse_threshold(e) for e in exprs) for key, exprs in thresholds.items()}


def add_op(
    con: duckdb.DuckDBPyConnection,
    op: str,
    key: str,
    start_ms: float,
    latency_ms: float,
    *,
    version: str | None = None,
    run_id: str = "r1",
    backend: str = "b",
    repetition: int = 0,
    process: int = 0,
    task: int = 0,
    local: bool = False,
    server_version: int | None = None,
    error: str | None = None,
) -> None:
    """Insert one op; times in milliseconds for readable expectations."""
    hit = (version is not None) if op == "get" else None
    con.execute(
        "INSERT INTO ops VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, backend, repetition, process, task, op, key, int(start_ms * MS),
         int(latency_ms * MS), hit, local, version, server_version, error],
    )


def add_invalidation(
    con: duckdb.DuckDBPyConnection, process: int, key: str, server_version: int | None,
    arrival_ms: float, *, run_id: str = "r1", backend: str = "pg", repetition: int = 0,
) -> None:
    """Insert one 'invalidation' event as a worker logs it (Valkey's carry no version)."""
    data = {"key": key, "server_version": server_version, "ts_ns": int(arrival_ms * MS)}
    con.execute(
        "INSERT INTO events VALUES (?, ?, ?, ?, now()::TIMESTAMP, ?, 'info', 'invalidation', ?)",
        [run_id, backend, repetition, process, int(arrival_ms * MS), json.dumps(data)],
    )


def add_flush(
    con: duckdb.DuckDBPyConnection, process: int, at_ms: float, *, run_id: str = "r1",
    backend: str = "pg", repetition: int = 0,
) -> None:
    """Insert one 'local_flush' event (a worker dropped its whole local cache)."""
    con.execute(
        "INSERT INTO events VALUES (?, ?, ?, ?, now()::TIMESTAMP, ?, 'info', 'local_flush', '{}')",
        [run_id, backend, repetition, process, int(at_ms * MS)],
    )


def add_clock(
    con: duckdb.DuckDBPyConnection, process: int, uncertainty_ms: float, *,
    run_id: str = "r1", backend: str = "pg", repetition: int = 0,
) -> None:
    """Insert a worker's clock offsets (0, at the start and end) with this uncertainty."""
    for stage in ("start", "end"):
        con.execute("INSERT INTO clock_offsets VALUES (?, ?, ?, ?, ?, 0, 0, ?, 0, 16, 'n', 'h')",
                    [run_id, backend, repetition, process, stage, int(uncertainty_ms * MS)])
