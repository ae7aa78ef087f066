"""What the servers paid: PostgreSQL and Valkey cost sampled during a backend pass.

Entry points:

* :func:`sampling` wraps a measured pass: it samples the servers the pass's backend uses and
  stores the samples when the pass ends; a sampler that cannot start never breaks the pass.
* :class:`ServerCostSampler` samples at an interval as an asyncio task while a pass runs
  (``async with ServerCostSampler(...) as s: ...`` then ``s.samples``), on its own
  connections. Each sample is rows ``(ts_ns, server, metric, value)``, ``ts_ns`` from
  ``time.perf_counter_ns()`` like the ops. :func:`sampler_for_backend` picks its servers.
* :func:`insert_samples` stores one pass's samples in table ``server_cost`` (idempotent per
  pass); the table and view ``server_cost_summary`` are in :mod:`orchestrator.results.schema`.

Metrics are counters (cumulative; the summary reports their increase over the pass, robust to
a server restart) or gauges (the summary reports the maximum). The sampler's own traffic is
subtracted from ``total_commands_processed`` (one INFO per sample), but not from
``xact_commit``, which includes one transaction per sample (1/interval per second): PostgreSQL
publishes a backend's cumulative statistics when it goes idle, at most once a second, so its
counters trail by up to about a second and subtracting our own commits would make the counter
go backwards. ``wal_bytes`` (from the WAL position) and the gauges are immediate.
Valkey has no invalidation counter in INFO; ``tracking_total_keys`` (keys some client must be
told about) and ``total_net_output_bytes`` are what it exposes.
CPU seconds are read from /proc when the server runs on this host (embedded servers): for
PostgreSQL the postmaster plus its children, reaped ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import asyncpg
import duckdb
import valkey.asyncio as valkey_asyncio

from orchestrator.backends.registry import TYPES
from orchestrator.errors import ResultsError
from orchestrator.results.logs import AppendOnlyFile, server_cost_path
from orchestrator.workload.model import BackendSpec
from pgcache import CacheSettings, PostgresCache
from proxies import Endpoints

__all__ = [
    "CostSample",
    "ServerCostSampler",
    "insert_samples",
    "sampler_for_backend",
    "sampling",
]


class CostSample(NamedTuple):
    """One measured value of one server metric at ``ts_ns`` (perf_counter_ns)."""

    ts_ns: int
    server: str  # 'postgres' | 'valkey'
    metric: str
    value: float


# One statement, so one transaction, per sample. $1 is the cache table's name or NULL.
_PG_SAMPLE = """
SELECT d.xact_commit, d.xact_rollback, d.tup_inserted, d.tup_updated, d.tup_deleted,
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS wal_bytes,
       pg_notification_queue_usage() AS notification_queue_usage,
       (SELECT count(*) FROM pg_stat_activity
         WHERE wait_event_type = 'Lock') AS lock_waiting_backends,
       (SELECT count(*) FROM pg_locks WHERE NOT granted) AS locks_not_granted,
       (SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database()) AS connections,
       CASE WHEN to_regclass($1) IS NOT NULL
            THEN pg_total_relation_size(to_regclass($1)) END AS table_bytes,
       (SELECT n_dead_tup FROM pg_stat_all_tables WHERE relid = to_regclass($1)) AS dead_tuples,
       (SELECT n_live_tup FROM pg_stat_all_tables WHERE relid = to_regclass($1)) AS live_tuples,
       pg_backend_pid() AS backend_pid
