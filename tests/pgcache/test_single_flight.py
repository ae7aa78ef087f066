"""get_or_set's single flight: calls sharing one load see nothing older than what their
instance knew when they joined, one call's cancellation or timeout never reaches another, the
lock session outlives any one call, and a loader cannot wait for its own key."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from support.caches import Inbox, eventually, listening, row_of
from support.faultproxy import FaultProxy
from support.loopchecks import no_unretrieved_errors

from pgcache import CacheSettings, CacheStateError, PostgresCache
from pgcache._keys import key_parts
from pgcache._schema import lock_key


async def warmed(a: PostgresCache) -> None:
    """Prepare on both of A's pool connections what the tests send through its proxy, so
    that a held answer is a statement's result, never its preparation."""
    await asyncio.gather(a.get("warm-1"), a.get("warm-2"))  # both connections: get
    # Serial calls all take the connection on top of the pool: prepare the rest there.
    await a.set_many({"warm-3": b"", "warm-4": b""})
    await a.set("warm-5", b"")
    await a.wait_notified()
    await a.set("warm-6", b"")
    await a.delete("warm-6")
    assert await a.get_or_set("warm-7", lambda: b"x") == b"x"  # the lock session


@pytest.fixture
async def proxied(settings: CacheSettings
                  ) -> AsyncIterator[tuple[PostgresCache, Inbox, PostgresCache, FaultProxy]]:
    """A (pool, lock session and notifier through a proxy, listener direct) and B
    (direct)."""
    async with FaultProxy.for_dsn(settings.dsn) as proxy:
        a, inbox = listening(settings, dsn=proxy.rewrite(settings.dsn),
                             listener_dsn=settings.dsn, max_pool_size=2)
        async with a, PostgresCache(settings) as b:
            await warmed(a)
            yield a, inbox, b, proxy


async def held_until_stored(proxy: FaultProxy, settings: CacheSettings, key: str,
                            value: bytes) -> None:
    """Wait until the proxy holds the answer of the write that stored ``value`` (``settings``
    reach the server directly): an answer held earlier (a statement's preparation, a
    heartbeat) is let through."""
    async with asyncio.timeout(20):
        while True:
            await proxy.wait_held()
            row = await row_of(settings, key)
            if row is not None and row[0] == value:
                return
            proxy.release()
            proxy.hold()


