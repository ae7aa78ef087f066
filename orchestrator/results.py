"""The results database (DuckDB): schema, idempotent ingest, and the summary.

The schema is a public interface, documented in ``results/README.md``.

Schema history (``schema_info.version``):
  1 — runs, ops, events tables; summary view.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from orchestrator.errors import ResultsError, UsageError
from orchestrator.recorder import INVALIDATION_COLUMNS, OPS_COLUMNS, invalidations_path

SCHEMA_VERSION = 1
DEFAULT_RESULTS = Path("results/benchmarks.duckdb")

_TABLES = """
CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    workload VARCHAR,
    workload_yaml VARCHAR,
    seed BIGINT,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR,
    host VARCHAR,
    versions JSON,
    git_commit VARCHAR,
    network JSON,
    thresholds_passed BOOLEAN
);
CREATE TABLE IF NOT EXISTS ops (
    run_id VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    repetition INTEGER NOT NULL,
    process INTEGER NOT NULL,
    task INTEGER NOT NULL,
    op VARCHAR NOT NULL,
    key VARCHAR,
    start_ns BIGINT NOT NULL,
    latency_ns BIGINT NOT NULL,
    hit BOOLEAN,
    local BOOLEAN,
    version VARCHAR,
    server_version BIGINT,
    error VARCHAR
);
CREATE TABLE IF NOT EXISTS events (
    run_id VARCHAR NOT NULL,
    backend VARCHAR,
    repetition INTEGER,
    process INTEGER NOT NULL,
    ts TIMESTAMP,
    ts_ns BIGINT,
    level VARCHAR,
    event VARCHAR,
    data JSON
);
"""

# Latency statistics cover successful operations; ``ops`` and ``errors`` count all of them.
# ops_per_s divides by the summed measured span of each repetition (first start to last end
# of that op), so idle time between repetitions is not counted.
SUMMARY_VIEW = """
CREATE OR REPLACE VIEW summary AS
WITH spans AS (
    SELECT run_id, backend, op, repetition,
           max(start_ns + latency_ns) - min(start_ns) AS span_ns
    FROM ops GROUP BY run_id, backend, op, repetition
), total_spans AS (
    SELECT run_id, backend, op, sum(span_ns) AS span_ns
    FROM spans GROUP BY run_id, backend, op
)
SELECT o.run_id, o.backend, o.op,
       count(*) AS ops,
       count(o.error) AS errors,
       count(*) * 1e9 / nullif(any_value(s.span_ns), 0) AS ops_per_s,
       avg(o.latency_ns) FILTER (WHERE o.error IS NULL) / 1e6 AS mean_ms,
       quantile_cont(o.latency_ns, 0.5) FILTER (WHERE o.error IS NULL) / 1e6 AS p50_ms,
       quantile_cont(o.latency_ns, 0.95) FILTER (WHERE o.error IS NULL) / 1e6 AS p95_ms,
       quantile_cont(o.latency_ns, 0.99) FILTER (WHERE o.error IS NULL) / 1e6 AS p99_ms,
       quantile_cont(o.latency_ns, 0.999) FILTER (WHERE o.error IS NULL) / 1e6 AS p999_ms,
       avg(CASE WHEN o.hit THEN 1.0 ELSE 0.0 END)
           FILTER (WHERE o.op = 'get' AND o.error IS NULL) AS hit_rate,
       avg(CASE WHEN o.local THEN 1.0 ELSE 0.0 END)
           FILTER (WHERE o.op = 'get' AND o.error IS NULL) AS local_rate
