"""The lease: local copies are served only while the instance's own notifications keep coming
back, so a silent listener (blackholed, held) bounds staleness by ``local_lease_seconds``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from support.caches import eventually, last_served, listening
from support.faultproxy import FaultProxy

from pgcache import CacheSettings, PostgresCache

LEASE = 0.5  # the default: the bound pgcache states


class TestSilentListener:
    async def test_stale_reads_under_a_blackhole_stay_within_the_lease(
            self, settings: CacheSettings) -> None:
        """B's listener is blackholed while A keeps writing: every read B serves is at most
        ``local_lease_seconds`` older than the write that superseded it."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(settings)
            b, _ = listening(settings, listener_dsn=proxy.rewrite(settings.dsn),
                             local_lease_seconds=LEASE)
            async with a, b:
                await a.set("k", b"0")
                assert await b.get("k") == b"0" and b.get_local("k") == b"0"
                finished: list[tuple[float, bytes]] = [(0.0, b"0")]  # (returned at, value)
                reads: list[tuple[float, bytes, bool]] = []  # (began at, value, local)
                stop = time.monotonic() + 2 * LEASE + 0.5

                async def writer() -> None:
                    i = 0
                    while time.monotonic() < stop:
                        i += 1
                        await a.set("k", str(i).encode())
                        finished.append((time.monotonic(), str(i).encode()))
                        await asyncio.sleep(0.01)

                async def reader() -> None:
                    while time.monotonic() < stop:
                        began = time.monotonic()
                        local = b.get_local("k")
                        value = local if local is not None else await b.get("k")
                        reads.append((began, value, local is not None))
                        await asyncio.sleep(0.001)

                proxy.blackhole()
                await asyncio.gather(writer(), reader())
                ages = []
                for began, value, _local in reads:
                    # Writes are sequential: the read is stale if a write that returned after
                    # the one it saw had also returned before the read began.
                    seen = self._written(finished, value)
                    later = [t for t, _ in finished if seen < t < began]
                    if later:
                        ages.append(began - min(later))
                assert ages, "the blackhole produced no stale read: the test saw nothing"
                print(f"\nblackholed listener: {len(reads)} reads, {len(ages)} stale, the "
                      f"oldest {1000 * max(ages):.1f} ms after the write that superseded it "
                      f"(bound: local_lease_seconds = {LEASE * 1000:.0f} ms)")
                assert max(ages) <= LEASE, f"stale by {max(ages):.3f} s > lease {LEASE} s"
                # Once the lease lapsed, reads went to PostgreSQL and were fresh.
                late = [r for r in reads if r[0] > reads[0][0] + LEASE + 0.2]
                assert late and not any(local for _, _, local in late)
                assert not b.stats.lease_valid

    @staticmethod
    def _written(finished: list[tuple[float, bytes]], value: bytes) -> float:
        """When the write of ``value`` returned."""
        return next(t for t, v in finished if v == value)

    async def test_held_listener_lapses_then_resumes_without_a_flush(
            self, settings: CacheSettings) -> None:
        """Notifications held (delayed, not lost) for longer than the lease: B stops serving
        copies, then, when they arrive in order, serves them again; nothing was flushed."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(settings)
            b, inbox = listening(settings, listener_dsn=proxy.rewrite(settings.dsn),
                                 local_lease_seconds=LEASE)
            async with a, b:
                await a.set_many({"k": b"1", "j": b"1"})
                assert await b.get_many(["k", "j"]) == {"k": b"1", "j": b"1"}
                proxy.hold()
                newer = await a.set("k", b"2")
                await eventually(lambda: not b.stats.lease_valid, within=2 * LEASE + 1)
                assert b.get_local("j") is None  # held, but not vouched for
                assert await b.get("k") == b"2"  # from PostgreSQL
                proxy.release()
                await inbox.wait_for(("k", newer))
                await eventually(lambda: b.stats.lease_valid)
                assert b.get_local("j") == b"1" and b.stats.local_flushes == 0
                assert b.stats.lease_lapses >= 1

    async def test_heartbeats_only_when_nothing_else_renews(
            self, settings: CacheSettings) -> None:
        """An idle instance sends about four heartbeats per lease; a writing one, whose own
        notifications come back, sends none."""
        lease = replace(settings, local_lease_seconds=LEASE)
        async with PostgresCache(lease) as cache:
            before = cache.stats.heartbeats_sent
            await asyncio.sleep(2 * LEASE)
            idle = cache.stats.heartbeats_sent - before
            assert 4 <= idle <= 12, idle
            before = cache.stats.heartbeats_sent
            stop = time.monotonic() + 2 * LEASE
            while time.monotonic() < stop:
                await cache.set("k", b"v")
                await asyncio.sleep(0.02)
            assert cache.stats.heartbeats_sent - before <= 1
            assert cache.stats.lease_valid

    async def test_pool_blackhole_lapses_the_lease(self, settings: CacheSettings) -> None:
        """If no heartbeat can be sent (the pool's route is silent), copies stop being served
        within the lease, although the listener itself is fine."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            b = PostgresCache(replace(settings, dsn=proxy.rewrite(settings.dsn),
                                      listener_dsn=settings.dsn, local_lease_seconds=LEASE,
                                      listener_heartbeat_timeout_seconds=0.2,
                                      connect_timeout=0.5))
            async with b:
                await b.set("k", b"v")
                assert b.get_local("k") == b"v"
                proxy.blackhole()
                started = time.monotonic()
                served = await last_served(lambda: b.get_local("k"))
                assert served - started <= LEASE + 0.2
                assert b.stats.listener_connected
                proxy.recover()
                await eventually(lambda: b.get_local("k") == b"v", within=5)
