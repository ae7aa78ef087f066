"""``AdvisoryLocks``: session-level advisory locks on a connection of their own.

One per instance, opened on first use (application name ``<name>-lock``). A session holds
all the locks the instance takes (a key ``get_or_set`` is loading, the right to trim the
table), so holding a lock never holds a pooled connection, and nobody ever waits on a lock
inside PostgreSQL: locks are only ever *tried*. Statements on the session go one at a time,
each bounded by ``lock_timeout_seconds``.

A caller's cancellation never reaches a statement on the session: cancelling one mid-flight
would leave the session in an unknown state, and dropping it would drop every other load's
lock with it. The statement runs on; a lock it takes for a caller that has gone is released
at once. A session that fails (broken, or silent past ``lock_timeout_seconds``) is dropped,
and with it every lock it held: that is logged, since until those loads end another
instance may run the same loaders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ._connect import Connection, connection_error, cut, is_server_rejection, server_error
from ._db import call_bounded
from ._errors import PgCacheError
from ._settings import CacheSettings

log = logging.getLogger("pgcache")

_TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
_UNLOCK = "SELECT pg_advisory_unlock($1)"


class AdvisoryLocks:
    """Tries and releases advisory locks on the instance's lock session."""

    __slots__ = ("_address", "_background", "_conn", "_connect", "_held", "_mutex",
                 "_settings")

    def __init__(self, settings: CacheSettings, connect: Callable[[], Awaitable[Connection]],
                 address: str) -> None:
        self._settings = settings
        self._connect = connect
        self._address = address
        self._conn: Connection | None = None
        self._mutex = asyncio.Lock()
        # lock -> how many times the current session holds it (session locks stack).
        self._held: dict[int, int] = {}
        # Releases of locks taken for callers that had gone.
        self._background: set[asyncio.Task[None]] = set()

    async def _statement(self, sql: str, lock: int, what: str) -> Any:
        async with self._mutex:
            if self._conn is None or self._conn.is_closed():
                self._dropped(None)
                self._conn = await self._connect()
            conn = self._conn
            try:
                result = await call_bounded(conn, "fetchval", sql, lock,
                                            within=self._settings.lock_timeout_seconds)
            except Exception as exc:
                if is_server_rejection(exc):
                    raise server_error(exc, what) from exc
                self._dropped(conn)
                raise connection_error(exc, self._address, self._settings, what) from exc
            held = self._held
            if sql is _TRY_LOCK:
                if result:
                    held[lock] = held.get(lock, 0) + 1
            elif lock in held:
                held[lock] -= 1
                if not held[lock]:
                    del held[lock]
            return result

    def _dropped(self, conn: Connection | None) -> None:
        """The session is gone (or about to be): so is every lock it held."""
        if conn is not None:
            conn.terminate()
        self._conn = None
        if self._held:
            log.warning("pgcache: the lock session was lost while it held %d lock(s); until "
                        "their loads end, another instance may run the same loaders",
                        len(self._held))
            self._held.clear()

    async def try_lock(self, lock: int, what: str) -> bool:
        """Take ``lock`` if nobody holds it; never waits for it."""
        statement = asyncio.ensure_future(self._statement(_TRY_LOCK, lock, what))
        try:
            return bool(await asyncio.shield(statement))
        except asyncio.CancelledError:
            # The statement runs on: a lock it takes now belongs to nobody.
            statement.add_done_callback(partial(self._orphaned, lock, what))
            raise

    def _orphaned(self, lock: int, what: str, statement: asyncio.Future[Any]) -> None:
        if statement.cancelled() or statement.exception() is not None or not statement.result():
            return
        task = asyncio.ensure_future(self.unlock(lock, what))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def unlock(self, lock: int, what: str) -> None:
        """Release ``lock`` (even if the caller was cancelled meanwhile)."""
        if lock not in self._held:
            return  # it went with its session: there is nothing left to release
        statement = asyncio.ensure_future(self._statement(_UNLOCK, lock, what))
        statement.add_done_callback(_retrieve)
        # A failure means the lock went with its session: there is nothing left to release.
        with contextlib.suppress(PgCacheError):
            await asyncio.shield(statement)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        conn, self._conn = self._conn, None
        self._held.clear()
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


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