class TestNothingOlderThanKnown:
    async def test_call_after_a_delete_does_not_share_the_overtaken_load(
            self, proxied: tuple[PostgresCache, Inbox, PostgresCache, FaultProxy],
            settings: CacheSettings) -> None:
        """A's load has stored its value (the answer held on the wire) when B deletes the key
        and A hears of it: a get_or_set starting on A after that must not get the deleted
        value from the load still in flight."""
        a, inbox, b, proxy = proxied
        async with no_unretrieved_errors():
            for attempt in range(3):
                key = f"k{attempt}"

                def first_loader() -> bytes:
                    proxy.hold()  # from here on, the answers to A wait in the proxy
                    return b"deleted"

                first = asyncio.ensure_future(a.get_or_set(key, first_loader))
                await held_until_stored(proxy, settings, key, b"deleted")
                assert await b.delete(key)
                deleted = (await _versions(b, key))[-1]
                await inbox.wait_for((key, deleted))
                second = asyncio.ensure_future(a.get_or_set(key, lambda: b"new"))
                # Its read of the key is answered (a miss) and held too.
                await eventually(lambda: proxy.held_connections >= 2)
                proxy.release()
                assert await first == b"deleted"  # it began before the delete
                assert await second == b"new"
                assert await a.get(key) == b"new"

    async def test_wait_then_fetch_overtaken_by_a_delete(
            self, proxied: tuple[PostgresCache, Inbox, PostgresCache, FaultProxy],
            settings: CacheSettings) -> None:
        """C loads a large value while A waits for C's lock; A's fetch of it is held on the
        wire while B deletes the key; a new get_or_set on A gets a fresh load, not the
        deleted value."""
        big = os.urandom(16 << 20)  # incompressible: stored and sent as it is
        async with no_unretrieved_errors(), PostgresCache(settings) as c:
            for attempt in range(5):
                if await _wait_then_fetch(*proxied, c, f"big{attempt}", big):
                    return
            pytest.fail("A was in the middle of a poll every time C's fill arrived")


    async def test_without_local_cache_a_call_after_its_own_delete_does_not_share(
            self, settings: CacheSettings) -> None:
        """With local_max_entries=0 (no local cache, no listener): A's load has stored its
        value and is releasing its lock (the answer held on the wire) when A itself deletes
        the key; a get_or_set starting on A after that gets a fresh load, not the deleted
        value."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(replace(settings, dsn=proxy.rewrite(settings.dsn),
                                      local_max_entries=0, min_pool_size=1))
            async with no_unretrieved_errors(), a:
                await a.set("warm", b"")  # prepared on the pool's connection
                await a.delete("warm")
                started, go = asyncio.Event(), asyncio.Event()

                async def loader() -> bytes:
                    started.set()
                    await go.wait()
                    return b"deleted"

                # The lock session opens on the load's first try: the next connection.
                lock_session = proxy.accepted
                misses = a.stats.misses
                first = asyncio.ensure_future(a.get_or_set("k", loader))
                await started.wait()
                assert proxy.accepted == lock_session + 1
                proxy.hold_after(lock_session)  # only the lock session's answers wait
                go.set()
                await proxy.wait_held()  # the unlock, after the fill committed
                assert await row_of(settings, "k") is not None
                assert await a.delete("k")
                second = asyncio.ensure_future(a.get_or_set("k", lambda: b"new"))
                await _joined(a, misses + 3)  # first's read, its load's, and second's
                proxy.release()
                assert await first == b"deleted"  # it began before the delete
                assert await second == b"new"
                assert await a.get("k") == b"new"


async def _wait_then_fetch(a: PostgresCache, inbox: Inbox, b: PostgresCache,
                           proxy: FaultProxy, c: PostgresCache, key: str, big: bytes) -> bool:
    """One try of the scenario; False if A was polling (not waiting) when C's fill came."""
    started, release = asyncio.Event(), asyncio.Event()
    held: list[bool] = []

    async def c_loader() -> bytes:
        started.set()
        await release.wait()
        return big

    def on_fill(name: str | None, version: int | None) -> None:
        # C's fill has arrived: hold A's next answers if A is waiting for it (not in the
        # middle of one of its polls).
        if name == key and not held and a._woken.get(key) is not None:
            held.append(True)
            proxy.hold()

    loading = asyncio.ensure_future(c.get_or_set(key, c_loader))
    await started.wait()
    first = asyncio.ensure_future(a.get_or_set(key, lambda: b"A's own"))
    await eventually(lambda: a.stats.lock_waits >= 6)  # polls 0.1 s apart by now
    a.add_invalidation_callback(on_fill)
    release.set()
    assert await loading == big
    await eventually(lambda: bool(held) or first.done())
    a.remove_invalidation_callback(on_fill)
    if not held:
        assert await first == big
        return False
    await proxy.wait_held()  # A's fetch of the big value
    assert await b.delete(key)
    deleted = (await _versions(b, key))[-1]
    await inbox.wait_for((key, deleted))
    second = asyncio.ensure_future(a.get_or_set(key, lambda: b"new"))
    await eventually(lambda: proxy.held_connections >= 2)  # its read, held too
    proxy.release()
    assert await first == big  # it began before the delete
    assert await second == b"new"
    return True


async def _versions(cache: PostgresCache, key: str) -> list[int]:
    rows = await _sql(cache.settings.dsn,
                      f'SELECT version FROM "{cache.table_name}" WHERE key = $1',
                      key.encode())
    return [r[0] for r in rows]


