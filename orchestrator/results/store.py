"""The results database (DuckDB): opening it, the run's row, idempotent ingest, reading back.

The schema itself is :mod:`orchestrator.results.schema`; the files ingested are those of
:mod:`orchestrator.results.logs`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import duckdb

from orchestrator.errors import (
    NotResults,
    ResultsError,
    ResultsInUse,
    ResultsUnopenable,
    UsageError,
)
from orchestrator.redaction import redact, redact_data
from orchestrator.results import schema
from orchestrator.results.logs import (
    EVENT_COLUMNS,
    INVALIDATION_COLUMNS,
    OPS_COLUMNS,
    SERVER_COST_COLUMNS,
    WorkerFiles,
)
from orchestrator.results.timeline import ClockMap, clock_map, read_clock

DEFAULT_RESULTS = Path("results/benchmarks.duckdb")


class RunStatus(enum.StrEnum):
    """A run's state, as ``runs.status`` records it."""

    RUNNING = "running"
    COMPLETED = "completed"
    # Every pass ran to its end, but operations failed beyond what the workload allows.
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


def connect(path: Path | str = DEFAULT_RESULTS, *, read_only: bool = False,
            external_access: bool = True) -> Any:
    """Open (creating if needed) the results database with its schema in place.

    Only a results database (see :func:`foreign`), a new file or an empty DuckDB database is
    opened; anything else is :class:`NotResults`, and is neither opened for writing nor
    changed. ``external_access=False`` (``query``, ``report``): SQL run on this connection
    can read or write no file but the database itself (no ``COPY ... TO``, ``read_csv``,
    ``ATTACH``, extensions), and cannot turn that back on.
    """
    path = Path(path)
    config: dict[str, str | bool | int | float | list[str]] = (
        {} if external_access else {"enable_external_access": False, "lock_configuration": True})
    try:
        if read_only:
            if not path.exists() and not path.is_symlink():
                raise UsageError(f"no results database at {path}; run a workload first "
                                 "(python -m orchestrator run workloads/default.yaml)")
            ro = _open_checked(path, config)
            schema.ensure_views(ro)
            return ro
        if path.parent.exists() and not path.parent.is_dir():
            raise ResultsUnopenable(f"cannot open the results database {path}: "
                                    f"{path.parent} is not a directory")
        if path.exists() or path.is_symlink():
            # Checked on a read-only connection: a file found foreign is never opened for
            # writing (which alone may change its bytes).
            _open_checked(path, config).close()
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = duckdb.connect(str(path), config=config)
    except duckdb.IOException as exc:
        if "Conflicting lock" in str(exc):
            raise ResultsInUse(_in_use(path, str(exc))) from None
        raise ResultsUnopenable(f"cannot open the results database {path}: {exc}") from exc
    except (duckdb.Error, OSError) as exc:
        raise ResultsUnopenable(f"cannot open the results database {path}: {exc}") from exc
    with _writing("install the schema"):
        schema.install(conn)
    return conn


# The first bytes of a DuckDB database file: an 8-byte checksum, then this magic.
_DUCKDB_MAGIC = b"DUCK"


