"""Tests for the valkey-tracking backend (one tracked local cache per instance) against the
embedded Valkey, with a fault proxy where the network must misbehave."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from support.caches import eventually
from support.faultproxy import FaultProxy

from orchestrator.backends.base import GetResult
from orchestrator.backends.registry import option_issues
from orchestrator.backends.valkey_tracking import ValkeyTrackingBackend
from orchestrator.errors import BackendError
from pgcache import CacheSettings
from proxies import Endpoints

Seen = list[tuple[str | None, int | None, int]]


def endpoints(valkey_url: str) -> Endpoints:
    return Endpoints(postgres_dsn="", valkey_url=valkey_url, postgres_listener_dsn="")


def read(result: GetResult) -> tuple[bytes | None, bool]:
    return result.value, result.local


def backend(valkey_url: str, **options: object) -> ValkeyTrackingBackend:
    return ValkeyTrackingBackend("valkey-tracking", options, endpoints(valkey_url))


async def settled(b: ValkeyTrackingBackend, key: str, expected: bytes | None) -> None:
    """Wait (bounded) until ``b`` reads ``expected`` for ``key``."""
    for _ in range(200):
        if (await b.get(key)).value == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} never read {expected!r}")


@pytest.fixture
async def pair(valkey_url: str) -> AsyncIterator[tuple[ValkeyTrackingBackend,
                                                      ValkeyTrackingBackend]]:
    a, b = backend(valkey_url), backend(valkey_url)
    await a.prepare()
    await a.connect()
    await b.connect()
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
async def proxy(valkey_url: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy.for_dsn(valkey_url) as p:
        yield p


class TestLocalCache:
    """One local cache per instance, filled by reads and by the instance's own writes."""

    async def test_second_read_is_local(
            self, pair: tuple[ValkeyTrackingBackend, ValkeyTrackingBackend]) -> None:
        """The first read goes to Valkey; the next one is served from the local copy."""
        a, b = pair
        await a.set("t:1", b"v1", 5)
        assert read(await b.get("t:1")) == (b"v1", False)
        assert read(await b.get("t:1")) == (b"v1", True)
        assert b.stats()["local_hits"] == 1

    async def test_shared_by_all_tasks(
            self, pair: tuple[ValkeyTrackingBackend, ValkeyTrackingBackend]) -> None:
        """Fifty concurrent first reads of a key make one fetch; every later read is local."""
        a, b = pair
        await a.set("t:shared", b"v", 5)
        first = await asyncio.gather(*(b.get("t:shared") for _ in range(50)))
        assert {r.value for r in first} == {b"v"}
        stats = b.stats()
        assert stats["remote_hits"] == 1 and stats["shared_reads"] == 49
        assert all(r.local for r in await asyncio.gather(*(b.get("t:shared")
                                                          for _ in range(50))))

    async def test_write_through(
            self, pair: tuple[ValkeyTrackingBackend, ValkeyTrackingBackend]) -> None:
        """An instance reads its own write locally at once, and it is still invalidated by the
        next write from another instance (the write re-tracked the key)."""
        a, b = pair
        seen: Seen = []
        b.set_invalidation_hook(lambda k, v, ts: seen.append((k, v, ts)))
        await b.set("t:wt", b"mine", 5)
        assert read(await b.get("t:wt")) == (b"mine", True)
        await a.set("t:wt", b"theirs", 5)
        await settled(b, "t:wt", b"theirs")
        assert [(k, v) for k, v, _ in seen] == [("t:wt", None)]

    async def test_invalidation_from_another_instance(
            self, pair: tuple[ValkeyTrackingBackend, ValkeyTrackingBackend]) -> None:
        """A's write evicts B's copy; B reports the arrival and reads the new value locally."""
        a, b = pair
        seen: Seen = []
        b.set_invalidation_hook(lambda k, v, ts: seen.append((k, v, ts)))
        await a.set("t:2", b"old", 5)
        await b.get("t:2")
        before = time.perf_counter_ns()
        await a.set("t:2", b"new", 5)
        await eventually(lambda: bool(seen))
        assert seen[0][:2] == ("t:2", None) and seen[0][2] >= before
        assert read(await b.get("t:2")) == (b"new", False)
        assert read(await b.get("t:2")) == (b"new", True)

    async def test_delete_expiry_and_unicode(
            self, pair: tuple[ValkeyTrackingBackend, ValkeyTrackingBackend]) -> None:
        """A delete elsewhere invalidates a non-ASCII key; a copy never outlives its key."""
        a, b = pair
        key = "ключ-🔑"
        await a.set(key, b"x", 5)
        await b.get(key)
        await a.delete(key)
        await settled(b, key, None)
        assert read(await b.get(key)) == (None, False)
        await a.set("t:short", b"x", 0.15)
        await b.get("t:short")
        assert (await b.get("t:short")).local
        await asyncio.sleep(0.2)
        assert read(await b.get("t:short")) == (None, False)

    async def test_bound_and_ttl_cap_are_pgcache_defaults(self, valkey_url: str) -> None:
        """Without options the bound, TTL cap and lease are pgcache's defaults; a copy lives
        no longer than local_ttl_seconds."""
        defaults = backend(valkey_url).settings
        pg = CacheSettings(dsn="postgresql://x@localhost/db")
        assert (defaults.local_max_entries, defaults.local_ttl_seconds,
                defaults.local_lease_seconds) == (pg.local_max_entries, pg.local_ttl_seconds,
                                                  pg.local_lease_seconds)
        b = backend(valkey_url, local_max_entries=2, local_ttl_seconds=0.1)
        await b.connect()
        try:
            for key in ("t:a", "t:b", "t:c"):
                await b.set(key, b"v", 5)
            assert b.stats()["local_size"] == 2
            assert (await b.get("t:c")).local
            await asyncio.sleep(0.15)
            assert read(await b.get("t:c")) == (b"v", False)
        finally:
            await b.close()

    async def test_flushdb_flushes(
            self, pair: tuple[ValkeyTrackingBackend, ValkeyTrackingBackend],
            valkey_url: str) -> None:
        """FLUSHDB elsewhere (an invalidation without keys) drops every local copy."""
        _a, b = pair
        seen: Seen = []
        b.set_invalidation_hook(lambda k, v, ts: seen.append((k, v, ts)))
        await b.set("t:f", b"v", 5)
        client = aioredis.Redis.from_url(valkey_url)
        try:
            await client.flushdb()
        finally:
            await client.aclose()
        await eventually(lambda: (None, None) in [(k, v) for k, v, _ in seen])
        assert read(await b.get("t:f")) == (None, False)


