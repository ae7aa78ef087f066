"""``AdvisoryLocks``: session-level advisory locks on a connection of their own.

One per instance, opened on first use (application name ``<name>-lock``). A session holds
all the locks the instance takes (a key ``get_or_set`` is loading, the right to trim the
table), so holding a lock never holds a pooled connection, and nobody ever waits on a lock
inside PostgreSQL: locks are only ever *tried*. Statements on the session go one at a time,
each bounded by ``lock_timeout_seconds``; a session that fails is dropped, and every lock it
held goes with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ._connect import Connection, connection_error, cut, is_server_rejection, server_error
from ._db import call_bounded
from ._errors import PgCacheError
from ._settings import CacheSettings

_TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
_UNLOCK = "SELECT pg_advisory_unlock($1)"


class AdvisoryLocks:
    """Tries and releases advisory locks on the instance's lock session."""

    __slots__ = ("_address", "_conn", "_connect", "_mutex", "_settings")

    def __init__(self, settings: CacheSettings, connect: Callable[[], Awaitable[Connection]],
                 address: str) -> None:
        self._settings = settings
        self._connect = connect
        self._address = address
        self._conn: Connection | None = None
        self._mutex = asyncio.Lock()

    async def _statement(self, sql: str, lock: int, what: str) -> Any:
        async with self._mutex:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            conn = self._conn
            try:
                return await call_bounded(conn, "fetchval", sql, lock,
                                          within=self._settings.lock_timeout_seconds)
            except Exception as exc:
                if is_server_rejection(exc):
                    raise server_error(exc, what) from exc
                # The session, and every lock it held, is gone with it.
                conn.terminate()
                self._conn = None
                raise connection_error(exc, self._address, self._settings, what) from exc

    async def try_lock(self, lock: int, what: str) -> bool:
        """Take ``lock`` if nobody holds it; never waits for it."""
        return bool(await self._statement(_TRY_LOCK, lock, what))

    async def unlock(self, lock: int, what: str) -> None:
        """Release ``lock`` (even if the caller was cancelled meanwhile)."""
        # A failure means the lock went with its session: there is nothing left to release.
        with contextlib.suppress(PgCacheError):
            await asyncio.shield(self._statement(_UNLOCK, lock, what))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 1.0)
            except (Exception, asyncio.CancelledError):
                conn.terminate()

    def abandon(self) -> None:
        """Cut the session without the event loop it belongs to (which may be closed)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            cut(conn)
