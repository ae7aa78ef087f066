"""The lifecycle: close() at any moment of connect() leaves a closed instance with nothing
open on the server, close() is idempotent, and an instance is bound to its event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from support.caches import (
    eventually,
    listening,
    row_of,
    sessions_of,
    settings_for,
    wait_no_sessions,
)
from support.faultproxy import FaultProxy

from pgcache import CacheSettings, CacheStateError, PostgresCache

Wait = Callable[[], Awaitable[None]]


def iterations(count: int) -> Wait:
    async def wait() -> None:
        for _ in range(count):
            await asyncio.sleep(0)
    return wait


def seconds(delay: float) -> Wait:
    async def wait() -> None:
        await asyncio.sleep(delay)
    return wait


# Loop iterations reach the first stages, delays the later ones; on a loaded machine they
# land elsewhere, which changes what is covered, never what must hold.
TIMINGS = [iterations(n) for n in (0, 1, 2, 3, 5, 8, 13, 30)] + \
    [seconds(s) for s in (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3)]


async def close_during_connect(settings: CacheSettings, wait: Wait) -> BaseException | None:
    """Start connect(), wait, close(); check the instance is closed; connect()'s outcome."""
    cache = PostgresCache(settings)
    connecting = asyncio.ensure_future(cache.connect())
    await wait()
    await cache.close()
    outcome = (await asyncio.gather(connecting, return_exceptions=True))[0]
    assert not cache.connected
    # "cache is closed": close() came before connect() began.
    assert outcome is None or (isinstance(outcome, CacheStateError) and (
        "closed while connecting" in str(outcome) or "cache is closed" in str(outcome))
    ), repr(outcome)
    with pytest.raises(CacheStateError, match="cache is closed"):
        await cache.get("k")
    await cache.close()  # idempotent
    assert not cache.connected
    return outcome


class TestCloseDuringConnect:
    async def test_close_at_every_timing_leaves_nothing_open(
            self, settings: CacheSettings) -> None:
        """close() after 0 to 30 loop iterations or 2 to 300 ms of connect(): connect()
        completes or raises "closed while connecting", and no session is left."""
        outcomes = []
        for number, wait in enumerate(TIMINGS):
            trial = replace(settings, application_name=f"{settings.application_name}{number}x")
            outcomes.append(await close_during_connect(trial, wait))
        await wait_no_sessions(settings.dsn, settings.application_name)
        # The timings reach both sides: some closes interrupt connect(), and (unless the
        # machine is very slow) the last ones come after it completed.
        assert any(isinstance(o, CacheStateError) for o in outcomes)

    @pytest.mark.parametrize("stage", ["pool", "notifier", "listener", "relay"])
    async def test_close_while_a_stage_is_stuck_leaves_nothing_open(
            self, settings: CacheSettings, stage: str) -> None:
        """close() while connect() waits for the server's answer in one of its stages: the
        pool, the notifier, the listener, or the shared listener's relay."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            routed = proxy.rewrite(settings.dsn)
            if stage == "pool":
                trial = replace(settings, dsn=routed)
                proxy.hold()
            elif stage == "notifier":
                # The pool's one connection comes first, the notifier's second.
                trial = replace(settings, dsn=routed, min_pool_size=1)
                proxy.hold_after(1)
            else:
                trial = replace(settings, listener_dsn=routed,
                                shared_listener=stage == "relay")
                proxy.hold()
            cache = PostgresCache(trial)
            connecting = asyncio.ensure_future(cache.connect())
            async with asyncio.timeout(20):
                await proxy.wait_held()
            await cache.close()
            outcome = (await asyncio.gather(connecting, return_exceptions=True))[0]
            assert isinstance(outcome, CacheStateError), repr(outcome)
            assert "closed while connecting" in str(outcome)
            assert not cache.connected
            proxy.release()
            await wait_no_sessions(settings.dsn, settings.application_name)

    async def test_cancelled_connect_leaves_nothing_open(self, settings: CacheSettings) -> None:
        """A connect() whose caller is cancelled while the listener is stuck raises
        CancelledError and closes what it opened; the instance can connect again."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            cache = PostgresCache(replace(settings, listener_dsn=proxy.rewrite(settings.dsn)))
            proxy.hold()
            connecting = asyncio.ensure_future(cache.connect())
            async with asyncio.timeout(20):
                await proxy.wait_held()
            connecting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await connecting
            assert not cache.connected
            proxy.release()
            await wait_no_sessions(settings.dsn, settings.application_name)
            await cache.connect()
            try:
                await cache.set("k", b"v")
                assert await cache.get("k") == b"v"
            finally:
                await cache.close()


