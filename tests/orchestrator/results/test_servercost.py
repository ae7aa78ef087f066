"""orchestrator.results.servercost: samplers against the real servers, and the summary view."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import duckdb
import pytest
import valkey.asyncio as valkey_asyncio

from orchestrator.results import schema
from orchestrator.results.servercost import (
    CostSample,
    ServerCostSampler,
    insert_samples,
    sampler_for_backend,
)


def values(samples: list[CostSample], server: str, metric: str) -> list[float]:
    return [s.value for s in samples if s.server == server and s.metric == metric]


class TestConstructor:
    """The constructor validates its arguments synchronously."""

    def test_needs_a_server(self) -> None:
        """At least one server must be given."""
        with pytest.raises(ValueError, match="needs postgres_dsn or valkey_url"):
            ServerCostSampler()

    def test_interval(self) -> None:
        """The interval must be positive."""
        with pytest.raises(ValueError, match="interval_s must be a positive number"):
            ServerCostSampler(valkey_url="redis://x", interval_s=0)


class TestForBackend:
    """sampler_for_backend picks the server a backend type uses."""

    async def test_pgcache_follows_its_table(self, postgres_dsn: str) -> None:
        """pgcache samples PostgreSQL and finds its entries table (named by pgcache)."""
        setup = await asyncpg.connect(postgres_dsn)
        await setup.execute("CREATE TABLE IF NOT EXISTS costx_pgcache_entries (k int)")
        await setup.close()
        sampler = sampler_for_backend("pgcache", {"schema_prefix": "costx_"},
                                      postgres_dsn=postgres_dsn, valkey_url="")
        assert sampler is not None
        await sampler.start()
        samples = await sampler.stop()
        assert values(samples, "postgres", "table_bytes")
        assert {s.server for s in samples} == {"postgres"}

    def test_other_types(self) -> None:
        """Valkey types sample Valkey; the null backend samples nothing."""
        sampler = sampler_for_backend("valkey-client-cache", {}, postgres_dsn="x",
                                      valkey_url="redis://127.0.0.1:1/0")
        assert sampler is not None and sampler._dsn is None
        assert sampler_for_backend("null", {}, postgres_dsn="x", valkey_url="y") is None


class TestPostgres:
    """The PostgreSQL sampler sees commits, WAL, table size, dead tuples, queue and locks."""

    async def test_activity_is_measured(self, postgres_dsn: str) -> None:
        """Commits, WAL bytes, table size and dead tuples grow with the work done."""
        setup = await asyncpg.connect(postgres_dsn)
        await setup.execute("DROP TABLE IF EXISTS cost_probe; "
                            "CREATE TABLE cost_probe (k int PRIMARY KEY, v text)")
        await setup.close()
        sampler = ServerCostSampler(postgres_dsn=postgres_dsn, table="cost_probe",
                                    interval_s=0.05)
        async with sampler:
            work = await asyncpg.connect(postgres_dsn)
            for i in range(30):
                await work.execute("INSERT INTO cost_probe VALUES ($1, repeat('x', 500))", i)
            await work.execute("UPDATE cost_probe SET v = 'y'")
            await work.close()  # a closing backend publishes its statistics
            await asyncio.sleep(0.1)
        s = sampler.samples
        assert sampler.errors == []
        commits = values(s, "postgres", "xact_commit")
        assert commits[-1] - commits[0] >= 31
        wal = values(s, "postgres", "wal_bytes")
        assert wal[-1] - wal[0] > 30 * 500
        assert max(values(s, "postgres", "table_bytes")) > 0
        assert max(values(s, "postgres", "dead_tuples")) >= 1
        assert values(s, "postgres", "live_tuples")[-1] >= 1
        assert {x.server for x in s} == {"postgres"}
        assert {x.metric for x in s} <= set(schema.METRIC_KINDS)  # the summary knows each

    async def test_queue_and_lock_waits(self, postgres_dsn: str) -> None:
        """A lagging listener fills the notification queue; a blocked reader counts as a wait."""
        listener = await asyncpg.connect(postgres_dsn)
        holder = await asyncpg.connect(postgres_dsn)
        waiter = await asyncpg.connect(postgres_dsn)
        notifier = await asyncpg.connect(postgres_dsn)
        sampler = ServerCostSampler(postgres_dsn=postgres_dsn, interval_s=10)
        try:
            await holder.execute("CREATE TABLE IF NOT EXISTS cost_lock (k int)")
            await listener.add_listener("cost_probe", lambda *a: None)
            # Notifications reach a backend only between its transactions: hold one open.
            listen_tx = listener.transaction()
            await listen_tx.start()
            for _ in range(50):
                await notifier.execute("SELECT pg_notify('cost_probe', repeat('n', 7000))")
            lock_tx = holder.transaction()
            await lock_tx.start()
            await holder.execute("LOCK TABLE cost_lock IN ACCESS EXCLUSIVE MODE")
            blocked = asyncio.create_task(waiter.execute("SELECT count(*) FROM cost_lock"))
            await asyncio.sleep(0.3)
            await sampler.start()
            await lock_tx.rollback()
            await blocked
            await listen_tx.rollback()
        finally:
            await sampler.stop()
            for c in (listener, holder, waiter, notifier):
                await c.close()
        s = sampler.samples
        assert values(s, "postgres", "notification_queue_usage")[0] > 0
        assert values(s, "postgres", "lock_waiting_backends")[0] >= 1
        assert values(s, "postgres", "locks_not_granted")[0] >= 1
        assert "table_bytes" not in {x.metric for x in s}  # no table given


class TestValkey:
    """The Valkey sampler reads INFO and subtracts its own commands."""

    async def test_commands_memory_and_tracking(self, valkey_url: str) -> None:
        """Commands sent are counted exactly once; memory and tracking keys are read."""
        sampler = ServerCostSampler(valkey_url=valkey_url, interval_s=0.02)
        client = valkey_asyncio.Valkey.from_url(valkey_url)
        await client.ping()  # connection set-up commands happen before the first sample
        async with sampler:
            await asyncio.sleep(0.1)  # idle: our own INFO commands must not count
            idle = values(sampler.samples, "valkey", "total_commands_processed")
            for i in range(100):
                await client.set(f"cost:{i}", b"x" * 100)
        await client.aclose()
        s = sampler.samples
        assert len(idle) >= 3 and idle[-1] == idle[0]
        cmds = values(s, "valkey", "total_commands_processed")
        assert cmds[-1] - cmds[0] == 100
        assert max(values(s, "valkey", "used_memory")) > 0
        assert values(s, "valkey", "tracking_total_keys")
        assert values(s, "valkey", "cpu_seconds")[-1] > 0
        assert {x.metric for x in s} <= set(schema.METRIC_KINDS)  # the summary knows each

    async def test_stops_whenever_it_is_stopped(self, valkey_url: str) -> None:
        """Stopped at any moment, in the middle of an INFO or between two, the sampler ends
        at once with a last sample (a cancelled INFO could swallow the cancellation and leave
        it sampling forever)."""
        for i in range(100):
            sampler = ServerCostSampler(valkey_url=valkey_url, interval_s=0.001)
            await sampler.start()
            await asyncio.sleep(0.002 + (i % 7) * 0.0005)
            taken, started = len(sampler.samples), time.monotonic()
            async with asyncio.timeout(10):  # (the old stop swallowed this one too)
                samples = await sampler.stop()
            assert time.monotonic() - started < 1, i
            assert len(samples) > taken, i
            assert sampler.errors == [], i
    """server_cost rows and the server_cost_summary view."""

    def test_summary_deltas_and_maxima(self) -> None:
        """Counters give their increase (across a reset), gauges their maximum."""
        con = duckdb.connect()
        schema.install(con)
        samples = [
            CostSample(1_000_000_000, "postgres", "xact_commit", 100),
            CostSample(2_000_000_000, "postgres", "xact_commit", 150),
            CostSample(3_000_000_000, "postgres", "xact_commit", 20),  # restarted
            CostSample(1_000_000_000, "postgres", "table_bytes", 8192),
            CostSample(2_000_000_000, "postgres", "table_bytes", 65536),
            CostSample(3_000_000_000, "postgres", "table_bytes", 16384),
        ]
        assert insert_samples(con, "r", "pg", 0, samples) == 6
        assert insert_samples(con, "r", "pg", 0, samples) == 6  # replaces, never doubles
        rows = con.execute(
            "SELECT metric, kind, samples, duration_s, delta, per_s, max_value, value "
            "FROM server_cost_summary ORDER BY metric"
        ).fetchall()
        assert rows == [
            ("table_bytes", "gauge", 3, 2.0, None, None, 65536.0, 65536.0),
            ("xact_commit", "counter", 3, 2.0, 70.0, 35.0, 150.0, 70.0),
        ]
        ts = con.execute("SELECT count(DISTINCT ts) FROM server_cost").fetchone()
        assert ts == (3,)
        con.close()
