"""The randomized soak (``make test-slow``): several instances in separate processes, random
latency on every route, every kind of write racing on a small keyspace; when all have
stopped, every copy an instance would serve equals the row."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import time
from dataclasses import asdict, replace
from typing import Any

import asyncpg
import pytest
from support.faultproxy import FaultProxy

from pgcache import CacheSettings, PgCacheError, PostgresCache

PROCESSES = 3
SECONDS = 20.0
KEYS = [f"k{i}" for i in range(40)] + [f"long-{i}-" + "x" * 300 for i in range(4)]
# The final round writes these too: each key's last pair of writes is a race, and the more
# keys, the more such races decide what is left (a few percent of them end reordered).
FINAL_KEYS = KEYS + [f"final-{i}" for i in range(200)]


async def _load(cache: PostgresCache, rng: random.Random, stop: float, name: str) -> int:
    n = 0
    while time.monotonic() < stop:
        key = rng.choice(KEYS)
        n += 1
        value = f"{name}:{n}".encode()
        roll = rng.random()
        try:
            if roll < 0.35:
                await cache.set(key, value)
            elif roll < 0.40:
                await cache.delete(key)
            elif roll < 0.45:
                await cache.set_many({key: value, rng.choice(KEYS): value})
            elif roll < 0.50:
                await cache.get_or_set(key, lambda v=value: v)
            elif roll < 0.60:
                await cache.get_many(rng.sample(KEYS, 4))
            else:
                await cache.get(key)
        except PgCacheError:
            pass
    return n


async def _instance(settings: dict[str, Any], seed: int, start: float,
                    barrier: Any) -> dict[str, Any]:
    base = CacheSettings(**settings)
    rng = random.Random(seed)
    async with FaultProxy.for_dsn(base.dsn) as pool_route, \
            FaultProxy.for_dsn(base.dsn) as listen_route:
        # Random latency on both routes, replies slower than notifications more often than
        # not: the ordering in which a write's own reply arrives after the invalidation of
        # a newer write (which waited on its row lock) is the common case, not a rarity.
        pool_route.delay(rng.uniform(0.001, 0.003), 0.001)
        listen_route.delay(rng.uniform(0.0, 0.001), 0.0005)
        # With a shared listener every process must take the same route to be one host's
        # instances: the relay's LISTEN goes direct.
        listener = base.dsn if base.shared_listener else listen_route.rewrite(base.dsn)
        tuned = replace(base, dsn=pool_route.rewrite(base.dsn), listener_dsn=listener,
                        max_pool_size=6)
        async with PostgresCache(tuned) as cache:
            stop = start + SECONDS
            # Few tasks per instance: most writes are then alone on the wire and carry their
            # own NOTIFY, which reaches the others at commit, ahead of slower replies.
            ops = await asyncio.gather(*(
                _load(cache, random.Random(rng.random()), stop, f"{seed}.{t}")
                for t in range(3)))
            # The last word on every key is a race: all instances write every key once, at
            # the same moment (a barrier per key), so each key's final writes collide on its
            # row lock.
            for key in FINAL_KEYS:
                await asyncio.to_thread(barrier.wait)
                with contextlib.suppress(PgCacheError):
                    await cache.set(key, f"final-{seed}".encode())
            await asyncio.to_thread(barrier.wait)  # nobody writes any more
            await asyncio.sleep(2 * base.local_lease_seconds + 1.0)
            conn = await asyncpg.connect(base.dsn)
            try:
                rows = {bytes(r[0]).decode(): bytes(r[1]) for r in await conn.fetch(
                    f'SELECT key, value FROM "{cache.table_name}" '
                    "WHERE expires_at IS NULL OR expires_at > now()")}
            finally:
                await conn.close()
            wrong = []
            served_count = 0
            lease = cache.stats.lease_valid
            for key in FINAL_KEYS:
                served = cache.get_local(key)
                if served is not None:
                    served_count += 1
                    if served != rows.get(key):
                        wrong.append((key[:20], served, rows.get(key)))
            stats = cache.stats.as_dict()
            # Nobody closes before everybody checked: a closing instance may be the relay.
            await asyncio.to_thread(barrier.wait)
            return {"ops": sum(ops), "wrong": wrong, "served": served_count, "lease": lease,
                    "stats": stats}


def _child(settings: dict[str, Any], seed: int, start: float, barrier: Any,
           results: Any) -> None:
    results.put(asyncio.run(_instance(settings, seed, start, barrier)))


@pytest.mark.slow
class TestSoak:
    @pytest.mark.parametrize("shared", [False, True], ids=["own listeners", "shared listener"])
    async def test_every_served_copy_equals_the_row_after_random_races(
            self, settings: CacheSettings, shared: bool) -> None:
        """Three processes, 1-3 ms on every route, 20 s of racing writes of every kind."""
        settings = replace(settings, shared_listener=shared)
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(PROCESSES)
        results = context.Queue()
        fields = {k: v for k, v in asdict(settings).items() if k != "serializer"}
        start = time.monotonic() + 3.0  # processes start and connect meanwhile
        children = [context.Process(target=_child, args=(fields, seed, start, barrier,
                                                        results))
                    for seed in range(PROCESSES)]
        for child in children:
            child.start()
        try:
            outcomes = [await asyncio.to_thread(results.get, True, SECONDS + 60)
                        for _ in children]
        finally:
            for child in children:
                child.join(10)
                if child.is_alive():
                    child.kill()
        assert all(child.exitcode == 0 for child in children)
        ops = sum(o["ops"] for o in outcomes)
        served = sum(o["served"] for o in outcomes)
        wrong = [w for o in outcomes for w in o["wrong"]]
        print(f"\nsoak: {ops} operations, {served} copies served at the end, "
              f"{len(wrong)} wrong")
        # The check means something only if the instances do serve copies at the end.
        assert ops > 1000 and all(o["lease"] and o["served"] > 0 for o in outcomes)
        assert not wrong, wrong[:5]
