"""Helpers shared by pgcache's tests: plain SQL, bounded polling, an invalidation inbox, and
instances wired through a fault proxy."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import asyncpg

from pgcache import CacheSettings, PostgresCache

_ids = itertools.count()


def unused_port() -> int:
    """A 127.0.0.1 TCP port nobody listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_name(prefix: str = "t") -> str:
    """A table prefix / channel stem no other test (or test process) uses."""
    return f"{prefix}{os.getpid()}_{next(_ids)}_"


def settings_for(dsn: str, **changes: Any) -> CacheSettings:
    """Settings with a table prefix and channel of their own, tuned for tests."""
    name = unique_name()
    base = CacheSettings(dsn=dsn, schema_prefix=name, notify_channel=f"{name}ch",
                         application_name=name, sweep_interval_seconds=0,
                         listener_heartbeat_interval_seconds=0.2,
                         # Generous: a loaded machine can stall for a second, and a false
                         # "listener lost" would drop notifications a test waits for.
                         # Tests of the heartbeat set their own short timeout.
                         listener_heartbeat_timeout_seconds=5.0,
                         # Generous too: a lapsed lease only makes reads go to PostgreSQL,
                         # but tests that count local hits must not see one by accident.
                         local_lease_seconds=5.0,
                         reconnect_backoff_min_seconds=0.01,
                         reconnect_backoff_max_seconds=0.2, connect_timeout=3)
    return replace(base, **changes)


async def sql(dsn: str, query: str, *args: Any) -> Any:
    """Run one statement on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def sql_script(dsn: str, script: str) -> None:
    """Run several statements (the simple protocol) on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(script)
    finally:
        await conn.close()


async def eventually(predicate: Callable[[], bool], within: float = 10.0,
                     interval: float = 0.01) -> None:
    """Poll a condition no event announces (bounded); ``interval=0`` looks at every turn of
    the event loop, for a state that lasts only a round trip."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(interval)


async def last_served(read: Callable[[], object | None], within: float = 10.0) -> float:
    """Poll ``read`` (e.g. a local copy) until it gives None; return when the last call that
    still gave something began (monotonic), or when polling began if none did.

    A bound on how long something is served is a bound on that time: a loaded machine polls
    late and so sees the None late, but the time of a call that was still served only moves
    later if the code really served later."""
    started = time.monotonic()
    deadline = started + within
    last = started
    while True:
        began = time.monotonic()
        if read() is None:
            return last
        last = began
        assert began < deadline, "still served when the time was up"
        await asyncio.sleep(0.01)


class Inbox:
    """An invalidation callback that records (key, version) and lets a test await one."""

    def __init__(self) -> None:
        self.items: list[tuple[str | None, int | None]] = []
        self._changed = asyncio.Event()

    def __call__(self, key: str | None, version: int | None) -> None:
        self.items.append((key, version))
        self._changed.set()

    async def wait_for(self, item: tuple[str | None, int | None], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while item not in self.items:
                self._changed.clear()
                await self._changed.wait()

    def seen_keys(self) -> set[str | None]:
        return {key for key, _ in self.items}


def listening(settings: CacheSettings, **changes: Any) -> tuple[PostgresCache, Inbox]:
    """An instance (not yet connected) whose invalidations land in an Inbox."""
    cache = PostgresCache(replace(settings, **changes))
    inbox = Inbox()
    cache.add_invalidation_callback(inbox)
    return cache, inbox


async def row_of(settings: CacheSettings, key: str) -> tuple[bytes, int] | None:
    """(value, version) of the live row of ``key``, read with plain SQL."""
    rows = await sql(settings.dsn,
                     f'SELECT value, version FROM "{settings.schema_prefix}pgcache_entries" '
                     "WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())",
                     key.encode("utf-8", "surrogatepass"))
    return (bytes(rows[0][0]), rows[0][1]) if rows else None


async def sessions_of(dsn: str, application_prefix: str) -> list[str]:
    """application_name of every server session whose name starts with the prefix, asked
    on a connection of its own."""
    rows = await sql(dsn, "SELECT application_name FROM pg_stat_activity WHERE "
                     "starts_with(application_name, $1) ORDER BY 1", application_prefix)
    return [row[0] for row in rows]


async def wait_no_sessions(dsn: str, application_prefix: str, within: float = 20.0) -> None:
    """Wait until the server has no session named with the prefix (a closed connection's
    backend takes a moment to go); fail naming the ones left."""
    deadline = time.monotonic() + within
    while left := await sessions_of(dsn, application_prefix):
        assert time.monotonic() < deadline, f"sessions left on the server: {left}"
        await asyncio.sleep(0.05)


async def put_row(conn: Any, settings: CacheSettings, key: str, value: bytes, kind: int,
                  version: int, expires_at: str | None = None) -> None:
    """Write a row as another program could, bypassing pgcache (``conn``: asyncpg's;
    ``expires_at`` as PostgreSQL spells it, "infinity" for instance)."""
    await conn.execute(
        f'INSERT INTO "{settings.schema_prefix}pgcache_entries" '
        "(key_hash, key, value, kind, version, expires_at) "
        "VALUES (substring(sha256($1) FROM 1 FOR 16), $1, $2, $3, $4, $5::text::timestamptz) "
        "ON CONFLICT (key_hash) DO UPDATE SET key = $1, value = $2, kind = $3, version = $4, "
        "expires_at = $5::text::timestamptz",
        key.encode("utf-8", "surrogatepass"), value, kind, version, expires_at)


def nested_list(depth: int) -> Any:
    """A list nested ``depth`` levels deep ([] is 1), built without recursion."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def at_depth(frames: int, call: Callable[[], Any]) -> Any:
    """Await ``call()`` under ``frames`` more coroutine frames: as deep in the stack as a
    read made from deep inside an application."""
    if frames <= 0:
        return await call()
    return await at_depth(frames - 1, call)
