"""Cross-instance invalidation against a real PostgreSQL: races, version order, losing the
listener in four ways, long keys, and notifications carried by the writes themselves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from support.caches import Inbox, eventually, listening, sql
from support.faultproxy import FaultProxy

from pgcache import CacheServerError, CacheSettings, PgCacheError, PostgresCache


async def assert_coherent_again(a: PostgresCache, b: PostgresCache, inbox: Inbox) -> None:
    """b's listener is back: it caches again and hears a's next write."""
    await eventually(lambda: b.stats.listener_connected and b.stats.lease_valid)
    version = await a.set("probe", b"before")
    await inbox.wait_for(("probe", version))
    assert await b.get("probe") == b"before"
    hits = b.stats.local_hits
    assert await b.get("probe") == b"before" and b.stats.local_hits == hits + 1
    version = await a.set("probe", b"after")
    await inbox.wait_for(("probe", version))
    assert await b.get("probe") == b"after"


class TestCrossInstance:
    async def test_write_evicts_other_instance_copy(self, settings: CacheSettings) -> None:
        """A set on A evicts B's copy; B's callback gets the key and the version written."""
        a = PostgresCache(settings)
        b, inbox = listening(settings)
        async with a, b:
            await a.set("k", b"1")
            assert await b.get("k") == b"1"
            version = await a.set("k", b"2")
            await inbox.wait_for(("k", version))
            assert b.stats.local_size == 0 and b.stats.local_evictions == 1
            assert await b.get("k") == b"2"
            deleted = await a.delete("k")
            assert deleted
            await eventually(lambda: b.stats.local_size == 0)
            assert await b.get("k") is None

    async def test_own_notifications_never_evict_own_copies(
            self, settings: CacheSettings) -> None:
        """A's notification for its own write is ignored by A (its copy is already newest)."""
        a, inbox_a = listening(settings)
        b = PostgresCache(settings)
        async with a, b:
            await a.set("mine", b"v")
            marker = await b.set("marker", b"m")  # so A gets its own notification first
            await inbox_a.wait_for(("marker", marker))
            assert inbox_a.seen_keys() == {"marker"}
            assert await a.get("mine") == b"v" and a.stats.local_hits == 1


