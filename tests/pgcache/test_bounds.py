"""A bounded table: max_entries, max_bytes and max_age_seconds; oldest-written rows go first,
evictions reach every instance, trimmers never wait for each other, reads touch nothing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from support.caches import eventually, sql

from pgcache import CacheSettings, PostgresCache, _sweeper


async def rows(settings: CacheSettings) -> int:
    found = await sql(settings.dsn, f'SELECT count(*) FROM "{settings.schema_prefix}'
                      'pgcache_entries"')
    return int(found[0][0])


async def fill(cache: PostgresCache, first: int, last: int, value: bytes = b"v") -> None:
    """Write keys k<first>..k<last-1>, in order, 100 per statement."""
    for start in range(first, last, 100):
        await cache.set_many({f"k{i}": value for i in range(start, min(start + 100, last))})


class TestMaxEntries:
    async def test_oldest_written_rows_go_first(self, settings: CacheSettings) -> None:
        """3000 keys into a 1000-entry table: a trim leaves 900, the newest ones."""
        bounded = replace(settings, max_entries=1000)
        async with PostgresCache(bounded) as cache:
            await fill(cache, 0, 3000)
            await cache.trim()
            assert 850 <= await rows(settings) <= 1000
            survivors = await cache.get_many([f"k{i}" for i in range(3000)])
            assert all(f"k{i}" in survivors for i in range(2200, 3000))
            assert not any(f"k{i}" in survivors for i in range(0, 1800))
            # Rewriting an old key makes it new again: it survives the next trim.
            await cache.set("k2100", b"fresh")
            await fill(cache, 3000, 3800)
            await cache.trim()
            assert await cache.get("k2100") == b"fresh"
            assert cache.stats.trimmed >= 2000

    async def test_a_round_larger_than_a_statement_deletes_all_of_its_excess(
            self, settings: CacheSettings, monkeypatch: pytest.MonkeyPatch) -> None:
        """With 150 rows per statement, each round takes several statements, and the rounds
        still leave the newest rows."""
        monkeypatch.setattr(_sweeper, "TRIM_BATCH", 150)
        async with PostgresCache(replace(settings, max_entries=1000)) as cache:
            await fill(cache, 0, 3000)
            await cache.trim()
            assert cache.stats.trimmed >= 2000 and 850 <= await rows(settings) <= 1000
            survivors = await cache.get_many([f"k{i}" for i in range(3000)])
            assert all(f"k{i}" in survivors for i in range(2200, 3000))
            assert not any(f"k{i}" in survivors for i in range(0, 1800))

    async def test_the_sweeper_keeps_the_table_bounded_while_writing(
            self, settings: CacheSettings) -> None:
        """Without anyone calling trim(), the table stays near the bound (without the sweeper
        it would reach 40,000 rows)."""
        bounded = replace(settings, max_entries=5000, sweep_interval_seconds=0)
        async with PostgresCache(bounded) as cache:
            peak = 0
            for start in range(0, 40_000, 500):
                await fill(cache, start, start + 500)
                peak = max(peak, await rows(settings))
            # The sweeper runs beside the writer: on a quiet host it keeps within 10% (5,500);
            # a loaded one lets a batch or three of 500 rows through before it catches up.
            assert peak <= 6500, peak
            assert cache.stats.trimmed >= 40_000 - peak

    async def test_evictions_reach_every_instance(self, settings: CacheSettings) -> None:
        """B's copies of trimmed keys are dropped, and B's reads in flight do not bring them
        back; copies of surviving keys stay."""
        bounded = replace(settings, max_entries=1000)
        async with PostgresCache(bounded) as a, PostgresCache(settings) as b:
            await fill(a, 0, 900)  # within the bound: nothing is trimmed yet
            held = await b.get_many(["k0", "k1", "k899"])
            assert len(held) == 3 and b.get_local("k0") == b"v"
            await fill(a, 900, 1500)  # the sweeper trims the oldest
            await a.trim()
            await eventually(lambda: b.get_local("k0") is None)
            assert b.get_local("k1") is None and b.get_local("k899") == b"v"
            assert await b.get("k0") is None
            assert await a.get("k0") is None

    async def test_trimmers_never_wait_for_each_other_or_block_writers(
            self, settings: CacheSettings) -> None:
        """Two instances trimming at once: one trims, the other skips at once; a write of a
        key being trimmed goes through."""
        bounded = replace(settings, max_entries=1000, sweep_batch_size=200)
        async with PostgresCache(settings) as unbounded:
            await fill(unbounded, 0, 20_000)
        async with PostgresCache(bounded) as a, PostgresCache(bounded) as b:
            started = time.monotonic()
            trims = asyncio.gather(a.trim(), b.trim())
            await asyncio.sleep(0.01)
            write_started = time.monotonic()
            await b.set("k5", b"rewritten")
            write_took = time.monotonic() - write_started
            done = sorted(await trims)
            # One round trims about 19 000 rows (to 90% of the bound; the cutoff comes from a
            # sample, so give or take), the other found the lock taken or nothing to do.
            assert done[0] == 0 and done[1] >= 15_000, done
            assert write_took < 1.0, write_took
            assert time.monotonic() - started < 30
            assert await a.get("k5") == b"rewritten"


class TestMaxBytesAndAge:
    async def test_max_bytes_bounds_the_estimated_size(self, settings: CacheSettings) -> None:
        """1 kB values into a 300 kB table: the stored key and value bytes plus row overhead
        end within the bound."""
        bounded = replace(settings, max_bytes=300_000)
        async with PostgresCache(bounded) as cache:
            await fill(cache, 0, 1000, value=bytes(range(256)) * 4)
            await cache.trim()
            found = await sql(settings.dsn, "SELECT count(*), sum(pg_column_size(key) + "
                              f'pg_column_size(value) + 48) FROM "{cache.table_name}"')
            count, size = found[0]
            assert 0 < count < 1000 and size <= 300_000

    async def test_max_age_caps_every_ttl(self, settings: CacheSettings) -> None:
        """No row lives longer than max_age_seconds after it was written, whatever its TTL."""
        aged = replace(settings, max_age_seconds=1.0, default_ttl_seconds=None)
        async with PostgresCache(aged) as cache:
            await cache.set("forever", b"v")
            await cache.set("long", b"v", ttl_seconds=3600)
            await cache.set("short", b"v", ttl_seconds=0.5)
            found = await sql(settings.dsn, "SELECT key, extract(epoch FROM expires_at - "
                              f'now()) FROM "{cache.table_name}" ORDER BY key')
            remaining = {bytes(r[0]).decode(): r[1] for r in found}
            assert remaining["forever"] <= 1.0 and remaining["long"] <= 1.0
            assert remaining["short"] <= 0.5


class TestReadsTouchNothing:
    async def test_reads_never_write(self, settings: CacheSettings) -> None:
        """Thousands of reads of a row leave it exactly as written (same tuple, same
        version): recency is never tracked on read."""
        bounded = replace(settings, max_entries=1000, local_max_entries=0)
        async with PostgresCache(bounded) as cache:
            await cache.set("hot", b"v")
            before = await sql(settings.dsn, f'SELECT xmin::text, ctid::text, version FROM '
                               f'"{cache.table_name}" WHERE key = $1', b"hot")
            for _ in range(200):
                await cache.get("hot")
                await cache.get_many(["hot"])
            after = await sql(settings.dsn, f'SELECT xmin::text, ctid::text, version FROM '
                              f'"{cache.table_name}" WHERE key = $1', b"hot")
            assert [tuple(r) for r in before] == [tuple(r) for r in after]
