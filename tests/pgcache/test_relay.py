"""The shared listener: one LISTEN per host relayed to every instance, and every guarantee
kept at every hop (PostgreSQL to relay, relay to instance), through loss, silence, a relay
that dies and one that is replaced."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from support.caches import Inbox, eventually, last_served, listening, row_of, sql
from support.faultproxy import FaultProxy
from support.instance_process import InstanceProcess, runs_relay

from pgcache import CacheSettings, PostgresCache
from pgcache._relay import relay_address

LEASE = 0.5


@pytest.fixture
def shared(settings: CacheSettings) -> CacheSettings:
    # The heartbeat's timeout stays the generous one of settings_for: the relay forwards
    # bursts of megabytes on this test process's loop, which a loaded machine can stall for
    # over a second, and no test here finds a loss by its heartbeat.
    return replace(settings, shared_listener=True, local_lease_seconds=LEASE,
                   listener_heartbeat_interval_seconds=0.2)


def _link(cache: PostgresCache) -> object:
    """The instance's link to the relay (its listener part)."""
    assert cache._parts is not None
    return cache._parts.listener


async def listeners(settings: CacheSettings) -> int:
    found = await sql(settings.dsn, "SELECT count(*) FROM pg_stat_activity WHERE "
                      "application_name = $1", f"{settings.application_name}-listen")
    return int(found[0][0])


@pytest.fixture
async def trio(shared: CacheSettings) -> AsyncIterator[list[PostgresCache]]:
    caches = [PostgresCache(shared) for _ in range(3)]
    for cache in caches:
        await cache.connect()
    yield caches
    for cache in caches:
        await cache.close()


class TestOneListenerPerHost:
    async def test_instances_share_one_listener_and_stay_coherent(
            self, shared: CacheSettings, trio: list[PostgresCache]) -> None:
        """Three instances, one LISTEN session and one link to the relay (this process
        runs it); a write on one evicts the others' copies; leases hold on the relay's
        proofs, no instance sends heartbeats."""
        a, b, c = trio
        assert await listeners(shared) == 1
        assert all(runs_relay(cache) for cache in trio)
        assert _link(a) is _link(b) is _link(c)
        await a.set("k", b"1")
        assert await b.get("k") == b"1" and await c.get("k") == b"1"
        version = await a.set("k", b"2")
        await eventually(lambda: b.get_local("k") is None and c.get_local("k") is None)
        assert await b.get("k") == b"2" and b.get_local("k") == b"2"
        assert (await row_of(shared, "k")) == (b"2", version)
        await asyncio.sleep(3 * LEASE)
        assert all(cache.stats.lease_valid for cache in trio)
        assert sum(cache.stats.heartbeats_sent for cache in trio) == 0

    async def test_instances_of_other_processes_use_the_same_relay(
            self, shared: CacheSettings, trio: list[PostgresCache]) -> None:
        """An instance in another process joins this host's relay and is kept coherent."""
        child = await InstanceProcess(shared).start()
        try:
            assert not child.hosts_relay and await listeners(shared) == 1
            await trio[0].set("k", b"1")
            assert await child.call("get", "k") == b"1"
            await trio[0].set("k", b"2")
            await eventually_in(child, "k", None)
            assert await child.call("get", "k") == b"2"
        finally:
            await child.stop()


