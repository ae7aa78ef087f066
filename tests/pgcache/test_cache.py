"""PostgresCache against a real PostgreSQL: storage, values, instance shape, write-through,
errors and shared write statements."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace

import pytest
from support.caches import sql, unique_name, unused_port

from pgcache import (
    CacheArgumentError,
    CacheConnectionError,
    CacheServerError,
    CacheSettings,
    CacheStateError,
    PgCacheError,
    PostgresCache,
)


class TestStorage:
    async def test_table_is_unlogged_by_default(self, settings: CacheSettings) -> None:
        """The entries table is UNLOGGED unless logged=True."""
        rows = await sql(settings.dsn, "SELECT relpersistence::text FROM pg_class "
                         "WHERE relname = $1", f"{settings.schema_prefix}pgcache_entries")
        assert rows[0][0] == "u"

    async def test_logged_true_opts_in_and_init_db_is_idempotent(
            self, settings: CacheSettings) -> None:
        """init_db with logged=True makes the table logged; reruns change nothing else."""
        logged = replace(settings, logged=True)
        assert await PostgresCache.init_db(logged) == 2
        assert await PostgresCache.init_db(logged) == 2
        rows = await sql(settings.dsn, "SELECT relpersistence::text FROM pg_class "
                         "WHERE relname = $1", f"{settings.schema_prefix}pgcache_entries")
        assert rows[0][0] == "p"
        versions = await sql(settings.dsn, f'SELECT version FROM "{settings.schema_prefix}'
                                       'pgcache_schema_version"')
        assert sorted(r[0] for r in versions) == [1, 2]

    async def test_expired_rows_are_never_returned(self, settings: CacheSettings) -> None:
        """A row past expires_at reads as a miss, from every read path."""
        async with PostgresCache(replace(settings, local_max_entries=0)) as cache:
            await cache.set("gone", b"x")
            await cache.set("kept", b"y")
            await sql(settings.dsn, f'UPDATE "{cache.table_name}" SET expires_at = now() - '
                                "interval '1 second' WHERE key = $1", b"gone")
            assert await cache.get("gone") is None
            assert await cache.get_many(["gone", "kept"]) == {"kept": b"y"}

    async def test_local_copy_lives_no_longer_than_the_row(self, settings: CacheSettings) -> None:
        """A local copy's deadline is bounded by the row's remaining TTL."""
        async with PostgresCache(settings) as a, PostgresCache(settings) as b:
            await a.set("short", b"x", ttl_seconds=2.0)  # local_ttl_seconds is 60
            assert await b.get("short") == b"x"
            assert b._local is not None
            assert b._local.data["short"].expires - time.monotonic() <= 2.0

    async def test_cleanup_expired_sweeps_in_bounded_batches(
            self, settings: CacheSettings) -> None:
        """All expired rows go, batch by batch; live rows stay."""
        async with PostgresCache(settings) as cache:
            await cache.set_many({f"old{i}": b"o" for i in range(25)})
            await cache.set_many({f"new{i}": b"n" for i in range(5)})
            await sql(settings.dsn, f'UPDATE "{cache.table_name}" SET expires_at = now() - '
                                "interval '1 second' WHERE key::text LIKE '%6f6c64%'")
            assert await cache.cleanup_expired(batch_size=10) == 25
            assert await cache.cleanup_expired(batch_size=10) == 0
            rows = await sql(settings.dsn, f'SELECT count(*) FROM "{cache.table_name}"')
            assert rows[0][0] == 5


class TestValues:
    @pytest.mark.parametrize("key", [
        "", "plain", "nul\x00inside", "lone \ud800 surrogate", "emoji 🧪", "tab\tand\nnewline",
        "'; DROP TABLE pgcache_entries; --", "é" * 5000,
    ])
    async def test_any_unicode_key_round_trips(self, settings: CacheSettings, key: str) -> None:
        """Every str is a valid key and reaches SQL only as a parameter."""
        async with PostgresCache(replace(settings, local_max_entries=0)) as cache:
            await cache.set(key, b"v")
            assert await cache.get(key) == b"v"
            assert await cache.delete(key) is True
            assert await cache.get(key) is None

    async def test_bytes_pass_through_and_other_values_are_serialized(
            self, settings: CacheSettings) -> None:
        """bytes come back as stored; str and JSON values come back equal."""
        async with PostgresCache(replace(settings, local_max_entries=0)) as cache:
            for key, value in [("b", b"\x00\xff raw"), ("s", "text ü"), ("j", {"a": [1, 2.5]}),
                               ("n", 7)]:
                await cache.set(key, value)
                assert await cache.get(key) == value
            with pytest.raises(CacheArgumentError, match="None"):
                await cache.set("none", None)

    async def test_set_returns_increasing_versions(self, settings: CacheSettings) -> None:
        """Every write returns a newer version than the last."""
        async with PostgresCache(settings) as cache:
            v1 = await cache.set("k", b"1")
            v2 = await cache.set("k", b"2")
            many = await cache.set_many({"k": b"3", "other": b"4"})
            assert v1 < v2 < many["k"] and set(many) == {"k", "other"}

    async def test_get_many_mixes_local_and_remote(self, settings: CacheSettings) -> None:
        """get_many serves local copies and fetches the rest in one statement."""
        async with PostgresCache(settings) as a, PostgresCache(settings) as b:
            await a.set_many({"x": b"1", "y": b"2"})
            assert await b.get("x") == b"1"
            assert await b.get_many(["x", "y", "z"]) == {"x": b"1", "y": b"2"}
            stats = b.stats
            assert (stats.local_hits, stats.remote_hits, stats.misses) == (1, 2, 1)
            assert await b.get("y") == b"2" and b.stats.local_hits == 2


class TestCompression:
    async def test_large_values_are_stored_compressed_and_read_back(
            self, settings: CacheSettings) -> None:
        """A compressible value past compress_min_bytes is stored compressed and reads back
        equal, through every path and instance; local copies hold it plain."""
        document = {"rows": [{"id": i, "name": f"user-{i}", "tags": ["a", "b"]}
                             for i in range(2000)]}
        blob = b"abcdefgh" * 8192
        async with PostgresCache(settings) as a, PostgresCache(settings) as b:
            await a.set("doc", document)
            await a.set_many({"blob": blob, "small": b"x" * 100})
            stored = await sql(settings.dsn, "SELECT key, kind, octet_length(value) FROM "
                               f'"{a.table_name}" ORDER BY key')
            sizes = {bytes(r[0]).decode(): (r[1], r[2]) for r in stored}
            assert sizes["doc"][0] & 2 and sizes["doc"][1] < len(str(document)) / 5
            assert sizes["blob"][0] & 2 and sizes["blob"][1] < len(blob) / 20
            assert sizes["small"] == (0, 100)
            assert await b.get("doc") == document and b.get_local("doc") == document
            assert await b.get_many(["blob", "small"]) == {"blob": blob, "small": b"x" * 100}
            assert b.get_local("blob") == blob and a.get_local("blob") == blob
            assert b._local is not None and not b._local.data["blob"].kind & 2

    async def test_incompressible_and_switched_off(self, settings: CacheSettings) -> None:
        """Random bytes are stored as they are; compress_min_bytes=None never compresses."""
        noise = os.urandom(100_000)
        text = b"compressible " * 1000
        async with PostgresCache(settings) as on, \
                PostgresCache(replace(settings, compress_min_bytes=None)) as off:
            await on.set("noise", noise)
            await off.set("text", text)
            stored = await sql(settings.dsn, "SELECT key, kind, octet_length(value) FROM "
                               f'"{on.table_name}" ORDER BY key')
            assert [(bytes(r[0]), r[1], r[2]) for r in stored] == [
                (b"noise", 0, 100_000), (b"text", 0, len(text))]
            assert await off.get("noise") == noise and await on.get("text") == text


class TestInstanceShape:
    async def _apps(self, settings: CacheSettings) -> dict[str, int]:
        rows = await sql(settings.dsn, "SELECT application_name, count(*) FROM pg_stat_activity "
                                   "WHERE application_name LIKE $1 GROUP BY 1",
                         f"{settings.application_name}%")
        return {r[0]: r[1] for r in rows}

    async def test_one_pool_one_listener_one_notifier(self, settings: CacheSettings) -> None:
        """An instance holds its pool plus one dedicated listener and one notifier connection."""
        async with PostgresCache(replace(settings, min_pool_size=2)) as cache:
            await cache.set("k", b"v")
            assert await cache.wait_notified()
            apps = await self._apps(settings)
            name = settings.application_name
            assert apps == {name: 2, f"{name}-listen": 1, f"{name}-notify": 1}
            assert cache.stats.listener_connected and cache.stats.lease_valid

    async def test_no_local_cache_means_no_listener(self, settings: CacheSettings) -> None:
        """local_max_entries=0: every read goes to PostgreSQL, nothing listens, writes notify."""
        async with PostgresCache(replace(settings, local_max_entries=0)) as cache:
            await cache.set("k", b"v")
            assert await cache.get("k") == b"v"
            assert await cache.get("k") == b"v"
            assert cache.stats.local_hits == 0 and cache.stats.remote_hits == 2
            assert cache.stats.notifications_sent == 1
            name = settings.application_name
            assert f"{name}-listen" not in await self._apps(settings)

    async def test_disable_notify_keeps_copies_until_local_ttl(
            self, settings: CacheSettings) -> None:
        """Without LISTEN/NOTIFY a copy lives until the local TTL, then is refetched."""
        quiet = replace(settings, disable_notify=True, local_ttl_seconds=1.0)
        async with PostgresCache(quiet) as a, PostgresCache(quiet) as b:
            await a.set("k", b"old")
            assert await b.get("k") == b"old"
            await a.set("k", b"new")
            assert await b.get("k") == b"old"  # stale by design, bounded by the local TTL
            assert f"{settings.application_name}-listen" not in await self._apps(settings)
            await asyncio.sleep(1.05)  # let the local TTL pass: that is the behaviour tested
            assert await b.get("k") == b"new"
            assert a.stats.notifications_sent == 0

    async def test_pool_is_bounded_and_callers_wait_their_turn(
            self, settings: CacheSettings) -> None:
        """With one pooled connection, 40 concurrent operations all complete on it."""
        async with PostgresCache(replace(settings, max_pool_size=1,
                                         local_max_entries=0)) as cache:
            await asyncio.gather(*(cache.set(f"k{i}", b"v") for i in range(20)))
            values = await asyncio.gather(*(cache.get(f"k{i}") for i in range(20)))
            assert values == [b"v"] * 20
            assert cache._parts is not None and cache._parts.db is not None
            assert cache._parts.db.pool.size == 1

    async def test_local_cache_is_bounded(self, settings: CacheSettings) -> None:
        """Never more than local_max_entries copies; the least recently used goes first."""
        async with PostgresCache(replace(settings, local_max_entries=3)) as cache:
            for i in range(5):
                await cache.set(f"k{i}", b"v")
            assert cache.stats.local_size == 3
            assert await cache.get("k4") == b"v" and await cache.get("k0") == b"v"
            assert cache.stats.local_hits == 1 and cache.stats.remote_hits == 1


class TestWriteThrough:
    async def test_get_local_answers_from_the_local_copy_only(
            self, settings: CacheSettings) -> None:
        """get_local: the local copy's value or None, never a query; hits count as local."""
        async with PostgresCache(settings) as a, PostgresCache(settings) as b:
            await a.set("k", {"n": 1})
            assert a.get_local("k") == {"n": 1}  # write-through, deserialized
            assert b.get_local("k") is None  # not held: get_local does not fetch
            assert b.stats.remote_hits == 0 and b.stats.misses == 0
            assert await b.get("k") == {"n": 1}
            assert b.get_local("k") == {"n": 1} and b.stats.local_hits == 1
        async with PostgresCache(replace(settings, local_max_entries=0)) as none:
            assert none.get_local("k") is None

    async def test_set_updates_own_copy_at_once(self, settings: CacheSettings) -> None:
        """After set, the writer's own read is a local hit of the new value."""
        async with PostgresCache(settings) as cache:
            await cache.set("k", b"1")
            await cache.set("k", b"2")
            assert await cache.get("k") == b"2"
            assert cache.stats.local_hits == 1 and cache.stats.remote_hits == 0

    async def test_delete_drops_own_copy(self, settings: CacheSettings) -> None:
        """After delete (or invalidate), the writer's read is a miss."""
        async with PostgresCache(settings) as cache:
            await cache.set("k", b"1")
            await cache.set("j", b"1")
            assert await cache.delete("k") is True
            assert await cache.invalidate("j") is True
            assert await cache.get("k") is None and await cache.get("j") is None
            assert cache.stats.misses == 2 and cache.stats.local_size == 0

    async def test_truncate_empties_table_and_every_local_cache(
            self, settings: CacheSettings) -> None:
        """truncate() empties the table and, via a notification, the other instances' copies."""
        async with PostgresCache(settings) as a, PostgresCache(settings) as b:
            flushed = asyncio.Event()
            b.add_invalidation_callback(lambda k, v: flushed.set() if k is None else None)
            await a.set("k", b"1")
            assert await b.get("k") == b"1"
            await a.truncate()
            await asyncio.wait_for(flushed.wait(), 5)
            assert b.stats.local_size == 0 and await b.get("k") is None
            assert await a.get("k") is None