FROM ops o JOIN total_spans s USING (run_id, backend, op)
GROUP BY o.run_id, o.backend, o.op
"""

SUMMARY_COLUMNS = ("run_id", "backend", "op", "ops", "errors", "ops_per_s", "mean_ms",
                   "p50_ms", "p95_ms", "p99_ms", "p999_ms", "hit_rate", "local_rate")

_OPS_CSV_COLUMNS = {
    "task": "INTEGER", "op": "VARCHAR", "key": "VARCHAR", "start_ns": "BIGINT",
    "latency_ns": "BIGINT", "hit": "TINYINT", "local": "TINYINT", "version": "VARCHAR",
    "server_version": "BIGINT", "error": "VARCHAR",
}
assert tuple(_OPS_CSV_COLUMNS) == OPS_COLUMNS

_INVALIDATION_CSV_COLUMNS = {
    "key": "VARCHAR", "server_version": "BIGINT", "ts_ns": "BIGINT", "wall_ns": "BIGINT",
}
assert tuple(_INVALIDATION_CSV_COLUMNS) == INVALIDATION_COLUMNS

_EVENT_COLUMNS = {
    "ts": "TIMESTAMP", "ts_ns": "BIGINT", "level": "VARCHAR", "event": "VARCHAR",
    "backend": "VARCHAR", "repetition": "INTEGER", "process": "INTEGER", "data": "JSON",
}


def connect(path: Path | str = DEFAULT_RESULTS, *, read_only: bool = False) -> Any:
    """Open (creating if needed) the results database with its schema in place."""
    path = Path(path)
    try:
        if read_only:
            if not path.exists():
                raise UsageError(f"no results database at {path}; run a workload first "
                                 "(python -m orchestrator run workloads/default.yaml)")
            ro = duckdb.connect(str(path), read_only=True)
            _temporary_views(ro)
            return ro
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise ResultsError(f"cannot open the results database {path}: {exc}") from exc
    ensure_schema(conn)
    return conn


def ensure_schema(conn: Any) -> None:
    from orchestrator import analysis, servercost

    conn.execute(_TABLES)
    conn.execute(SUMMARY_VIEW)
    # The consistency/lag views and the server-cost table are part of the public schema:
    # present in every results database, so SQL users (and the duckdb CLI) find them.
    servercost.install_tables(conn)
    analysis.install_views(conn)
    if conn.execute("SELECT count(*) FROM schema_info").fetchone()[0] == 0:
        conn.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION])


def _temporary_views(conn: Any) -> None:
    """On a read-only connection, views missing from an older database exist for the session."""
    from orchestrator import analysis, servercost

    have = {row[0] for row in conn.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    tables = {row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "server_cost" in tables and "server_cost_summary" not in have:
        servercost.install_summary_view(conn, temporary=True)
    if {"ops", "events"} <= tables and not set(analysis.VIEW_NAMES) <= have:
        analysis.install_views(conn, temporary=True)


def _sql_list(paths: Iterable[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _struct(columns: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """The ``runs`` row of a run, as known when it starts."""

    run_id: str
    workload: str
    workload_yaml: str
    seed: int
    started_at: Any
    host: str
    versions: dict[str, Any]
    git_commit: str | None
    network: dict[str, Any]


def record_run_start(conn: Any, run: RunRecord) -> None:
    conn.execute("DELETE FROM runs WHERE run_id = ?", [run.run_id])
    conn.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, NULL, 'running', ?, ?, ?, ?, NULL)",
        [run.run_id, run.workload, run.workload_yaml, run.seed, run.started_at, run.host,
         json.dumps(run.versions), run.git_commit, json.dumps(run.network)])


def update_run(conn: Any, run_id: str, **fields: Any) -> None:
    """Set columns of a run (status, finished_at, network, versions, thresholds_passed)."""
    for name, value in fields.items():
        if name not in ("status", "finished_at", "network", "versions", "thresholds_passed"):
            raise ValueError(f"not an updatable runs column: {name}")
        if name in ("network", "versions"):
            value = json.dumps(value)
        conn.execute(f"UPDATE runs SET {name} = ? WHERE run_id = ?", [value, run_id])


def ingest_pass(conn: Any, run_id: str, backend: str, repetition: int,
                files: Sequence[tuple[int, Path, Path]]) -> int:
    """Load one backend pass (per process: ops CSV, events JSONL); replaces earlier loads.

    Returns the number of op rows ingested.
    """
    conn.execute("BEGIN")
    try:
        conn.execute("DELETE FROM ops WHERE run_id = ? AND backend = ? AND repetition = ?",
                     [run_id, backend, repetition])
        conn.execute("DELETE FROM events WHERE run_id = ? AND backend = ? AND repetition = ? "
                     "AND process >= 0", [run_id, backend, repetition])
        rows = 0
        csvs = [(process, ops) for process, ops, _ in files
                if ops.exists() and ops.stat().st_size > 0]
        for process, ops in csvs:
            inserted = conn.execute(
                f"""INSERT INTO ops SELECT ?, ?, ?, ?, task, op, key, start_ns, latency_ns,
                           hit::BOOLEAN, local::BOOLEAN, version, server_version, error
                    FROM read_csv({_sql_list([ops])}, header = false, auto_detect = false,
                                  columns = {_struct(_OPS_CSV_COLUMNS)}, quote = '"',
                                  escape = '"', delim = ',', strict_mode = false)""",
                [run_id, backend, repetition, process]).fetchone()
            rows += int(inserted[0]) if inserted else 0
        jsons = [events for _, _, events in files
                 if events.exists() and events.stat().st_size > 0]
        if jsons:
            _insert_events(conn, run_id, jsons)
        for process, _, events in files:
            arrivals = invalidations_path(events)
            if arrivals.exists() and arrivals.stat().st_size > 0:
                _insert_invalidations(conn, run_id, backend, repetition, process, arrivals)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return rows


def _insert_events(conn: Any, run_id: str, paths: Sequence[Path]) -> None:
    conn.execute(
        f"""INSERT INTO events SELECT ?, backend, repetition, process, ts, ts_ns, level, event,
                   data
            FROM read_json({_sql_list(paths)}, format = 'newline_delimited',
                           columns = {_struct(_EVENT_COLUMNS)}, ignore_errors = true)""",
        [run_id])


def _insert_invalidations(conn: Any, run_id: str, backend: str, repetition: int,
                          process: int, path: Path) -> None:
    """A worker's invalidation arrivals as ``invalidation`` events (see recorder)."""
    conn.execute(
        f"""INSERT INTO events
            SELECT ?, ?, ?, ?, make_timestamp(wall_ns // 1000), ts_ns, 'info', 'invalidation',
                   json_object('key', key, 'server_version', server_version, 'ts_ns', ts_ns)
            FROM read_csv({_sql_list([path])}, header = false, auto_detect = false,
                          columns = {_struct(_INVALIDATION_CSV_COLUMNS)}, quote = '"',
                          escape = '"', delim = ',', strict_mode = false)""",
        [run_id, backend, repetition, process])