class TestClose:
    async def test_close_is_idempotent_and_concurrent_closes_agree(
            self, settings: CacheSettings) -> None:
        """Two concurrent close() calls and a third later all return, and nothing is left
        (the lock session get_or_set opened included)."""
        cache = PostgresCache(settings)
        await cache.connect()
        assert await cache.get_or_set("k", lambda: b"v") == b"v"
        assert f"{settings.application_name}-lock" in await sessions_of(
            settings.dsn, settings.application_name)
        await asyncio.gather(cache.close(), cache.close())
        await cache.close()
        assert not cache.connected
        await wait_no_sessions(settings.dsn, settings.application_name)

    async def test_connect_after_close_is_a_state_error(self, settings: CacheSettings) -> None:
        """connect() after close() (also close() before any connect()) says to create a new
        instance."""
        for connect_first in (True, False):
            cache = PostgresCache(settings)
            if connect_first:
                await cache.connect()
            await cache.close()
            with pytest.raises(CacheStateError, match="cache is closed") as caught:
                await cache.connect()
            assert caught.value.hint is not None and "new PostgresCache" in caught.value.hint
            assert not cache.connected


class TestCloseWithWritesInFlight:
    async def test_writes_returning_during_close_are_announced(
            self, settings: CacheSettings) -> None:
        """Two writes committed, their answers held on the wire, while close() runs: close()
        waits for them, so the other instance drops its old copies (the overlapping write,
        announced by the notifier, too) and reads the new values; a write begun after close()
        began fails with CacheStateError."""
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a = PostgresCache(replace(settings, dsn=proxy.rewrite(settings.dsn),
                                      min_pool_size=2, max_pool_size=2, connect_timeout=10))
            b, _ = listening(settings)
            async with b:
                await a.connect()
                for attempt in range(6):
                    keys = [f"x{attempt}", f"y{attempt}"]
                    for key in keys:
                        await a.set(key, b"old")
                    assert await a.wait_notified(10)
                    for key in keys:
                        assert await b.get(key) == b"old"
                        assert b.get_local(key) == b"old"
                    writes = await _held_writes(a, proxy, settings, keys)
                    if writes is not None:
                        break
                else:
                    pytest.fail("a write waited for its statement's preparation every time")
                closing = asyncio.ensure_future(a.close())
                await asyncio.sleep(0.1)
                assert not closing.done()  # waiting for the writes
                with pytest.raises(CacheStateError, match="cache is closed"):
                    await a.set("late", b"v")
                proxy.release()
                await closing
                assert len(await writes) == 2
                # Announced: both copies go (well within the lease; local_ttl is 60 s).
                await eventually(lambda: all(b.get_local(key) is None for key in keys),
                                 within=5)
                assert [await b.get(key) for key in keys] == [b"new", b"new"]
                assert await row_of(settings, "late") is None


async def _held_writes(a: PostgresCache, proxy: FaultProxy, settings: CacheSettings,
                       keys: list[str]) -> asyncio.Future[list[int]] | None:
    """Concurrent writes of ``b"new"`` to ``keys`` (the first carries its NOTIFY, the others
    overlap it), once all have committed with their answers held in the proxy; None (the
    writes let through) if one waited for its statement's preparation on its connection,
    which is then prepared for the next try."""
    proxy.hold()
    writes = asyncio.gather(*(a.set(key, b"new") for key in keys))
    try:
        async with asyncio.timeout(2):
            while True:
                rows = [await row_of(settings, key) for key in keys]
                if all(row is not None and row[0] == b"new" for row in rows):
                    return writes
                await asyncio.sleep(0.01)
    except TimeoutError:
        proxy.release()
        await writes
        return None


class TestEventLoop:
    @pytest.mark.parametrize("shared", [False, True], ids=["own listener", "shared listener"])
    def test_an_instance_used_on_another_loop_says_so(self, postgres_dsn: str,
                                                       shared: bool) -> None:
        """Connected in one asyncio.run and used in the next: every call raises a
        CacheStateError naming the loop, close() there returns, and nothing stays open."""
        settings = settings_for(postgres_dsn, shared_listener=shared)
        cache = PostgresCache(settings)

        async def first() -> None:
            await PostgresCache.init_db(settings)
            await cache.connect()
            await cache.set("k", b"v")

        async def second() -> None:
            calls = [cache.get("other"), cache.set("k", b"w"), cache.get_many(["other"]),
                     cache.delete("k"), cache.get_or_set("other", lambda: b"x"),
                     cache.wait_notified(1), cache.connect()]
            for call in calls:
                with pytest.raises(CacheStateError, match="event loop") as caught:
                    await call
                assert caught.value.hint is not None
            await cache.close()
            await cache.close()
            assert not cache.connected

        async def third() -> None:
            await wait_no_sessions(settings.dsn, settings.application_name)
            other = PostgresCache(settings)
            async with other:
                assert await other.get("k") == b"v"
            await PostgresCache.drop_db(settings)

        asyncio.run(first())
        asyncio.run(second())
        asyncio.run(third())
        assert not asyncio.run(sessions_of(settings.dsn, settings.application_name))