class TestRaces:
    """Installs are race-safe: what was announced while a read was in flight wins."""

    async def test_invalidation_during_get_stops_install(
            self, proxy: FaultProxy, valkey_url: str) -> None:
        """A GET whose invalidation arrives before its reply returns the value but installs
        nothing; the next read goes to Valkey again."""
        b = backend(proxy.rewrite(valkey_url))
        await b.connect()
        try:
            await b.set("t:race", b"v", 5)
            await b.delete("t:race")
            await b.set("t:race", b"v", 5)
            b._local.remove("t:race")  # a cold copy: the next read must fetch
            proxy.hold()
            reading = asyncio.create_task(b.get("t:race"))
            await proxy.wait_held()
            assert b._inv is not None
            b._inv.data_received(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$6\r\nt:race\r\n")
            proxy.release()
            assert read(await reading) == (b"v", False)
            assert read(await b.get("t:race")) == (b"v", False)
            assert (await b.get("t:race")).local
        finally:
            await b.close()

    async def test_concurrent_writers_converge(
            self, pair: tuple[ValkeyTrackingBackend, ValkeyTrackingBackend],
            valkey_url: str) -> None:
        """After concurrent reads and writes from both instances, each serves the last value."""
        a, b = pair
        keys = [f"t:c{i}" for i in range(4)]

        async def reader(x: ValkeyTrackingBackend) -> None:
            for i in range(200):
                await x.get(keys[i % 4])

        async def writer(x: ValkeyTrackingBackend, tag: bytes) -> None:
            for i in range(100):
                await x.set(keys[i % 4], tag + str(i).encode(), 5)

        await asyncio.gather(writer(a, b"a"), writer(b, b"b"),
                             *(reader(x) for x in (a, b) for _ in range(8)))
        client = aioredis.Redis.from_url(valkey_url)
        try:
            final = {k: await client.get(k) for k in keys}
        finally:
            await client.aclose()
        for x in (a, b):
            for k in keys:
                await settled(x, k, final[k])
                assert read(await x.get(k)) == (final[k], True)


async def client_ids(valkey_url: str, field: str, value: str) -> list[int]:
    """The ids of the server's clients whose CLIENT LIST ``field`` is ``value``."""
    client = aioredis.Redis.from_url(valkey_url)
    try:
        listing = await client.execute_command("CLIENT", "LIST")
    finally:
        await client.aclose()
    text = listing.decode() if isinstance(listing, bytes) else str(listing)
    ids = []
    for line in text.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if fields.get(field) == value:
            ids.append(int(fields["id"]))
    return ids


async def kill(valkey_url: str, client_id: int) -> None:
    client = aioredis.Redis.from_url(valkey_url)
    try:
        await client.execute_command("CLIENT", "KILL", "ID", client_id)
    finally:
        await client.aclose()


class TestFaults:
    """Flush and bypass while invalidations may be missed, then reconnect and trust again."""

    async def test_lost_invalidation_connection(
            self, pair: tuple[ValkeyTrackingBackend, ValkeyTrackingBackend],
            valkey_url: str) -> None:
        """Killing the invalidation connection flushes the cache and bypasses it; once it is
        reopened the data connection redirects to it and invalidations work again."""
        a, b = pair
        seen: Seen = []
        b.set_invalidation_hook(lambda k, v, ts: seen.append((k, v, ts)))
        await b.set("t:inv", b"v1", 5)
        old = b.stats()["invalidation_client_id"]
        await kill(valkey_url, old)
        await eventually(lambda: (None, None) in [(k, v) for k, v, _ in seen])
        assert not (await b.get("t:inv")).local
        await eventually(lambda: bool(b.stats()["lease_held"]))
        assert b.stats()["invalidation_reconnects"] == 1
        assert await client_ids(valkey_url, "redir", str(b.stats()["invalidation_client_id"]))
        await b.get("t:inv")
        assert (await b.get("t:inv")).local
        await a.set("t:inv", b"v2", 5)
        await settled(b, "t:inv", b"v2")

    async def test_lost_data_connection(
            self, pair: tuple[ValkeyTrackingBackend, ValkeyTrackingBackend],
            valkey_url: str) -> None:
        """Killing the data connection (its tracking dies with it) flushes the cache; the next
        command reconnects it and its reads are tracked again."""
        a, b = pair
        await a.set("t:data", b"v1", 5)
        await b.get("t:data")
        (data_id,) = await client_ids(valkey_url, "redir",
                                      str(b.stats()["invalidation_client_id"]))
        await kill(valkey_url, data_id)
        await eventually(lambda: not b.stats()["data_connected"])
        assert b.stats()["flushes"] == 1
        await eventually(lambda: bool(b.stats()["lease_held"]))
        assert read(await b.get("t:data")) == (b"v1", False)
        assert b.stats()["data_reconnects"] == 1
        await a.set("t:data", b"v2", 5)
        await settled(b, "t:data", b"v2")

    async def test_silent_network_lapses_the_lease(self, proxy: FaultProxy,
                                                   valkey_url: str) -> None:
        """Blackholed, the instance stops serving local copies within the lease (reads go to
        Valkey and time out); after the network recovers it reconnects and serves them again."""
        b = backend(proxy.rewrite(valkey_url), command_timeout=0.3, connect_timeout=0.5,
                    heartbeat_timeout_seconds=0.4, reconnect_backoff_max_seconds=0.2)
        await b.connect()
        try:
            await b.set("t:silent", b"v", 60)
            assert (await b.get("t:silent")).local
            proxy.blackhole()
            await asyncio.sleep(b.settings.local_lease_seconds + 0.2)
            with pytest.raises(TimeoutError):
                await b.get("t:silent")
            proxy.recover()
            await eventually(lambda: bool(b.stats()["lease_held"]))
            await b.get("t:silent")
            assert read(await b.get("t:silent")) == (b"v", True)
            assert b.stats()["invalidation_reconnects"] >= 1
        finally:
            await b.close()


class TestMisuse:
    """Each misuse has its own message."""

    def test_bad_options(self, valkey_url: str) -> None:
        """Unknown and out-of-range options are named, at validation and at construction."""
        issues = option_issues("valkey-tracking", {"local_max_entries": 0, "bogus": 1,
                                                   "command_timeout": None})
        assert [key for key, _, _ in issues] == ["local_max_entries", "bogus"]
        with pytest.raises(BackendError, match="local_lease_seconds: expected a number > 0"):
            backend(valkey_url, local_lease_seconds=-1)

    async def test_not_connected(self, valkey_url: str) -> None:
        """Using the backend before connect says so."""
        with pytest.raises(BackendError, match="backend is not connected"):
            await backend(valkey_url).get("k")
