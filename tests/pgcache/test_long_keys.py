"""Keys of any length up to MAX_KEY_BYTES: random, incompressible keys of every length class
work on every path and invalidate across instances; a hash collision is never another key's
value."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from support.caches import Inbox, eventually, listening, sql

from pgcache import (
    MAX_KEY_BYTES,
    CacheArgumentError,
    CacheServerError,
    CacheSettings,
    PostgresCache,
)
from pgcache._keys import key_hash

# Lengths in bytes of UTF-8: 1 B, 300 B, 3 kB (over the btree limit of 2704), 100 kB, 1 MB.
LENGTH_CLASSES = [1, 300, 3_000, 100_000, 1_000_000]


def random_key(rng: random.Random, size: int) -> str:
    """A key of about ``size`` bytes of UTF-8 drawn from all of Unicode (lone surrogates
    included): nothing in it repeats, so nothing can compress it."""
    chars: list[str] = []
    length = 0
    while length < size:
        width = rng.choice([1, 1, 2, 3, 4])
        if width == 1:
            ch = chr(rng.randrange(0x00, 0x80))
        elif width == 2:
            ch = chr(rng.randrange(0x80, 0x800))
        elif width == 3:
            ch = chr(rng.randrange(0x800, 0x10000))  # lone surrogates included
        else:
            ch = chr(rng.randrange(0x10000, 0x110000))
        chars.append(ch)
        length += width
    key = "".join(chars)
    while len(key.encode("utf-8", "surrogatepass")) > size:
        key = key[:-1]
    return key


async def read_kept_locally(cache: PostgresCache, key: str, value: bytes,
                            within: float = 30.0) -> None:
    """Every read of ``key`` gives ``value``, and one soon leaves a local copy. Not the
    first read necessarily: a copy is installed only while the instance's lease holds, and
    on a loaded machine the lease lapses now and then when its proofs arrive late."""
    deadline = time.monotonic() + within
    while True:
        assert await cache.get(key) == value
        if cache.get_local(key) == value:
            return
        assert time.monotonic() < deadline, "no read left a local copy"
        await asyncio.sleep(0.05)


@pytest.fixture
async def pair(settings: CacheSettings) -> AsyncIterator[tuple[PostgresCache, PostgresCache,
                                                                Inbox]]:
    a = PostgresCache(settings)
    b, inbox = listening(settings)
    async with a, b:
        yield a, b, inbox


class TestAnyKey:
    @hsettings(max_examples=12, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(size=st.sampled_from(LENGTH_CLASSES), seed=st.integers(0, 2**32))
    @example(size=1, seed=1).via("every length class, every run")
    @example(size=300, seed=2).via("every length class, every run")
    @example(size=3_000, seed=3).via("every length class, every run")
    @example(size=100_000, seed=4).via("every length class, every run")
    @example(size=1_000_000, seed=5).via("every length class, every run")
    async def test_every_path_works_across_instances(
            self, pair: tuple[PostgresCache, PostgresCache, Inbox], size: int,
            seed: int) -> None:
        """set/get/get_many/set_many/get_or_set/delete, and B's copy is invalidated by A."""
        a, b, inbox = pair
        event(f"{size} bytes")
        rng = random.Random(seed)
        key, other = random_key(rng, size), random_key(rng, size)
        value = rng.randbytes(64)
        version = await a.set(key, value)
        await read_kept_locally(b, key, value)
        newer = await a.set(key, b"second")
        await inbox.wait_for((key, newer))
        assert b.get_local(key) is None and await b.get(key) == b"second"
        versions = await a.set_many({key: b"third", other: b"other"})
        assert versions[key] > newer > version
        await inbox.wait_for((key, versions[key]))
        assert await b.get_many([key, other, "absent"]) == {key: b"third", other: b"other"}
        assert await a.delete(key) is True
        await a.delete(other)
        await eventually(lambda: b.get_local(key) is None)  # the delete's invalidation
        assert await b.get(key) is None
        assert await b.get_or_set(key, lambda: b"loaded") == b"loaded"
        assert await a.get(key) == b"loaded"
        await a.delete(key)

    async def test_limit_is_checked_before_any_io(self, settings: CacheSettings) -> None:
        """One byte over MAX_KEY_BYTES is refused with the limit named, on every path."""
        too_long = "x" * (MAX_KEY_BYTES + 1)
        just_fits = "y" * MAX_KEY_BYTES
        async with PostgresCache(settings) as cache:
            for call in (cache.get(too_long), cache.set(too_long, b"v"),
                         cache.delete(too_long), cache.get_many([too_long]),
                         cache.set_many({too_long: b"v"}),
                         cache.get_or_set(too_long, lambda: b"v")):
                with pytest.raises(CacheArgumentError, match=str(MAX_KEY_BYTES)):
                    await call
            await cache.set(just_fits, b"fits")
            assert await cache.get(just_fits) == b"fits"


class TestCollisions:
    async def test_a_colliding_row_is_never_another_keys_value(
            self, settings: CacheSettings) -> None:
        """A row stored under K1's hash but holding key K2 (a collision, forged in SQL) reads
        as a miss for K1, is never overwritten by K1's write, and survives K1's delete."""
        async with PostgresCache(settings) as cache:
            await cache.set("seed", b"")
            await sql(settings.dsn, f'INSERT INTO "{cache.table_name}" '
                      "(key_hash, key, value, kind, version) VALUES ($1, $2, $3, 0, 1)",
                      key_hash(b"K1"), b"K2", b"K2's value")
            assert await cache.get("K1") is None
            assert await cache.get_many(["K1"]) == {}
            with pytest.raises(CacheServerError, match="same 16-byte hash"):
                await cache.set("K1", b"mine")
            with pytest.raises(CacheServerError, match="same 16-byte hash"):
                await cache.set_many({"K1": b"mine", "fine": b"ok"})
            assert await cache.get("fine") == b"ok"
            assert await cache.delete("K1") is False
            rows = await sql(settings.dsn, f'SELECT key, value FROM "{cache.table_name}" '
                             "WHERE key_hash = $1", key_hash(b"K1"))
            assert [(bytes(r[0]), bytes(r[1])) for r in rows] == [(b"K2", b"K2's value")]