class TestErrors:
    async def test_unreachable_server_fails_on_connect_with_address_and_hint(self) -> None:
        """Connecting to a port nobody listens on names the address and what to check."""
        port = unused_port()
        settings = CacheSettings(dsn=f"postgresql://u:secret@127.0.0.1:{port}/db",
                                 connect_timeout=2)
        cache = PostgresCache(settings)
        with pytest.raises(CacheConnectionError) as info:
            await cache.connect()
        assert info.value.address == f"127.0.0.1:{port}/db"
        assert "secret" not in str(info.value) and info.value.hint
        assert not cache.connected
        with pytest.raises(CacheConnectionError):
            await PostgresCache.init_db(settings)

    async def test_misuse_states_have_their_own_messages(self, settings: CacheSettings) -> None:
        """Use before connect and after close fail with "not connected" / "is closed"."""
        cache = PostgresCache(settings)
        with pytest.raises(CacheStateError, match="cache is not connected"):
            await cache.get("k")
        await cache.connect()
        await cache.close()
        with pytest.raises(CacheStateError, match="cache is closed"):
            await cache.set("k", b"v")
        with pytest.raises(CacheStateError, match="cache is closed"):
            await cache.connect()

    async def test_missing_schema_says_to_run_init_db(self, postgres_dsn: str) -> None:
        """Connecting before init_db fails with a hint naming init_db."""
        settings = CacheSettings(dsn=postgres_dsn, schema_prefix=unique_name())
        with pytest.raises(CacheStateError) as info:
            async with PostgresCache(settings):
                pass
        assert "init_db" in str(info.value)

    async def test_server_rejection_is_a_server_error(self, settings: CacheSettings) -> None:
        """A statement the server rejects raises CacheServerError with its SQLSTATE."""
        async with PostgresCache(settings) as cache:
            await sql(settings.dsn, f"""
                CREATE FUNCTION "{settings.schema_prefix}reject"() RETURNS trigger AS $$
                BEGIN RAISE EXCEPTION 'rejected' USING ERRCODE = 'P0001'; END $$
                LANGUAGE plpgsql""")
            await sql(settings.dsn, f'CREATE TRIGGER reject BEFORE INSERT ON "{cache.table_name}" '
                                f'FOR EACH ROW EXECUTE FUNCTION "{settings.schema_prefix}reject"()')
            with pytest.raises(CacheServerError) as info:
                await cache.set("k", b"v")
            assert info.value.sqlstate == "P0001" and isinstance(info.value, PgCacheError)
            assert await cache.get("k") is None  # the pool survived the error
            await sql(settings.dsn, f'DROP FUNCTION "{settings.schema_prefix}reject"() CASCADE')

    async def test_bad_arguments(self, settings: CacheSettings) -> None:
        """Non-str keys and non-positive TTLs are rejected before reaching the server."""
        async with PostgresCache(settings) as cache:
            with pytest.raises(CacheArgumentError):
                await cache.get(b"bytes-key")  # type: ignore[arg-type]
            with pytest.raises(CacheArgumentError):
                await cache.set("k", b"v", ttl_seconds=0)
            with pytest.raises(CacheArgumentError):
                PostgresCache("postgresql://x")  # type: ignore[arg-type]