async def _sql(dsn: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


class TestCancellation:
    async def test_cancelled_leader_leaves_the_others_their_result(
            self, settings: CacheSettings) -> None:
        """The call that started a load is cancelled: none of the five calls waiting for the
        same key sees CancelledError; each gets the loaded value."""
        async with no_unretrieved_errors(), PostgresCache(settings) as a:
            for round_ in range(10):
                await _leader_cancelled(a, f"k{round_}", random.choice([0, 0.001, 0.01]))

    async def test_timed_out_caller_leaves_its_siblings_alone(
            self, settings: CacheSettings) -> None:
        """A leader, then a waiter, bounded by asyncio.wait_for, time out: the calls beside
        them get the value, the timed-out ones a TimeoutError of their own."""
        async with no_unretrieved_errors(), PostgresCache(settings) as a:
            await _timed_out(a, "k-leader", leader_times_out=True)
            await _timed_out(a, "k-waiter", leader_times_out=False)

    async def test_cancelled_call_keeps_other_keys_locked(
            self, settings: CacheSettings) -> None:
        """While A loads one key, sixty get_or_set calls of other keys are cancelled while
        their lock statement is on the wire: A's lock on the loading key holds throughout
        (nobody else can take it), the cancelled calls leave no lock behind, and B never
        loads the key."""
        async with no_unretrieved_errors(), PostgresCache(settings) as a, \
                PostgresCache(replace(settings, lock_timeout_seconds=30)) as b:
            started, release = asyncio.Event(), asyncio.Event()

            async def slow() -> str:
                started.set()  # A holds the lock
                await release.wait()
                return "A's"

            loading = asyncio.ensure_future(a.get_or_set("busy", slow))
            await started.wait()
            b_loads = 0

            def b_loader() -> str:
                nonlocal b_loads
                b_loads += 1
                return "B's"

            waiting = asyncio.ensure_future(b.get_or_set("busy", b_loader))
            others = [f"other-{i}" for i in range(60)]
            for other in others:
                await _cancelled_in_its_lock_statement(a, other)
            conn = await asyncpg.connect(settings.dsn)
            try:
                assert not await _try_lock(conn, a.table_name, "busy")
                for other in others:
                    await _eventually_free(conn, a.table_name, other)
            finally:
                await conn.close()
            release.set()
            assert await loading == "A's"
            assert await waiting == "A's" and b_loads == 0

    async def test_cancelled_reads_leave_no_unretrieved_errors(
            self, settings: CacheSettings) -> None:
        """Reads cancelled at random points (some while the pool opens a connection for them)
        leave nothing for asyncio to report."""
        rng = random.Random(3)
        async with no_unretrieved_errors(), PostgresCache(settings) as a:
            for i in range(60):
                call = asyncio.ensure_future(a.get(f"k{i}"))
                for _ in range(rng.randrange(8)):
                    await asyncio.sleep(0)
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)


async def _joined(a: PostgresCache, misses: int) -> None:
    """Wait until ``misses`` more reads of A missed: a get_or_set joins (or starts) its load
    in the same step as its read misses."""
    await eventually(lambda: a.stats.misses >= misses)


async def _leader_cancelled(a: PostgresCache, key: str, pause: float) -> None:
    release = asyncio.Event()

    async def loader() -> str:
        await release.wait()
        return "loaded"

    misses = a.stats.misses
    leader = asyncio.ensure_future(a.get_or_set(key, loader))
    await _joined(a, misses + 1)
    others = [asyncio.ensure_future(a.get_or_set(key, loader)) for _ in range(5)]
    await _joined(a, misses + 6)
    leader.cancel()
    await asyncio.sleep(pause)
    release.set()
    assert await asyncio.gather(*others, return_exceptions=True) == ["loaded"] * 5
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await a.get(key) == "loaded"


