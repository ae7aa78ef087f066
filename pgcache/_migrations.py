"""Applying the schema's migrations, and asking which version is in place.

The names are postgres-cache 0.1.1's (``apply_migrations``, ``init_postgres_cache_db``,
``schema_version``, ``schema_is_current`` and a ``_sync`` twin of each, for code outside an
event loop); ``PostgresCache.init_db`` is ``apply_migrations``. Migrations run in one
transaction, serialised by an advisory lock per ``schema_prefix``, so concurrent callers are
safe; the table's persistence follows ``settings.logged``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg

from ._connect import Connection, connect_once, server_error
from ._errors import CacheArgumentError, CacheStateError
from ._schema import SchemaNames, quote_ident
from ._settings import CacheSettings

T = TypeVar("T")


def _check(settings: object) -> CacheSettings:
    if not isinstance(settings, CacheSettings):
        raise CacheArgumentError(f"expected a CacheSettings, got {type(settings).__name__}")
    return settings


async def _current(conn: Connection, names: SchemaNames) -> int:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", names.version_table)
    if not exists:
        return 0
    return int(await conn.fetchval(names.select_schema_version))


async def apply_migrations(settings: CacheSettings, *, upto_version: int | None = None) -> int:
    """Apply every missing migration (up to ``upto_version``); the version now in place."""
    settings = _check(settings)
    names = SchemaNames.from_settings(settings)
    latest = names.latest_version
    if upto_version is not None and (isinstance(upto_version, bool)
                                     or not isinstance(upto_version, int)
                                     or not 1 <= upto_version <= latest):
        raise CacheArgumentError(
            f"upto_version must be a schema version from 1 to {latest}, got {upto_version!r}")
    target = latest if upto_version is None else upto_version
    conn = await connect_once(settings, settings.dsn, settings.application_name)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", names.migration_lock)
            await conn.execute(names.create_version_table)
            current = await conn.fetchval(names.select_schema_version)
            for migration in names.migrations(logged=settings.logged):
                if migration.version <= current or migration.version > target:
                    continue
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(names.insert_schema_version, migration.version,
                                   migration.description)
                current = migration.version
            persistence = await conn.fetchval(names.select_persistence, names.table)
            wanted = "p" if settings.logged else "u"
            if persistence is not None and persistence != wanted:
                mode = "LOGGED" if settings.logged else "UNLOGGED"
                await conn.execute(f"ALTER TABLE {quote_ident(names.table)} SET {mode}")
        return int(current)
    except asyncpg.PostgresError as exc:
        raise server_error(exc, "apply_migrations") from exc
    finally:
        await conn.close()


async def init_postgres_cache_db(settings: CacheSettings) -> None:
    """Create or upgrade the cache's tables (``apply_migrations`` to the latest version)."""
    await apply_migrations(settings)


async def schema_version(settings: CacheSettings) -> int:
    """The schema version in place (0: none)."""
    settings = _check(settings)
    names = SchemaNames.from_settings(settings)
    conn = await connect_once(settings, settings.dsn, settings.application_name)
    try:
        return await _current(conn, names)
    except asyncpg.PostgresError as exc:
        raise server_error(exc, "schema_version") from exc
    finally:
        await conn.close()


async def schema_is_current(settings: CacheSettings) -> bool:
    """Whether the schema is at the version this pgcache needs."""
    return await schema_version(settings) >= SchemaNames.from_settings(
        _check(settings)).latest_version


async def drop_schema(settings: CacheSettings) -> None:
    """Drop the cache's tables."""
    settings = _check(settings)
    names = SchemaNames.from_settings(settings)
    conn = await connect_once(settings, settings.dsn, settings.application_name)
    try:
        for statement in names.drop_statements():
            await conn.execute(statement)
    except asyncpg.PostgresError as exc:
        raise server_error(exc, "drop_db") from exc
    finally:
        await conn.close()


def _run_sync(name: str, coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise CacheStateError(f"{name}() was called from a running event loop",
                          hint=f"await {name.removesuffix('_sync')}(...) instead")


def apply_migrations_sync(settings: CacheSettings, *, upto_version: int | None = None) -> int:
    """``apply_migrations`` for code outside an event loop."""
    return _run_sync("apply_migrations_sync",
                     apply_migrations(settings, upto_version=upto_version))


def init_postgres_cache_db_sync(settings: CacheSettings) -> None:
    """``init_postgres_cache_db`` for code outside an event loop."""
    _run_sync("init_postgres_cache_db_sync", init_postgres_cache_db(settings))


def schema_version_sync(settings: CacheSettings) -> int:
    """``schema_version`` for code outside an event loop."""
    return _run_sync("schema_version_sync", schema_version(settings))


def schema_is_current_sync(settings: CacheSettings) -> bool:
    """``schema_is_current`` for code outside an event loop."""
    return _run_sync("schema_is_current_sync", schema_is_current(settings))
