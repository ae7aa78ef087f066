"""get_or_set: one loader run per miss across instances, bounded waits that never take the
pool away from other operations, and an optional loader timeout."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from support.caches import eventually

from pgcache import (
    CacheLoaderTimeoutError,
    CacheLockTimeoutError,
    CacheSettings,
    PostgresCache,
)


class TestOnceAcrossInstances:
    async def test_loader_runs_once_across_instances(self, settings: CacheSettings) -> None:
        """Ten concurrent callers on two instances share one loader run."""
        calls = 0

        async def loader() -> dict[str, int]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)  # widen the window in which others could also miss
            return {"n": 1}

        async with PostgresCache(settings) as a, PostgresCache(settings) as b:
            results = await asyncio.gather(*(c.get_or_set("k", loader)
                                             for c in (a, b) for _ in range(5)))
            assert results == [{"n": 1}] * 10 and calls == 1
            assert await a.get_or_set("k", lambda: {"n": 2}) == {"n": 1}

    async def test_sync_loader_and_loader_error(self, settings: CacheSettings) -> None:
        """A sync loader works; a failing loader stores nothing and its error propagates."""
        async with PostgresCache(settings) as cache:
            assert await cache.get_or_set("sync", lambda: "v") == "v"

            def broken() -> str:
                raise RuntimeError("boom")

            with pytest.raises(RuntimeError, match="boom"):
                await cache.get_or_set("bad", broken)
            assert await cache.get("bad") is None
            assert await cache.get_or_set("bad", lambda: "ok") == "ok"

    async def test_waiter_is_woken_by_the_fill(self, settings: CacheSettings) -> None:
        """B waits for A's load without polling it out: A's write wakes B at once."""
        started, release = asyncio.Event(), asyncio.Event()

        async def slow() -> str:
            started.set()  # runs under A's lock
            await release.wait()
            return "filled"

        async with PostgresCache(settings) as a, PostgresCache(settings) as b:
            loading = asyncio.ensure_future(a.get_or_set("k", slow))
            await started.wait()
            waiting = asyncio.ensure_future(b.get_or_set("k", lambda: "B's own"))
            await eventually(lambda: b.stats.lock_waits >= 1)
            await asyncio.sleep(0.3)  # B keeps waiting (polls back off to 0.1 s)
            release.set()
            filled_at = time.monotonic()
            assert await loading == "filled"
            assert await waiting == "filled"
            # Woken by the fill, not after B's lock wait (5 s): 2 s of margin for a loaded host.
            assert time.monotonic() - filled_at < 2.0
            assert b.stats.loads == 0


class TestBoundedWaits:
    async def test_lock_wait_ends_with_an_error_naming_the_key(
            self, settings: CacheSettings) -> None:
        """A's loader hangs: B gives up after lock_timeout_seconds with a clear error."""
        started, hang = asyncio.Event(), asyncio.Event()

        async def hanging() -> str:
            started.set()
            await hang.wait()
            return "never"

        short = replace(settings, lock_timeout_seconds=0.5)
        async with PostgresCache(short) as a, PostgresCache(short) as b:
            stuck = asyncio.ensure_future(a.get_or_set("user:42", hanging))
            await started.wait()  # A holds the lock
            started = time.monotonic()
            with pytest.raises(CacheLockTimeoutError) as info:
                await b.get_or_set("user:42", lambda: "B")
            waited = time.monotonic() - started
            assert 0.5 <= waited < 4.0  # gave up at its timeout, not much later (loaded host)
            assert "user:42" in str(info.value) and "another instance" in str(info.value)
            assert info.value.key == "user:42" and isinstance(info.value, TimeoutError)
            hang.set()
            assert await stuck == "never"

    async def test_lock_waits_never_take_the_pool(self, settings: CacheSettings) -> None:
        """With max_pool_size=2 and two get_or_set waits pending, B's other reads and writes
        still go through at once."""
        started, hang = asyncio.Semaphore(0), asyncio.Event()

        async def hanging() -> str:
            started.release()
            await hang.wait()
            return "late"

        small = replace(settings, max_pool_size=2, lock_timeout_seconds=5.0)
        async with PostgresCache(small) as a, PostgresCache(small) as b:
            loads = [asyncio.ensure_future(a.get_or_set(k, hanging)) for k in ("x", "y")]
            await started.acquire()
            await started.acquire()  # A holds both locks
            waits = [asyncio.ensure_future(b.get_or_set(k, lambda: "B")) for k in ("x", "y")]
            await eventually(lambda: b.stats.lock_waits >= 2)
            started = time.monotonic()
            await b.set("other", b"v")
            assert await b.get("unrelated") is None
            assert await b.get_many(["other"]) == {"other": b"v"}
            assert time.monotonic() - started < 3.0  # not held to a 5 s lock wait
            hang.set()
            assert await asyncio.gather(*loads, *waits) == ["late"] * 4

    async def test_loader_timeout(self, settings: CacheSettings) -> None:
        """An async loader past its timeout fails cleanly: nothing stored, lock released."""
        async def slow() -> str:
            await asyncio.sleep(5)
            return "too late"

        async with PostgresCache(replace(settings, loader_timeout_seconds=0.1)) as a, \
                PostgresCache(settings) as b:
            with pytest.raises(CacheLoaderTimeoutError) as info:
                await a.get_or_set("k", slow)
            assert "k" in str(info.value) and isinstance(info.value, TimeoutError)
            assert await a.get("k") is None
            started = time.monotonic()
            assert await b.get_or_set("k", lambda: "next") == "next"  # the lock is free
            assert time.monotonic() - started < 3.0  # not held to a 5 s lock wait
            with pytest.raises(CacheLoaderTimeoutError):
                await b.get_or_set("j", slow, loader_timeout_seconds=0.05)

    async def test_loader_whose_instance_dies_frees_the_key(
            self, settings: CacheSettings) -> None:
        """An instance closed mid-load drops its lock session: the next caller loads."""
        started = asyncio.Event()

        async def hanging() -> str:
            started.set()
            await asyncio.Event().wait()
            return "never"

        async with PostgresCache(settings) as b:
            a = PostgresCache(settings)
            await a.connect()
            stuck = asyncio.ensure_future(a.get_or_set("k", hanging))
            await started.wait()
            stuck.cancel()
            await a.close()
            assert await b.get_or_set("k", lambda: "B") == "B"