class TestRaces:
    async def test_fetch_overtaken_by_invalidation_does_not_install(
            self, settings: CacheSettings) -> None:
        """(4a) B's read of v1 is held on the wire while v2's invalidation arrives: not cached."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(settings)
            b, inbox = listening(settings, dsn=proxy.rewrite(settings.dsn),
                                       listener_dsn=settings.dsn, min_pool_size=1,
                                       max_pool_size=1)
            async with a, b:
                await a.set("k", b"v1")
                assert await b.get("warm-up") is None  # the statement is now prepared
                proxy.hold()
                read = asyncio.ensure_future(b.get("k"))
                await proxy.wait_held()  # PostgreSQL answered v1; the answer is in the proxy
                v2 = await a.set("k", b"v2")
                await inbox.wait_for(("k", v2))
                proxy.release()
                assert await read == b"v1"  # the read began before the write finished
                assert b.stats.local_size == 0
                assert await b.get("k") == b"v2"

                # Control: the same held read with no invalidation meanwhile is cached.
                proxy.hold()
                read = asyncio.ensure_future(b.get("j"))
                await proxy.wait_held()
                proxy.release()
                assert await read is None
                assert b.stats.local_size == 1  # "k" at v2, installed by the read above

    async def test_old_notification_never_evicts_newer_copy(
            self, settings: CacheSettings) -> None:
        """(4b) A notification for version v leaves a copy of a newer version in place."""
        a = PostgresCache(settings)
        b, inbox = listening(settings)
        async with a, b:
            v1 = await a.set("k", b"1")
            v2 = await a.set("k", b"2")
            await inbox.wait_for(("k", v2))
            assert await b.get("k") == b"2"
            forged = json.dumps(["another-instance", 0, v1, "k"])
            await sql(settings.dsn, "SELECT pg_notify($1, $2)", settings.notify_channel, forged)
            await inbox.wait_for(("k", v1))
            hits = b.stats.local_hits
            assert await b.get("k") == b"2" and b.stats.local_hits == hits + 1
            newer = json.dumps(["another-instance", 0, v2 + 1, "k"])
            await sql(settings.dsn, "SELECT pg_notify($1, $2)", settings.notify_channel, newer)
            await inbox.wait_for(("k", v2 + 1))
            assert b.stats.local_size == 0


    async def test_racing_writers_leave_the_highest_version_last(
            self, settings: CacheSettings) -> None:
        """Versions of one key increase in commit order: the row ends with the highest one."""
        async with PostgresCache(replace(settings, max_pool_size=8)) as a, \
                PostgresCache(replace(settings, max_pool_size=8)) as b:
            writes = [(c, f"v{i}".encode()) for i in range(40) for c in (a, b)]
            versions = await asyncio.gather(*(c.set("hot", value) for c, value in writes))
            assert len(set(versions)) == len(versions)
            rows = await sql(settings.dsn, f'SELECT value, version FROM "{a.table_name}"')
            newest = max(range(len(versions)), key=versions.__getitem__)
            assert (rows[0][0], rows[0][1]) == (writes[newest][1], versions[newest])


class TestWritesAnnounceThemselves:
    async def test_every_write_notifies_in_its_own_transaction(
            self, settings: CacheSettings) -> None:
        """set, delete and long keys are announced; one notification per write statement."""
        a = PostgresCache(settings)
        b, inbox = listening(settings)
        async with a, b:
            version = await a.set("k", b"v")
            await inbox.wait_for(("k", version))
            stats = a.stats
            assert (stats.notifications_sent, stats.notified_keys, stats.notify_errors) == (1, 1, 0)
            assert await b.get("k") == b"v"
            assert await a.delete("k")
            await eventually(lambda: b.stats.local_size == 0)
            long_key = "long-" + "x" * 300
            await a.set(long_key, b"v")
            assert await b.get(long_key) == b"v"  # b holds it: it can resolve the digest
            version = await a.set(long_key, b"w")
            await inbox.wait_for((long_key, version))
            assert b.stats.local_size == 0 and await b.get(long_key) == b"w"

    async def test_write_whose_writer_vanishes_after_commit_is_announced(
            self, settings: CacheSettings) -> None:
        """A's write commits but A never hears back (its connection is reset while the reply
        is held): B is told anyway, because the NOTIFY was part of the committed write."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(replace(settings, dsn=proxy.rewrite(settings.dsn),
                                      listener_dsn=settings.dsn, max_pool_size=1))
            b = PostgresCache(settings)
            async with a, b:
                await a.set("k", b"old")
                assert await b.get("k") == b"old"
                proxy.hold()
                write = asyncio.ensure_future(a.set("k", b"new"))
                await proxy.wait_held()  # committed on the server; the reply is in the proxy
                await eventually(lambda: b.stats.local_size == 0)
                assert await b.get("k") == b"new"
                proxy.reset()
                with pytest.raises(PgCacheError):
                    await write


