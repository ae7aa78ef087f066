"""PostgreSQL restarts under load: only pgcache's errors escape, no connection that saw the
restart is used again, the first operation once the server is back succeeds, and afterwards
every instance reads what the table holds."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import asyncpg
import pytest
from support.caches import eventually, row_of

from pgcache import CacheSettings, PgCacheError, PostgresCache

KEYS = [f"k{i}" for i in range(40)]


class Load:
    """Readers and writers on several instances, recording every exception by type."""

    def __init__(self, caches: list[PostgresCache], readers: int, writers: int) -> None:
        self.caches = caches
        self.readers = readers
        self.writers = writers
        self.errors: Counter[str] = Counter()
        self.causes: Counter[str] = Counter()  # the driver errors behind them
        self.foreign: list[BaseException] = []
        self.ops = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.readers):
            self._tasks.append(loop.create_task(self._run(i, write=False)))
        for i in range(self.writers):
            self._tasks.append(loop.create_task(self._run(i, write=True)))

    async def _run(self, n: int, *, write: bool) -> None:
        rng = random.Random(n * 2 + write)
        cache = self.caches[n % len(self.caches)]
        seq = 0
        while not self._stop.is_set():
            key = rng.choice(KEYS)
            try:
                if write:
                    seq += 1
                    await cache.set(key, f"{n}:{seq}".encode())
                elif rng.random() < 0.1:
                    await cache.get_many(rng.sample(KEYS, 3))
                else:
                    await cache.get(key)
                self.ops += 1
            except PgCacheError as exc:
                self.errors[type(exc).__name__] += 1
                self.causes[type(exc.__cause__).__name__] += 1
                await asyncio.sleep(0.005)
            except Exception as exc:  # the defect this test exists to catch
                self.foreign.append(exc)
                await asyncio.sleep(0.005)
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def server_back(dsn: str, within: float = 60.0) -> None:
    """Wait until PostgreSQL accepts logins again (crash recovery may take a moment)."""
    deadline = time.monotonic() + within
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            assert time.monotonic() < deadline, "PostgreSQL did not come back"
            await asyncio.sleep(0.05)
            continue
        await conn.close()
        return


async def restarts_under_load(settings: CacheSettings, restart: Callable[[str], None],
                              modes: list[str]) -> Load:
    tuned = replace(settings, max_pool_size=8, listener_heartbeat_interval_seconds=0.2,
                    listener_heartbeat_timeout_seconds=1.0, connect_timeout=2.0)
    a, b = PostgresCache(tuned), PostgresCache(tuned)
    async with a, b:
        await a.set_many({k: b"init" for k in KEYS})
        load = Load([a, b], readers=40, writers=8)
        load.start()
        for mode in modes:
            await asyncio.sleep(0.3)
            ops = load.ops
            await asyncio.to_thread(restart, mode)
            await server_back(settings.dsn)
            # The first operations once the server is back succeed: no connection the
            # restart killed is handed out again (an idle one that failed takes its
            # neighbours with it, and a read is retried once on a fresh connection).
            await a.get("probe")
            await a.set("probe", mode.encode())
            assert await b.get("probe") == mode.encode()
            await eventually(lambda ops=ops: load.ops > ops + 100, within=30)
        await load.stop()
        print(f"\n{modes}: {load.ops} ops, errors {dict(load.errors)} from "
              f"{dict(load.causes)}, retries {a.stats.retries + b.stats.retries}")
        assert not load.foreign, f"non-pgcache errors escaped: {load.foreign[:3]!r}"
        # After the restarts: listeners back, leases held, and every copy is the row.
        for cache in (a, b):
            await eventually(lambda c=cache: c.stats.listener_connected and c.stats.lease_valid,
                             within=30)
        for key in KEYS:
            row = await row_of(settings, key)
            expected = None if row is None else row[0]
            for cache in (a, b):
                assert await cache.get(key) == expected, (key, cache.instance_id)
    return load


class TestRestartsUnderLoad:
    async def test_fast_restarts(self, settings: CacheSettings,
                                 restart_postgres: Callable[[str], None]) -> None:
        """pg_ctl restart -m fast, three times, under 40 readers and 8 writers."""
        load = await restarts_under_load(settings, restart_postgres, ["fast"] * 3)
        assert set(load.errors) <= {"CacheConnectionError"}, load.errors

    async def test_immediate_restarts(self, settings: CacheSettings,
                                      restart_postgres: Callable[[str], None]) -> None:
        """pg_ctl restart -m immediate (crash recovery empties the UNLOGGED table), twice."""
        load = await restarts_under_load(settings, restart_postgres, ["immediate"] * 2)
        assert set(load.errors) <= {"CacheConnectionError", "CacheServerError"}, load.errors

    @pytest.mark.slow
    async def test_many_restarts(self, settings: CacheSettings,
                                 restart_postgres: Callable[[str], None]) -> None:
        """Ten fast restarts and three immediate ones, interleaved (the soak)."""
        modes = ["fast"] * 10 + ["immediate"] * 3
        random.Random(7).shuffle(modes)
        await restarts_under_load(settings, restart_postgres, modes)