FROM pg_stat_database AS d
WHERE d.datname = current_database()
"""

_VALKEY_METRICS = (
    "total_commands_processed", "instantaneous_ops_per_sec", "used_memory",
    "tracking_total_keys", "tracking_clients", "connected_clients", "total_net_input_bytes",
    "total_net_output_bytes", "keyspace_hits", "keyspace_misses", "expired_keys",
    "evicted_keys",
)

# How long stop() waits for a sample in flight before it gives up on it.
_STOP_TIMEOUT_S = 5.0

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None when unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _proc_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def postmaster_of(backend_pid: int) -> int:
    """The postmaster's pid when the server of this backend runs on this host, else 0."""
    fields = _proc_stat(backend_pid)
    if fields is None or "postgres" not in _proc_comm(backend_pid):
        return 0
    parent = int(fields[1])
    return parent if "postgres" in _proc_comm(parent) else 0


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (a postmaster's: its backends and workers)."""
    try:
        return [int(child) for child in
                Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _postgres_cpu_seconds(postmaster: int) -> float | None:
    """CPU of the postmaster, its live children and its reaped children, in seconds."""
    fields = _proc_stat(postmaster)
    if fields is None:
        return None
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    ticks = sum(int(f) for f in fields[11:15])
    for child in children_of(postmaster):
        cf = _proc_stat(child)
        if cf is not None:
            ticks += int(cf[11]) + int(cf[12])
    return ticks / _CLK_TCK


class ServerCostSampler:
    """Samples server-side cost at an interval while a backend pass runs.

    Give ``postgres_dsn`` and/or ``valkey_url`` (the servers the backend uses) and, for
    pgcache, the cache ``table`` whose size and dead tuples to follow. ``samples`` grows
    with each sample; :meth:`stop` takes a last sample and returns them all. A failing
    sample is recorded in ``errors`` and does not stop the pass.
    """

    def __init__(
        self,
        *,
        postgres_dsn: str | None = None,
        valkey_url: str | None = None,
        table: str | None = None,
        interval_s: float = 1.0,
    ) -> None:
        if not postgres_dsn and not valkey_url:
            raise ValueError("ServerCostSampler needs postgres_dsn or valkey_url (or both)")
        if not isinstance(interval_s, int | float) or not interval_s > 0:
            raise ValueError(f"interval_s must be a positive number of seconds, got {interval_s!r}")
        if table is not None and (not isinstance(table, str) or not table.strip()):
            raise ValueError(f"table must be a non-empty table name or None, got {table!r}")
        self._dsn = postgres_dsn or None
        self._url = valkey_url or None
        self._table = table
        self._interval = float(interval_s)
        self.samples: list[CostSample] = []
        self.errors: list[str] = []
        self._pg: Any = None
        self._vk: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._pg_samples = 0
        self._vk_samples = 0
        self._postmaster: int | None = None
        self._valkey_pid: int | None = None

    async def start(self) -> None:
        """Connect, take the first sample, and keep sampling in a background task."""
        if self._task is not None:
            raise RuntimeError("ServerCostSampler is already started")
        if self._dsn:
            self._pg = await asyncpg.connect(self._dsn)
        if self._url:
            self._vk = valkey_asyncio.Valkey.from_url(self._url)
        await self.sample()
        self._task = asyncio.create_task(self._loop(), name="server-cost-sampler")

    async def stop(self) -> list[CostSample]:
        """Stop sampling, take a last sample, close the connections; return all samples."""
        # The loop is asked to end, not cancelled: a cancellation that lands inside the Valkey
        # client's INFO can be swallowed by it, and the loop then sleeps on with nobody left
        # to cancel it again (seen as a run that never ended). A sample in flight finishes.
        self._stopping.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=_STOP_TIMEOUT_S)
            if not done:  # a sample stuck on its server: give up on it, the pass goes on
                self._task.cancel()
                self.errors.append(f"a sample did not end within {_STOP_TIMEOUT_S:g} s of "
                                   "the pass's end")
        try:
            if self._pg is not None or self._vk is not None:
                await self.sample()
        finally:
            await self._close()
        return self.samples

    async def __aenter__(self) -> ServerCostSampler:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _close(self) -> None:
        pg, vk, self._pg, self._vk = self._pg, self._vk, None, None
        # The samples are taken: whatever closing our own connections raises loses nothing.
        if pg is not None:
            with contextlib.suppress(Exception):
                await pg.close(timeout=2)
        if vk is not None:
            with contextlib.suppress(Exception):
                await vk.aclose()

    async def _loop(self) -> None:
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                done, _ = await asyncio.wait({stopping}, timeout=self._interval)
                if done:
                    return
                await self.sample()
        finally:
            stopping.cancel()

    async def sample(self) -> list[CostSample]:
        """Take one sample of every configured server now; append and return it."""
        rows: list[CostSample] = []
        if self._pg is not None:
            try:
                rows += await self._sample_postgres()
            except Exception as exc:  # a failing sample must not end the pass
                self.errors.append(f"postgres: {type(exc).__name__}: {exc}")
        if self._vk is not None:
            try:
                rows += await self._sample_valkey()
            except Exception as exc:
                self.errors.append(f"valkey: {type(exc).__name__}: {exc}")
        self.samples.extend(rows)
        return rows

    async def _sample_postgres(self) -> list[CostSample]:
        row = await self._pg.fetchrow(_PG_SAMPLE, self._table)
        ts = time.perf_counter_ns()
        self._pg_samples += 1
        out = []
        for metric in (
            "xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted",
            "wal_bytes", "notification_queue_usage", "lock_waiting_backends",
            "locks_not_granted", "connections", "table_bytes", "dead_tuples", "live_tuples",
        ):
            value = row[metric]
            if value is None:
                continue
            out.append(CostSample(ts, "postgres", metric, float(value)))
        if self._postmaster is None:
            self._postmaster = postmaster_of(int(row["backend_pid"]))
        if self._postmaster:
            cpu = _postgres_cpu_seconds(self._postmaster)
            if cpu is not None:
                out.append(CostSample(ts, "postgres", "cpu_seconds", cpu))
        return out

    async def _sample_valkey(self) -> list[CostSample]:
        info: dict[str, Any] = await self._vk.execute_command(
            "INFO", "server", "clients", "memory", "stats", "cpu")
        ts = time.perf_counter_ns()
        own = self._vk_samples  # the earlier INFO commands
        self._vk_samples += 1
        out = []
        for metric in _VALKEY_METRICS:
            if metric not in info:
                continue
            value = float(info[metric])
            if metric == "total_commands_processed":
                value -= own
            out.append(CostSample(ts, "valkey", metric, value))
        if "used_cpu_sys" in info and "used_cpu_user" in info:
            cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
            out.append(CostSample(ts, "valkey", "cpu_seconds", cpu))
        return out


def sampler_for_backend(
    backend_type: str, options: Mapping[str, Any], *, postgres_dsn: str, valkey_url: str,
    interval_s: float = 1.0,
) -> ServerCostSampler | None:
    """The sampler for the servers a backend type uses (none for ``null``); for ``pgcache``
    it follows the cache's own table (its name from pgcache, with the options' prefix)."""
    servers = TYPES[backend_type].servers
    if not servers:
        return None
    table = None
    if backend_type == "pgcache":
        name = PostgresCache(CacheSettings(dsn=postgres_dsn, **dict(options))).table_name
        table = '"' + name.replace('"', '""') + '"'
    return ServerCostSampler(
        postgres_dsn=postgres_dsn if "postgres" in servers else None,
        valkey_url=valkey_url if "valkey" in servers else None, table=table,
        interval_s=interval_s)


@contextlib.asynccontextmanager
async def sampling(conn: Any, run_id: str, backend: BackendSpec, repetition: int,
                   endpoints: Endpoints, log: Any, log_dir: Path | None = None,
                   interval_s: float = 1.0) -> AsyncIterator[None]:
    """Sample the servers of ``backend`` every ``interval_s`` while the block runs
    (``endpoints``: the servers themselves, not through emulated network), then store the
    samples of the pass: in the run's log directory first (``ingest`` finds them there if
    the database cannot take them), then in the database."""
    sampler = sampler_for_backend(backend.type, backend.options,
                                  postgres_dsn=endpoints.postgres_dsn,
                                  valkey_url=endpoints.valkey_url, interval_s=interval_s)
    if sampler is None:
        yield
        return
    try:
        await sampler.start()
    except Exception as exc:  # a by-product: reported, and the pass goes on without it
        log.warning("server_cost_unavailable", error=str(exc))
        yield
        return
    try:
        yield
    finally:
        samples = await sampler.stop()
        if log_dir is not None:
            kept = write_samples(server_cost_path(log_dir, backend.name, repetition), samples)
            if kept is not None:
                log.warning("server_cost_not_written", error=str(kept))
        try:
            insert_samples(conn, run_id, backend.name, repetition, samples)
        except duckdb.Error as exc:
            raise ResultsError(f"could not store the server cost of {backend.name} rep "
                               f"{repetition} in the results database: {exc}") from exc
        if sampler.errors:
            log.warning("server_cost_errors", errors=sampler.errors[:5])


def _wall(ts_ns: int, offset_ns: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(microseconds=(ts_ns + offset_ns) // 1000)


def write_samples(path: Path, samples: Sequence[CostSample]) -> OSError | None:
    """One pass's samples as a CSV file (``SERVER_COST_COLUMNS``); the error if it could not
    be written."""
    offset_ns = time.time_ns() - time.perf_counter_ns()
    text = "".join(f"{s.ts_ns},{_wall(s.ts_ns, offset_ns).isoformat(sep=' ')},{s.server},"
                   f"{s.metric},{s.value!r}\n" for s in samples)
    try:
        file = AppendOnlyFile(path)
    except OSError as exc:
        return exc
    file.append(text.encode())
    file.close()
    return file.error


def insert_samples(
    con: duckdb.DuckDBPyConnection, run_id: str, backend: str, repetition: int,
    samples: Sequence[CostSample],
) -> int:
    """Store one pass's samples, replacing any earlier ones of that pass; return the count."""
    # perf_counter_ns has no epoch: map it to wall time through the current offset.
    offset_ns = time.time_ns() - time.perf_counter_ns()
    rows = [(run_id, backend, repetition, s.ts_ns, _wall(s.ts_ns, offset_ns), s.server,
             s.metric, s.value) for s in samples]
    con.execute("BEGIN")
    try:
        con.execute(
            "DELETE FROM server_cost WHERE run_id = ? AND backend = ? AND repetition = ?",
            [run_id, backend, repetition],
        )
        if rows:
            con.executemany("INSERT INTO server_cost VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # the failure that led here is raised
            con.execute("ROLLBACK")
        raise
    return len(rows)
