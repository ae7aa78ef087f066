"""Code written the way postgres-cache 0.1.1's users write it, run against pgcache.

Everything below is 0.1.1 usage (its names, its settings, its exceptions); the one line that
differs is the import: ``from postgres_cache import ...`` became ``from pgcache import ...``.
The deliberate differences (README, "Migrating from postgres-cache 0.1.1") are tested at the
end, separately.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.caches import eventually, sql, sql_script, unique_name, unused_port
from support.repo import ROOT

from pgcache import (  # was: from postgres_cache import (
    Cache,
    CacheSettings,
    JsonSerializer,
    NullCache,
    PostgresCache,
    Serializer,
    apply_migrations,
    apply_migrations_sync,
    init_postgres_cache_db,
    init_postgres_cache_db_sync,
    schema_is_current,
    schema_is_current_sync,
    schema_version,
    schema_version_sync,
)


class UpperJson:
    """A user's own serializer, written against 0.1.1's Serializer protocol."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).upper().encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data.decode().lower())


def legacy_settings(dsn: str) -> CacheSettings:
    """Settings exactly as a 0.1.1 user builds them: the DSN by position, 0.1.1's fields."""
    prefix = unique_name("c")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return CacheSettings(dsn, notify_channel=f"{prefix}events", disable_notiffy=False,
                             schema_prefix=prefix, min_pool_size=1, max_pool_size=5,
                             local_max_entries=128, default_ttl_seconds=60.0,
                             notification_queue_size=2048, lock_timeout_seconds=5.0,
                             fetch_timeout_seconds=2.0, cleanup_batch_size=500)


@pytest.fixture
async def settings(postgres_dsn: str) -> AsyncIterator[CacheSettings]:
    value = legacy_settings(postgres_dsn)
    await init_postgres_cache_db(value)
    yield value
    await PostgresCache.drop_db(value)


async def use_any_cache(cache: Cache, key: str) -> Any:
    """Application code typed against the Cache protocol."""
    return await cache.get_or_set(key, lambda: {"computed": key})


class TestLegacyUsage:
    @pytest.mark.filterwarnings("ignore:PostgresCache\\(settings, serializer=:DeprecationWarning")
    async def test_cache_round_trip_with_a_custom_serializer(
            self, settings: CacheSettings) -> None:
        """The 0.1.1 life cycle: connect, set, get, invalidate, get_or_set, cleanup, close."""
        async with PostgresCache(settings, serializer=UpperJson()) as cache:
            assert isinstance(cache, Cache)
            await cache.set("user:1", {"name": "ada"}, ttl_seconds=30)
            assert await cache.get("user:1") == {"name": "ada"}
            await cache.invalidate("user:1")
            assert await cache.get("user:1") is None
            await cache.delete("never-there")
            assert await use_any_cache(cache, "k") == {"computed": "k"}
            assert await cache.get_or_set("k", lambda: "not called") == {"computed": "k"}
            removed = await cache.cleanup_expired()
            assert isinstance(removed, int)

    async def test_two_clients_invalidate_each_other(self, settings: CacheSettings) -> None:
        """A write through one client evicts the other's local copy."""
        async with PostgresCache(settings) as a, PostgresCache(settings) as b:
            await a.set("shared", 1)
            assert await b.get("shared") == 1
            await a.set("shared", 2)
            for _ in range(500):
                if await b.get("shared") == 2:
                    break
                await asyncio.sleep(0.01)
            assert await b.get("shared") == 2

    async def test_migration_helpers(self, postgres_dsn: str) -> None:
        """apply_migrations, schema_version and schema_is_current, async and sync."""
        fresh = legacy_settings(postgres_dsn)
        assert await schema_version(fresh) == 0
        assert not await schema_is_current(fresh)
        assert await apply_migrations(fresh, upto_version=1) == 1
        assert not await schema_is_current(fresh)
        version = await apply_migrations(fresh)
        assert await schema_is_current(fresh) and await schema_version(fresh) == version
        other = legacy_settings(postgres_dsn)
        await asyncio.to_thread(init_postgres_cache_db_sync, other)
        assert await asyncio.to_thread(schema_is_current_sync, other)
        assert await asyncio.to_thread(schema_version_sync, other) == version
        assert await asyncio.to_thread(apply_migrations_sync, other) == version
        for done in (fresh, other):
            await PostgresCache.drop_db(done)

    async def test_the_exceptions_legacy_code_catches(self, settings: CacheSettings) -> None:
        """RuntimeError before connect(), ValueError for bad settings, OSError when the
        server cannot be reached."""
        cache = PostgresCache(settings)
        with pytest.raises(RuntimeError):
            await cache.get("k")
        with pytest.raises(ValueError):
            CacheSettings("")
        with pytest.raises(ValueError):
            CacheSettings(settings.dsn, schema_prefix="bad prefix!")
        unreachable = CacheSettings(f"postgresql://u:p@127.0.0.1:{unused_port()}/db",
                                    connect_timeout=2)
        with pytest.raises(OSError):
            async with PostgresCache(unreachable):
                pass

    async def test_null_cache(self) -> None:
        """NullCache stores nothing and always runs the loader."""
        calls = 0

        def loader() -> int:
            nonlocal calls
            calls += 1
            return calls

        async with NullCache() as cache:
            assert isinstance(cache, Cache)
            await cache.set("k", 1)
            assert await cache.get("k") is None
            assert await use_any_cache(cache, "k") == {"computed": "k"}
            assert [await cache.get_or_set("k", loader) for _ in range(2)] == [1, 2]
            assert await cache.cleanup_expired() == 0

    def test_serializers_follow_the_protocol(self) -> None:
        """JsonSerializer and a user's own class are both Serializers."""
        assert isinstance(JsonSerializer(), Serializer) and isinstance(UpperJson(), Serializer)