class TestWriteBatching:
    async def test_concurrent_sets_share_statements(self, settings: CacheSettings) -> None:
        """Concurrent sets go out in fewer statements, each with its own version and value."""
        batched = replace(settings, write_batch_concurrency=1, max_pool_size=4)
        async with PostgresCache(batched) as cache:
            versions = await asyncio.gather(*(cache.set(f"k{i}", f"v{i}".encode())
                                              for i in range(32)))
            assert cache.stats.write_statements < 32 and cache.stats.sets == 32
            rows = await sql(settings.dsn, f'SELECT key, value, version FROM "{cache.table_name}"')
            stored = {bytes(r[0]).decode(): (bytes(r[1]), r[2]) for r in rows}
            assert stored == {f"k{i}": (f"v{i}".encode(), versions[i]) for i in range(32)}
            assert await cache.get("k7") == b"v7" and cache.stats.local_hits == 1

    @pytest.mark.parametrize("mixed", ["kinds", "ttls", "neither"])
    async def test_a_shared_statement_keeps_each_writes_kind_and_ttl(
            self, settings: CacheSettings, mixed: str) -> None:
        """Writes sharing a statement keep their own kind and TTL, whether the batch mixes
        them (one per row) or not (passed once)."""
        async with PostgresCache(replace(settings, write_batch_concurrency=1,
                                         max_pool_size=4, local_max_entries=0)) as cache:
            def value(i: int) -> object:
                if mixed != "kinds":
                    return f"v{i}".encode()
                return [f"v{i}".encode(), f"v{i}", {"v": i}][i % 3]

            def ttl(i: int) -> float:
                return [30.0, 60.0, 3600.0][i % 3] if mixed == "ttls" else 600.0

            await asyncio.gather(*(cache.set(f"k{i}", value(i), ttl_seconds=ttl(i))
                                   for i in range(30)))
            assert cache.stats.write_statements < 30
            assert await cache.get_many([f"k{i}" for i in range(30)]) == {
                f"k{i}": value(i) for i in range(30)}
            rows = await sql(settings.dsn, "SELECT key, extract(epoch FROM expires_at - now()) "
                             f'FROM "{cache.table_name}"')
            left = {bytes(r[0]).decode(): r[1] for r in rows}
            for i in range(30):
                assert ttl(i) - 10 < float(left[f"k{i}"]) <= ttl(i)

    async def test_same_key_twice_goes_in_separate_statements(
            self, settings: CacheSettings) -> None:
        """Two concurrent sets of one key both succeed; the higher version is what stays."""
        async with PostgresCache(replace(settings, write_batch_concurrency=1)) as cache:
            v1, v2, _ = await asyncio.gather(cache.set("k", b"1"), cache.set("k", b"2"),
                                             cache.set("j", b"3"))
            assert v1 != v2
            winner = b"2" if v2 > v1 else b"1"
            assert await cache.get("k") == winner
            rows = await sql(settings.dsn, f'SELECT value FROM "{cache.table_name}" WHERE key = $1',
                             b"k")
            assert rows[0][0] == winner

    async def test_rejected_write_fails_alone(self, settings: CacheSettings) -> None:
        """A write the server rejects inside a batch fails; its batch-mates are written."""
        async with PostgresCache(replace(settings, write_batch_concurrency=1)) as cache:
            prefix = settings.schema_prefix
            await sql(settings.dsn, f"""
                CREATE FUNCTION "{prefix}boom"() RETURNS trigger AS $$
                BEGIN RAISE EXCEPTION 'boom'; END $$ LANGUAGE plpgsql""")
            await sql(settings.dsn, f'CREATE TRIGGER boom BEFORE INSERT OR UPDATE ON '
                                f'"{cache.table_name}" FOR EACH ROW WHEN '
                                "(NEW.key = '\\x626f6f6d'::bytea) "
                                f'EXECUTE FUNCTION "{prefix}boom"()')
            results = await asyncio.gather(*(cache.set(k, b"v") for k in
                                             ["a", "b", "boom", "c", "d"]),
                                           return_exceptions=True)
            assert isinstance(results[2], CacheServerError)
            assert all(isinstance(r, int) for i, r in enumerate(results) if i != 2)
            assert await cache.get_many(["a", "b", "boom", "c", "d"]) == {
                k: b"v" for k in "abcd"}

    async def test_cancelled_leader_does_not_fail_the_others(
            self, settings: CacheSettings) -> None:
        """Cancelling the caller whose statement carries others' writes leaves theirs intact."""
        async with PostgresCache(replace(settings, write_batch_concurrency=1)) as cache:
            first = asyncio.ensure_future(cache.set("lead0", b"x"))
            await asyncio.sleep(0)  # first holds the only slot; the next ones queue
            queued = [asyncio.ensure_future(cache.set(f"q{i}", b"y")) for i in range(5)]
            await asyncio.sleep(0)
            await first
            # The oldest queued write now leads a batch carrying the other four.
            await asyncio.sleep(0)
            queued[0].cancel()
            results = await asyncio.gather(*queued, return_exceptions=True)
            assert all(isinstance(r, int) for r in results[1:])
            assert await cache.get_many([f"q{i}" for i in range(1, 5)]) == {
                f"q{i}": b"y" for i in range(1, 5)}


class TestAdmin:
    async def test_admin_calls_manage_the_table(self, settings: CacheSettings) -> None:
        """``cache.admin`` sweeps, trims and empties the table (the old names on the cache
        do the same), and says "not connected" before connect()."""
        cache = PostgresCache(replace(settings, max_entries=5))
        with pytest.raises(CacheStateError, match="not connected"):
            await cache.admin.truncate()
        async with cache:
            admin = cache.admin
            await cache.set_many({f"k{i}": b"v" for i in range(8)})
            await cache.set("short", b"v", ttl_seconds=0.05)
            await asyncio.sleep(0.2)
            assert await admin.cleanup_expired() == 1
            assert await admin.trim() >= 3
            assert await cache.trim() == 0
            await admin.truncate()
            assert await cache.get_many([f"k{i}" for i in range(8)]) == {}
            assert await admin.init_db(settings) == await PostgresCache.init_db(settings)
        with pytest.raises(CacheStateError, match="cache is closed"):
            await cache.admin.trim()