def is_duckdb(path: Path) -> bool:
    """Whether ``path`` is a DuckDB database file (by its header, whatever its name)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(12)[8:12] == _DUCKDB_MAGIC
    except OSError:
        return False


def _not_results(path: Path, why: str) -> NotResults:
    return NotResults(f"{path} is not a pgcache results database: {why}; it was left as it "
                      "is. Give --results a results database this tool wrote, or the name of "
                      "a new file (e.g. --results results/benchmarks.duckdb)")


def _open_checked(path: Path, config: dict[str, str | bool | int | float | list[str]]) -> Any:
    """A read-only connection to ``path`` once it is known to be a results database (or an
    empty DuckDB one); :class:`NotResults` otherwise."""
    if path.is_dir():
        raise _not_results(path, "it is a directory")
    if not is_duckdb(path):
        size = path.stat().st_size if path.is_file() else -1
        raise _not_results(path, "it is an empty file, not a DuckDB database" if size == 0
                           else "it is not a DuckDB database")
    conn = duckdb.connect(str(path), read_only=True, config=config)
    try:
        why = foreign(conn)
    except BaseException:
        conn.close()
        raise
    if why is not None:
        conn.close()
        raise _not_results(path, why)
    return conn


def foreign(conn: Any) -> str | None:
    """Why the database of ``conn`` is not a pgcache results database, or None when it is
    one, or is empty (no table, no view: a new results database).

    A results database is recognised by its ``schema_info`` table (one INTEGER column,
    ``version``, holding a version this tool knows) beside a ``runs`` table: a database of
    another program, even one with tables called ``runs`` and ``ops``, lacks it.
    """
    tables = {r[0] for r in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()}
    views = conn.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal AND "
                         "database_name = current_database()").fetchone()[0]
    if not tables and not views:
        return None
    columns = conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'schema_info' "
        "AND database_name = current_database()").fetchall()
    if "runs" in tables and columns == [("version", "INTEGER")]:
        oldest = conn.execute("SELECT min(version) FROM schema_info").fetchone()[0]
        if oldest is not None and oldest >= 1:
            return None
    listed = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
    return (f"it is a DuckDB database of another program (tables: {listed or 'none'}), "
            "without this tool's schema_info")


def _in_use(path: Path, message: str) -> str:
    """What to do when another process holds the database (DuckDB allows one at a time)."""
    pid = re.search(r"\(PID (\d+)\)", message)
    holder = f"process {pid[1]}" if pid else "another process"
    copy = f"/tmp/{path.stem}-copy{path.suffix}"
    return (f"the results database {path} is in use by {holder} (a run still going?): DuckDB "
            f"lets no other process open it meanwhile, not even to read. Wait for the run to "
            f"end, or query a copy, which holds every pass ingested so far: cp {path} {copy} "
            f"&& python -m orchestrator query \"...\" --results {copy}")


@contextlib.contextmanager
def _writing(what: str) -> Iterator[None]:
    """A database error while ``what`` is a ResultsError saying so (a full disk, a file system
    gone read-only, a database DuckDB invalidated after such a failure)."""
    try:
        yield
    except duckdb.Error as exc:
        raise ResultsError(f"could not {what} in the results database: {exc}") from exc


def _rollback(conn: Any) -> None:
    with contextlib.suppress(duckdb.Error):  # the failure that led here is being raised
        conn.execute("ROLLBACK")


def _has_data(path: Path) -> bool:
    """Whether a worker wrote anything to ``path`` (a worker killed early may not have)."""
    return path.exists() and path.stat().st_size > 0


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
    started_at: dt.datetime
    host: str
    versions: dict[str, Any]
    git_commit: str | None
    network: dict[str, Any]

    def to_json(self) -> str:
        """The record as JSON (as the database gets it: passwords redacted)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["started_at"] = self.started_at.isoformat()
        return json.dumps(redact_data(data), indent=1)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        data = json.loads(text)
        data["started_at"] = dt.datetime.fromisoformat(data["started_at"])
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def record_run_start(conn: Any, run: RunRecord) -> None:
    """The run's row (passwords redacted from its text and metadata)."""
    with _writing("record the run"):
        conn.execute("DELETE FROM runs WHERE run_id = ?", [run.run_id])
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, NULL, 'running', ?, ?, ?, ?, NULL)",
            [run.run_id, redact(run.workload), redact(run.workload_yaml), run.seed,
             run.started_at, run.host, json.dumps(redact_data(run.versions)),
             run.git_commit, json.dumps(redact_data(run.network))])
    checkpoint(conn)


def update_run(conn: Any, run_id: str, **fields: Any) -> None:
    """Set columns of a run (status, finished_at, network, versions, thresholds_passed)."""
    for name, value in fields.items():
        if name not in ("status", "finished_at", "network", "versions", "thresholds_passed"):
            raise ValueError(f"not an updatable runs column: {name}")
        if name in ("network", "versions"):
            value = json.dumps(redact_data(value))
        with _writing("update the run's row"):
            conn.execute(f"UPDATE runs SET {name} = ? WHERE run_id = ?", [value, run_id])


def ingest_pass(conn: Any, run_id: str, backend: str, repetition: int,
                files: Sequence[WorkerFiles]) -> int:
    """Load one backend pass (the files of each worker); replaces earlier loads.

    Returns the number of op rows ingested.
    """
    with _writing(f"ingest the pass {backend} rep {repetition}"):
        rows = _ingest_pass(conn, run_id, backend, repetition, files)
    checkpoint(conn)
    return rows


def _ingest_pass(conn: Any, run_id: str, backend: str, repetition: int,
                 files: Sequence[WorkerFiles]) -> int:
    conn.execute("BEGIN")
    try:
        where = "WHERE run_id = ? AND backend = ? AND repetition = ?"
        conn.execute(f"DELETE FROM ops {where}", [run_id, backend, repetition])
        conn.execute(f"DELETE FROM events {where} AND process >= 0",
                     [run_id, backend, repetition])
        conn.execute(f"DELETE FROM clock_offsets {where}", [run_id, backend, repetition])
        rows = 0
        for f in files:
            measured = read_clock(f.clock)
            mapped = clock_map(measured)
            for m in measured:
                conn.execute("INSERT INTO clock_offsets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                             "?, ?)", [run_id, backend, repetition, f.process, m.stage,
                                       m.worker_ns, m.offset_ns, m.uncertainty_ns,
                                       m.round_trip_ns, m.round_trips, m.node, m.host])
            if _has_data(f.ops):
                rows += _insert_ops(conn, run_id, backend, repetition, f.process, f.ops,
                                    mapped)
            if _has_data(f.events):
                _insert_events(conn, run_id, [f.events], mapped)
            if _has_data(f.invalidations):
                _insert_invalidations(conn, run_id, backend, repetition, f.process,
                                      f.invalidations, mapped)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return rows


def checkpoint(conn: Any) -> None:
    """Write everything committed into the database file itself: while a run holds the
    database no other process may open it, but a copy of the file then holds every pass
    ingested so far."""
    with _writing("checkpoint"):
        conn.execute("CHECKPOINT")