class TestSharedReads:
    """Concurrent local misses of one key share one fetch, unless an invalidation of the key
    arrived after that fetch began (then the later read fetches for itself)."""

    async def test_concurrent_reads_share_one_fetch(self, settings: CacheSettings) -> None:
        """A miss while another read of the key is on the wire waits for that read."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(settings)
            b = PostgresCache(replace(settings, dsn=proxy.rewrite(settings.dsn),
                                      listener_dsn=settings.dsn, max_pool_size=2))
            async with a, b:
                await a.set("k", b"v1")
                assert await b.get("warm-up") is None
                proxy.hold()
                first = asyncio.ensure_future(b.get("k"))
                await proxy.wait_held()
                second = asyncio.ensure_future(b.get("k"))
                await asyncio.sleep(0.05)  # the second read is waiting on the first's fetch
                proxy.release()
                assert await first == b"v1" and await second == b"v1"
                stats = b.stats
                assert (stats.remote_hits, stats.shared_reads, stats.local_size) == (2, 1, 1)

    async def test_read_after_invalidation_fetches_itself(
            self, settings: CacheSettings) -> None:
        """A read that begins after an invalidation arrived never shares an older fetch."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(settings)
            b, inbox = listening(settings, dsn=proxy.rewrite(settings.dsn),
                                 listener_dsn=settings.dsn, max_pool_size=2)
            async with a, b:
                await a.set("k", b"v1")
                assert await b.get("warm-up") is None
                proxy.hold()
                first = asyncio.ensure_future(b.get("k"))
                await proxy.wait_held()  # PostgreSQL answered v1; the answer is in the proxy
                v2 = await a.set("k", b"v2")
                await inbox.wait_for(("k", v2))
                second = asyncio.ensure_future(b.get("k"))  # began after v2 was announced
                await asyncio.sleep(0.05)
                proxy.release()
                assert await first == b"v1"  # began before the write finished
                assert await second == b"v2"
                assert b.stats.shared_reads == 0
                assert await b.get("k") == b"v2" and b.stats.local_hits == 1

    async def test_failed_fetch_is_not_shared(self, settings: CacheSettings) -> None:
        """The reader whose fetch fails gets the error; the one sharing it fetches itself."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(settings)
            b = PostgresCache(replace(settings, dsn=proxy.rewrite(settings.dsn),
                                      listener_dsn=settings.dsn, max_pool_size=2))
            async with a, b:
                await a.set("k", b"v1")
                assert await b.get("warm-up") is None
                proxy.hold()
                first = asyncio.ensure_future(b.get("k"))
                await proxy.wait_held()
                second = asyncio.ensure_future(b.get("k"))
                await asyncio.sleep(0.05)
                first.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await first
                proxy.release()
                assert await second == b"v1"
                assert b.stats.shared_reads == 0


class TestListenerLoss:
    """(4c) Every way of losing the listener flushes, bypasses, reconnects, re-LISTENs."""

    async def _cached(self, a: PostgresCache, b: PostgresCache, inbox: Inbox) -> None:
        await a.set("k", b"old")
        assert await b.get("k") == b"old"
        assert b.stats.local_size == 1
        inbox.items.clear()  # from here on, a flush can only come from the fault

    async def _after_loss(self, a: PostgresCache, b: PostgresCache, inbox: Inbox) -> None:
        await inbox.wait_for((None, None))
        assert b.stats.local_flushes >= 1
        # Whatever the listener's state, reads come from PostgreSQL and see the new value.
        await a.set("k", b"new")
        assert await b.get("k") == b"new"

    async def test_backend_terminated(self, settings: CacheSettings) -> None:
        """pg_terminate_backend on the listener."""
        a = PostgresCache(settings)
        b, inbox = listening(settings, application_name="lossb" + settings.schema_prefix)
        async with a, b:
            await self._cached(a, b, inbox)
            rows = await sql(settings.dsn, "SELECT pg_terminate_backend(pid) FROM "
                             "pg_stat_activity WHERE application_name = $1",
                             f"lossb{settings.schema_prefix}-listen")
            assert [r[0] for r in rows] == [True]
            await self._after_loss(a, b, inbox)
            await assert_coherent_again(a, b, inbox)
            assert b.stats.listener_reconnects >= 1

    async def test_network_reset(self, settings: CacheSettings) -> None:
        """The listener's TCP connection is reset."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(settings)
            b, inbox = listening(settings, listener_dsn=proxy.rewrite(settings.dsn))
            async with a, b:
                await self._cached(a, b, inbox)
                proxy.reset()
                await self._after_loss(a, b, inbox)
                await assert_coherent_again(a, b, inbox)

    async def test_silent_blackhole_found_by_heartbeat(self, settings: CacheSettings) -> None:
        """Bytes vanish with sockets open: only the heartbeat notices; recovery re-LISTENs."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(settings)
            b, inbox = listening(settings, listener_dsn=proxy.rewrite(settings.dsn),
                                       listener_heartbeat_interval_seconds=0.1,
                                       listener_heartbeat_timeout_seconds=0.3,
                                       connect_timeout=0.5)
            async with a, b:
                await self._cached(a, b, inbox)
                proxy.blackhole()
                # Notifications are lost from here on; the next write is one of them.
                await self._after_loss(a, b, inbox)
                assert not b.stats.listener_connected
                assert await b.get("k") == b"new" and b.stats.local_size == 0
                proxy.recover()
                await assert_coherent_again(a, b, inbox)

    async def test_server_restart(self, settings: CacheSettings,
                                  restart_postgres: Callable[[str], None]) -> None:
        """PostgreSQL restarts under both instances."""
        a = PostgresCache(settings)
        b, inbox = listening(settings)
        async with a, b:
            await self._cached(a, b, inbox)
            await asyncio.to_thread(restart_postgres, "fast")
            await inbox.wait_for((None, None))
            assert b.stats.local_size == 0
            await assert_coherent_again(a, b, inbox)


class TestLongKeys:
    async def test_key_beyond_payload_limit_still_invalidates(
            self, settings: CacheSettings) -> None:
        """(5) A key whose UTF-8 form exceeds 8000 bytes is invalidated by digest."""
        key = "ключ-" * 2000  # ~20 000 bytes of UTF-8
        a = PostgresCache(settings)
        b, inbox = listening(settings)
        async with a, b:
            await a.set(key, b"1")
            assert await b.get(key) == b"1"
            version = await a.set(key, b"2")
            await inbox.wait_for((key, version))
            assert b.stats.local_size == 0
            assert await b.get(key) == b"2"


class TestNotifyBatching:
    async def test_concurrent_writes_are_coalesced_and_all_delivered(
            self, settings: CacheSettings) -> None:
        """(6) 200 concurrent writes reach the other instance in fewer NOTIFYs than writes."""
        keys = [f"k{i}" for i in range(190)] + [f"long{i}-" + "x" * 300 for i in range(10)]
        a = PostgresCache(replace(settings, max_pool_size=16))
        b, inbox = listening(settings)
        async with a, b:
            assert await b.get_many(keys) == {}
            versions = await asyncio.gather(*(a.set(k, b"v") for k in keys))
            await b.get_many(keys)  # b holds every key: long keys resolve by digest
            versions = await asyncio.gather(*(a.set(k, b"w") for k in keys))
            for key, version in zip(keys, versions, strict=True):
                await inbox.wait_for((key, version))
            assert a.stats.notifications_sent < a.stats.sets

    async def test_rolled_back_write_sends_nothing(self, settings: CacheSettings) -> None:
        """(6) A write the server rolls back is never announced."""
        prefix = settings.schema_prefix
        a = PostgresCache(settings)
        b, inbox = listening(settings)
        async with a, b:
            await sql(settings.dsn, f"""
                CREATE FUNCTION "{prefix}boom"() RETURNS trigger AS $$
                BEGIN RAISE EXCEPTION 'boom'; END $$ LANGUAGE plpgsql""")
            await sql(settings.dsn, f'CREATE TRIGGER boom BEFORE INSERT OR UPDATE ON '
                      f'"{a.table_name}" FOR EACH ROW WHEN (NEW.key = \'\\x626f6f6d\'::bytea) '
                      f'EXECUTE FUNCTION "{prefix}boom"()')
            with pytest.raises(CacheServerError):
                await a.set("boom", b"x")
            after = await a.set("after", b"y")
            await inbox.wait_for(("after", after))
            assert "boom" not in inbox.seen_keys()
            assert a.stats.notified_keys == 1