async def eventually_in(child: InstanceProcess, key: str, local: bytes | None,
                        within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while await child.call("get_local", key) != local:
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class TestHopPostgresToRelay:
    async def test_lost_listener_flushes_every_instance(
            self, shared: CacheSettings) -> None:
        """The relay's LISTEN session is terminated: every instance flushes and bypasses,
        then caches again once the relay listens again."""
        a = PostgresCache(shared)
        b, inbox = listening(shared)
        async with a, b:
            await a.set("k", b"old")
            assert await b.get("k") == b"old" and b.get_local("k") == b"old"
            await sql(shared.dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = $1", f"{shared.application_name}-listen")
            await inbox.wait_for((None, None))
            assert b.stats.local_size == 0
            await eventually(lambda: b.stats.listener_connected and b.stats.lease_valid)
            version = await a.set("k", b"new")
            await inbox.wait_for(("k", version))
            assert await b.get("k") == b"new" and b.get_local("k") == b"new"

    async def test_silent_listener_bounds_staleness_by_the_lease(
            self, shared: CacheSettings) -> None:
        """The relay's route to PostgreSQL goes silent: every instance stops serving its
        copies within the lease, although its own link to the relay is fine."""
        async with FaultProxy.for_dsn(shared.dsn) as proxy:
            routed = replace(shared, listener_dsn=proxy.rewrite(shared.dsn),
                             listener_heartbeat_timeout_seconds=5.0)
            a, b = PostgresCache(routed), PostgresCache(routed)
            async with a, b:
                await a.set("k", b"v")
                assert await b.get("k") == b"v" and b.get_local("k") == b"v"
                proxy.blackhole()
                silenced = time.monotonic()
                served = await last_served(lambda: b.get_local("k"))
                assert served - silenced <= LEASE + 0.15
                assert await b.get("k") == b"v"  # from PostgreSQL


class TestHopRelayToInstance:
    async def test_relay_process_closing_loses_no_invalidation(
            self, shared: CacheSettings) -> None:
        """The process running the relay closes its last instance while another writes:
        the others flush, one of their processes takes the relay over, and nothing older
        than the write is served."""
        child = await InstanceProcess(shared).start()
        assert child.hosts_relay
        b, c = PostgresCache(shared), PostgresCache(shared)
        async with b, c:
            assert not runs_relay(b)
            await c.set("k", b"old")
            assert await b.get("k") == b"old" and b.get_local("k") == b"old"
            closing = asyncio.ensure_future(child.stop())
            await c.set("k", b"new")  # perhaps while no relay listens at all
            await closing
            await eventually(lambda: b.stats.listener_connected and b.stats.lease_valid)
            assert runs_relay(b) and b.stats.listener_reconnects >= 1
            assert await b.get("k") == b"new"
            assert await listeners(shared) == 1

    async def test_last_instance_of_a_process_closes_its_relay(
            self, shared: CacheSettings) -> None:
        """The relay lives as long as some instance of its process uses it."""
        a, b = PostgresCache(shared), PostgresCache(shared)
        await a.connect()
        await b.connect()
        await a.close()
        assert runs_relay(b) and b.stats.listener_connected
        await b.set("k", b"v")
        assert await listeners(shared) == 1
        await b.close()
        deadline = time.monotonic() + 10
        while await listeners(shared):  # the relay's LISTEN session went with it
            assert time.monotonic() < deadline, "the relay outlived its last instance"
            await asyncio.sleep(0.05)

    async def test_killed_relay_process_is_replaced(self, shared: CacheSettings) -> None:
        """The relay's process is killed (SIGKILL): instances flush, one of them becomes
        the relay, and they are coherent again."""
        child = await InstanceProcess(shared).start()
        assert child.hosts_relay
        a, inbox = listening(shared)
        b = PostgresCache(shared)
        async with a, b:
            await b.set("k", b"old")
            assert await a.get("k") == b"old"
            child.signal(signal.SIGKILL)
            await inbox.wait_for((None, None))
            await b.set("k", b"new")
            await eventually(lambda: a.stats.listener_connected and a.stats.lease_valid)
            assert await a.get("k") == b"new" and a.get_local("k") == b"new"
            assert runs_relay(a) and _link(a) is _link(b)
        await child.stop()

    async def test_stopped_relay_process_bounds_staleness_by_the_lease(
            self, shared: CacheSettings) -> None:
        """The relay's process is stopped (SIGSTOP: silent, nothing closed): the others stop
        serving copies within the lease, and serve them again once it continues."""
        child = await InstanceProcess(shared).start()
        assert child.hosts_relay
        a = PostgresCache(shared)
        try:
            async with a:
                await a.set("k", b"v")
                assert a.get_local("k") == b"v"
                child.signal(signal.SIGSTOP)
                stopped = time.monotonic()
                served = await last_served(lambda: a.get_local("k"))
                assert served - stopped <= LEASE + 0.15
                assert await a.get("k") == b"v"  # from PostgreSQL
                child.signal(signal.SIGCONT)
                await eventually(lambda: a.stats.lease_valid)
                assert await a.get("k") == b"v" and a.get_local("k") == b"v"
        finally:
            await child.stop()


class TestRelayManners:
    async def test_a_client_that_stops_reading_is_cut_off(
            self, shared: CacheSettings, trio: list[PostgresCache]) -> None:
        """A client more than 8 MiB behind is disconnected instead of buffered without
        bound; the instances that keep up are not disturbed."""
        reader, writer = await asyncio.open_unix_connection(relay_address(shared))
        writer.transport.pause_reading()  # never reads: everything piles up in the relay
        payload = "x" * 7800
        await sql(shared.dsn, "SELECT pg_notify($1, $2 || i) FROM generate_series(1, 1300) i",
                  shared.notify_channel, payload)
        # The relay has dealt with the burst once a write made after it reaches the others.
        inbox = Inbox()
        trio[1].add_invalidation_callback(inbox)
        await trio[2].set("marker", b"n")  # trio[1] hears this one only after the burst
        await eventually(lambda: any(key == "marker" for key, _ in inbox.items), within=15)
        writer.transport.resume_reading()
        received = 0
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            while True:  # the relay cut us off: the stream ends, it does not stall
                chunk = await asyncio.wait_for(reader.read(1 << 16), 5)
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", None)
                received += len(chunk)
        assert received < 9 << 20
        assert all(cache.stats.listener_connected for cache in trio)
        await trio[0].set("k", b"v")
        assert await trio[1].get("k") == b"v"