class TestWhatChangedAndSaysSo:
    def test_legacy_settings_warn_and_map(self, postgres_dsn: str) -> None:
        """Each 0.1.1-only setting warns with what to use; the mapped ones take effect."""
        with pytest.warns(DeprecationWarning) as caught:
            settings = CacheSettings(postgres_dsn, disable_notiffy=True, cleanup_batch_size=7,
                                     notification_queue_size=10, fetch_timeout_seconds=1.0)
        messages = " | ".join(str(w.message) for w in caught)
        for advice in ("use disable_notify", "use sweep_batch_size", "no queue",
                       "use command_timeout"):
            assert advice in messages
        assert settings.disable_notify and settings.sweep_batch_size == 7

    def test_serializer_argument_warns(self, postgres_dsn: str) -> None:
        """PostgresCache(settings, serializer=...) works and points at the setting."""
        with pytest.warns(DeprecationWarning, match="CacheSettings.serializer"):
            cache = PostgresCache(CacheSettings(postgres_dsn), serializer=UpperJson())
        assert isinstance(cache.settings.serializer, UpperJson)

    async def test_deliberate_differences(self, settings: CacheSettings) -> None:
        """ttl_seconds=0 is refused, None is not stored, set returns the version."""
        async with PostgresCache(settings) as cache:
            with pytest.raises(ValueError, match="ttl_seconds"):
                await cache.set("k", 1, ttl_seconds=0)
            with pytest.raises(ValueError, match="None"):
                await cache.set("k", None)
            assert isinstance(await cache.set("k", 1), int)

    async def test_old_instances_notifications_are_counted_and_logged_once(
            self, settings: CacheSettings, caplog: pytest.LogCaptureFixture) -> None:
        """During a rolling deploy 0.1.1 instances notify on the same channel in their own
        format: pgcache counts those notifications and logs the first one only."""
        async with PostgresCache(settings) as cache:
            with caplog.at_level("WARNING", logger="pgcache"):
                for version in range(1, 6):
                    await sql(settings.dsn, "SELECT pg_notify($1, $2)", settings.notify_channel,
                              f"u{version}\x1fuser:{version}")
                await eventually(lambda: cache.stats.foreign_notifications == 5)
            logged = [r for r in caplog.records if "not its own" in r.getMessage()]
            assert len(logged) == 1

    async def test_the_documented_cleanup_drops_the_old_objects(self, postgres_dsn: str) -> None:
        """The README's SQL for dropping 0.1.1's objects runs and leaves none of them."""
        readme = (ROOT / "pgcache" / "README.md").read_text()
        section = readme[readme.index("## Migrating from postgres-cache 0.1.1"):]
        cleanup = section[section.index("```sql") + 6:section.index("```", section.index(
            "```sql") + 6)]
        prefix = unique_name("old")
        # Stand-ins with 0.1.1's names and shapes (table, trigger, functions).
        await sql_script(postgres_dsn, f"""
            CREATE TABLE {prefix}cache_entries (cache_key text PRIMARY KEY, value bytea);
            CREATE TABLE {prefix}cache_schema (id integer PRIMARY KEY, version integer);
            CREATE FUNCTION {prefix}cache_set_updated_at() RETURNS trigger
                LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
            CREATE FUNCTION {prefix}cache_broadcast_change() RETURNS trigger
                LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
            CREATE FUNCTION {prefix}cache_cleanup_expired(integer) RETURNS integer
                LANGUAGE sql AS $$ SELECT 0 $$;
            CREATE TRIGGER {prefix}cache_broadcast_change_trigger AFTER INSERT
                ON {prefix}cache_entries FOR EACH ROW
                EXECUTE FUNCTION {prefix}cache_broadcast_change();""")
        prefixed = cleanup
        for name in ("cache_entries", "cache_schema", "cache_set_updated_at",
                     "cache_broadcast_change", "cache_cleanup_expired"):
            prefixed = prefixed.replace(f" {name}", f" {prefix}{name}")
        await sql_script(postgres_dsn, prefixed)
        left = await sql(postgres_dsn, "SELECT count(*) FROM pg_class WHERE relname LIKE $1",
                         f"{prefix}%")
        functions = await sql(postgres_dsn, "SELECT count(*) FROM pg_proc WHERE proname "
                              "LIKE $1", f"{prefix}%")
        assert (left[0][0], functions[0][0]) == (0, 0)