async def _timed_out(a: PostgresCache, key: str, *, leader_times_out: bool) -> None:
    release = asyncio.Event()

    async def loader() -> str:
        await release.wait()
        return "loaded"

    misses = a.stats.misses
    leader = asyncio.ensure_future(asyncio.wait_for(
        a.get_or_set(key, loader), 0.5 if leader_times_out else 30))
    await _joined(a, misses + 1)
    siblings = [asyncio.ensure_future(a.get_or_set(key, loader)) for _ in range(3)]
    short = asyncio.ensure_future(asyncio.wait_for(a.get_or_set(key, loader), 0.5))
    await _joined(a, misses + 5)
    with pytest.raises(TimeoutError):
        await short
    if leader_times_out:
        with pytest.raises(TimeoutError):
            await leader
    release.set()
    assert await asyncio.gather(*siblings, return_exceptions=True) == ["loaded"] * 3
    if not leader_times_out:
        assert await leader == "loaded"


async def _cancelled_in_its_lock_statement(a: PostgresCache, key: str) -> None:
    call = asyncio.ensure_future(a.get_or_set(key, lambda: "x"))
    session = a._parts.locks if a._parts is not None else None
    assert session is not None
    await eventually(lambda: session._mutex.locked() or call.done(), interval=0)
    assert not call.done()
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)


async def _try_lock(conn: asyncpg.Connection, table: str, key: str) -> bool:
    """Whether get_or_set's advisory lock of ``key`` is free (taken and released at once)."""
    lock = lock_key(table, key_parts(key)[1])
    taken = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock))
    if taken:
        await conn.fetchval("SELECT pg_advisory_unlock($1)", lock)
    return taken


async def _eventually_free(conn: asyncpg.Connection, table: str, key: str) -> None:
    for _ in range(1000):
        if await _try_lock(conn, table, key):
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"the advisory lock of {key!r} was never released")


class TestLockSession:
    async def test_lost_session_is_logged_not_silent(
            self, settings: CacheSettings, caplog: pytest.LogCaptureFixture) -> None:
        """A's lock session is killed while a load holds its lock: the next statement on a
        new session logs that the lock was lost, and the load still ends cleanly."""
        caplog.set_level(logging.WARNING, logger="pgcache")
        async with no_unretrieved_errors(), PostgresCache(settings) as a:
            started, release = asyncio.Event(), asyncio.Event()

            async def slow() -> str:
                started.set()  # A holds the lock
                await release.wait()
                return "loaded"

            loading = asyncio.ensure_future(a.get_or_set("busy", slow))
            await started.wait()
            await _sql(settings.dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = $1", f"{settings.application_name}-lock")
            assert a._parts is not None and a._parts.locks is not None
            session = a._parts.locks._conn
            assert session is not None
            await eventually(session.is_closed)
            assert await a.get_or_set("other", lambda: "x") == "x"
            assert any("lock session was lost while it held 1 lock" in r.getMessage()
                       for r in caplog.records)
            release.set()
            assert await loading == "loaded"


class TestLoaderOfItsOwnKey:
    async def test_loader_loading_its_own_key_fails_at_once(
            self, settings: CacheSettings) -> None:
        """A loader that calls get_or_set of its own key (directly, or through another key's
        loader) gets CacheStateError naming the key, at once; the cache works afterwards."""
        async with no_unretrieved_errors(), PostgresCache(settings) as a:
            async def own() -> str:
                return str(await a.get_or_set("self", own))

            async with asyncio.timeout(5):
                with pytest.raises(CacheStateError) as info:
                    await a.get_or_set("self", own)
            assert "'self'" in str(info.value) and "its own key" in str(info.value)

            async def outer() -> str:
                return str(await a.get_or_set("inner", inner))

            async def inner() -> str:
                return str(await a.get_or_set("outer", outer))

            async with asyncio.timeout(5):
                with pytest.raises(CacheStateError, match="'outer'"):
                    await a.get_or_set("outer", outer)
            assert await a.get_or_set("self", lambda: "fine") == "fine"
            assert await a.get_or_set("outer", lambda: "fine too") == "fine too"