def _insert_ops(conn: Any, run_id: str, backend: str, repetition: int, process: int,
                path: Path, mapped: ClockMap) -> int:
    """A worker's operations, their starts on the parent's clock."""
    inserted = conn.execute(
        f"""INSERT INTO ops SELECT ?, ?, ?, ?, task, op, key, {mapped.sql("start_ns")},
                   latency_ns, hit::BOOLEAN, local::BOOLEAN, version, server_version, error
            FROM read_csv({_sql_list([path])}, header = false, auto_detect = false,
                          columns = {_struct(OPS_COLUMNS)}, quote = '"',
                          escape = '"', delim = ',', strict_mode = false)""",
        [run_id, backend, repetition, process]).fetchone()
    return int(inserted[0]) if inserted else 0


# The fields of a worker's event data that hold a time on its clock (``local_flush``'s ts_ns,
# ``phase``'s start_ns and until_ns): mapped with the event's ts_ns.
_EVENT_TIME_FIELDS = ("ts_ns", "start_ns", "until_ns")


def _mapped_data(mapped: ClockMap) -> str:
    """The SQL of an event's ``data`` with each time field mapped onto the parent's clock."""
    data = "data"
    if mapped.identity:
        return data
    for name in _EVENT_TIME_FIELDS:
        value = f"TRY_CAST(data->>'{name}' AS BIGINT)"
        data = (f"CASE WHEN {value} IS NULL THEN {data} ELSE json_merge_patch({data}, "
                f"json_object('{name}', {mapped.sql(value)})) END")
    return data


_SHARED_CLOCK = ClockMap()  # the parent's own, and its local workers'


def _insert_events(conn: Any, run_id: str, paths: Sequence[Path],
                   mapped: ClockMap = _SHARED_CLOCK) -> None:
    conn.execute(
        f"""INSERT INTO events SELECT ?, backend, repetition, process, ts,
                   {mapped.sql("ts_ns")}, level, event, {_mapped_data(mapped)}
            FROM read_json({_sql_list(paths)}, format = 'newline_delimited',
                           columns = {_struct(EVENT_COLUMNS)}, ignore_errors = true)""",
        [run_id])


def _insert_invalidations(conn: Any, run_id: str, backend: str, repetition: int,
                          process: int, path: Path, mapped: ClockMap) -> None:
    """A worker's invalidation arrivals as ``invalidation`` events (see logs)."""
    ts = mapped.sql("ts_ns")
    conn.execute(
        f"""INSERT INTO events
            SELECT ?, ?, ?, ?, make_timestamp(wall_ns // 1000), {ts}, 'info', 'invalidation',
                   json_object('key', key, 'server_version', server_version, 'ts_ns', {ts})
            FROM read_csv({_sql_list([path])}, header = false, auto_detect = false,
                          columns = {_struct(INVALIDATION_COLUMNS)}, quote = '"',
                          escape = '"', delim = ',', strict_mode = false)""",
        [run_id, backend, repetition, process])


def ingest_server_cost(conn: Any, run_id: str, backend: str, repetition: int,
                       path: Path) -> None:
    """Load a pass's server-cost samples from its file (see logs); replaces earlier ones."""
    with _writing(f"ingest the server cost of {backend} rep {repetition}"):
        conn.execute("BEGIN")
        try:
            conn.execute("DELETE FROM server_cost WHERE run_id = ? AND backend = ? AND "
                         "repetition = ?", [run_id, backend, repetition])
            if _has_data(path):
                conn.execute(
                    f"""INSERT INTO server_cost SELECT ?, ?, ?, ts_ns, ts, server, metric, value
                        FROM read_csv({_sql_list([path])}, header = false,
                                      auto_detect = false, delim = ',',
                                      columns = {_struct(SERVER_COST_COLUMNS)})""",
                    [run_id, backend, repetition])
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise


def ingest_parent_events(conn: Any, run_id: str, path: Path) -> None:
    """Load the parent's events (process -1); replaces an earlier load."""
    with _writing("ingest the parent's events"):
        conn.execute("BEGIN")
        try:
            conn.execute("DELETE FROM events WHERE run_id = ? AND process = -1", [run_id])
            if _has_data(path):
                _insert_events(conn, run_id, [path])
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise


def resolve_run_id(conn: Any, run_id: str | None) -> str:
    """``latest`` (or None) -> the most recent run id; check that a given id exists."""
    if not conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs'"
                        ).fetchone()[0]:  # an empty database, opened read-only
        raise UsageError("the results database holds no run yet")
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
        f"""SELECT {', '.join('s.' + c for c in schema.SUMMARY_COLUMNS)}
            FROM summary s
            LEFT JOIN (SELECT backend, min(ts_ns) AS first FROM events
                       WHERE run_id = ? GROUP BY backend) e USING (backend)
            WHERE s.run_id = ?
            ORDER BY e.first NULLS LAST, s.backend,
                     CASE s.op WHEN 'set' THEN 0 WHEN 'delete' THEN 1 ELSE 2 END""",
        [run_id, run_id])
    return [dict(zip(schema.SUMMARY_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


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