def ingest_parent_events(conn: Any, run_id: str, path: Path) -> None:
    """Load the parent's events (process -1); replaces an earlier load."""
    conn.execute("BEGIN")
    try:
        conn.execute("DELETE FROM events WHERE run_id = ? AND process = -1", [run_id])
        if path.exists() and path.stat().st_size > 0:
            _insert_events(conn, run_id, [path])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def resolve_run_id(conn: Any, run_id: str | None) -> str:
    """``latest`` (or None) -> the most recent run id; check that a given id exists."""
    if run_id in (None, "latest"):
        row = conn.execute("SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC "
                           "LIMIT 1").fetchone()
        if row is None:
            raise UsageError("the results database holds no run yet")
        return str(row[0])
    row = conn.execute("SELECT run_id FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise UsageError(f"no run {run_id!r} in the results database; "
                         "`python -m orchestrator query \"SELECT run_id FROM runs\"` lists them")
    return str(row[0])


def summary(conn: Any, run_id: str) -> list[dict[str, Any]]:
    """The summary rows of a run, backends in the order they ran."""
    cursor = conn.execute(
        f"""SELECT {', '.join('s.' + c for c in SUMMARY_COLUMNS)}
            FROM summary s
            LEFT JOIN (SELECT backend, min(ts_ns) AS first FROM events
                       WHERE run_id = ? GROUP BY backend) e USING (backend)
            WHERE s.run_id = ?
            ORDER BY e.first NULLS LAST, s.backend,
                     CASE s.op WHEN 'set' THEN 0 WHEN 'delete' THEN 1 ELSE 2 END""",
        [run_id, run_id])
    return [dict(zip(SUMMARY_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def run_info(conn: Any, run_id: str) -> dict[str, Any]:
    cursor = conn.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    names = [d[0] for d in cursor.description]
    row = cursor.fetchone()
    return dict(zip(names, row, strict=True)) if row else {}


def query(conn: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run any SQL; return column names and rows."""
    try:
        cursor = conn.execute(sql)
    except duckdb.Error as exc:
        raise UsageError(f"query failed: {exc}") from exc
    if cursor.description is None:
        return [], []
    return [d[0] for d in cursor.description], cursor.fetchall()
