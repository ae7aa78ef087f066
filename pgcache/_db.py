"""``Database``: run one statement on a pooled connection, the one way pgcache does it.

Borrow a connection, run, map any error to pgcache's, give the connection back (or drop it
if its session state is unknown). A connection that failed is never reused, and neither are
the idle ones beside it: what ended one (a server restart, a network reset) usually ended all.
A statement that cannot have changed anything is tried once more on a fresh connection, so the
first operation after a server came back does not fail on a connection the restart killed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ._connect import (
    connection_error,
    is_connection_failure,
    is_server_rejection,
    server_error,
    was_not_sent,
)
from ._errors import CacheConnectionError, CacheStateError, PgCacheError
from ._pool import Connection, ConnectionPool
from ._settings import CacheSettings
from ._stats import Counters


def wrong_loop() -> CacheStateError:
    """What a call on another event loop than the instance's raises."""
    return CacheStateError(
        "this PostgresCache is bound to the event loop it connected on; this call runs on "
        "another event loop",
        hint="connect, use and close an instance within one event loop (one asyncio.run); "
             "make one instance per loop")


class Database:
    """Statements on a pool, with pgcache's error mapping and its one retry."""

    __slots__ = ("_counters", "address", "loop", "pool", "settings")

    def __init__(self, pool: ConnectionPool, settings: CacheSettings, address: str,
                 counters: Counters) -> None:
        self.pool = pool
        self.settings = settings
        self.address = address
        self._counters = counters
        # Every connection belongs to this loop. A call on another one fails on the wire
        # (a future of another loop, or a closed loop); that is checked on the failure path
        # and here, never on the hot path.
        self.loop = asyncio.get_running_loop()

    async def acquire(self) -> Connection:
        """A pooled connection (never suspends when one is idle)."""
        pool = self.pool
        conn = pool.try_acquire()
        if conn is not None:
            return conn
        if asyncio.get_running_loop() is not self.loop:
            raise wrong_loop()
        try:
            return await pool.acquire()
        except PgCacheError:
            raise
        except Exception as exc:
            raise connection_error(exc, self.address, self.settings, "connect") from exc

    def failed(self, conn: Connection, exc: BaseException, what: str) -> BaseException:
        """Give ``conn`` back after ``exc`` (or drop it); return what to raise instead."""
        pool = self.pool
        if asyncio.get_running_loop() is not self.loop:
            pool.cut(conn)  # nothing of its loop may run from here, not even a wake-up
            return wrong_loop()
        if is_server_rejection(exc):
            pool.release(conn)  # the server rejected the statement; the session is fine
            return server_error(exc, what)
        # Broken, cancelled or timed out mid-statement: the session state is unknown.
        pool.discard(conn)
        if is_connection_failure(exc):
            pool.discard_idle()
            return connection_error(exc, self.address, self.settings, what)
        return exc

    async def run(self, what: str, method: str, sql: str, *args: Any,
                  idempotent: bool = False) -> Any:
        """``conn.<method>(sql, *args)`` on a pooled connection.

        A connection failure is retried once on a fresh connection when the statement was
        never sent, or when it is ``idempotent`` (a read).
        """
        pool = self.pool
        conn = pool.try_acquire()  # the hot path: an idle connection, no suspension
        if conn is None:
            conn = await self.acquire()
        try:
            result = await getattr(conn, method)(sql, *args)
        except BaseException as exc:
            return await self._recover(conn, exc, what, method, sql, args, idempotent)
        pool.release(conn)
        return result

    async def _recover(self, conn: Connection, exc: BaseException, what: str, method: str,
                       sql: str, args: tuple[Any, ...], idempotent: bool) -> Any:
        """:meth:`run`'s statement failed with ``exc``: give ``conn`` back or drop it, then
        raise what pgcache raises, or retry once as :meth:`run` says."""
        error = self.failed(conn, exc, what)
        if error is exc:
            raise exc
        if not (isinstance(error, CacheConnectionError) and (idempotent or was_not_sent(exc))):
            raise error from exc
        self._counters.retries += 1
        # The one retry, on a fresh connection (the idle ones were dropped).
        return await self._once(what, method, sql, args, None)

    async def run_bounded(self, what: str, method: str, sql: str, *args: Any,
                          within: float) -> Any:
        """As :meth:`run` (no retry), but give up after ``within`` seconds."""
        return await self._once(what, method, sql, args, within)

    async def _once(self, what: str, method: str, sql: str, args: tuple[Any, ...],
                    within: float | None) -> Any:
        """One statement, no retry (``within``: give up after that many seconds). :meth:`run`
        is this with the retry, written out for its hot path."""
        conn = await self.acquire()
        try:
            if within is None:
                result = await getattr(conn, method)(sql, *args)
            else:
                result = await call_bounded(conn, method, sql, *args, within=within)
        except BaseException as exc:
            error = self.failed(conn, exc, what)
            if error is exc:
                raise
            raise error from exc
        self.pool.release(conn)
        return result


async def call_bounded(conn: Connection, method: str, sql: str, *args: Any,
                       within: float) -> Any:
    """``conn.<method>(sql, *args)``, or TimeoutError after ``within`` seconds.

    On timeout the connection is terminated rather than the statement cancelled: cancelling
    makes asyncpg open yet another connection to send a cancel request, into the same
    silence. The caller must not use ``conn`` again after a TimeoutError.
    """
    call = asyncio.ensure_future(getattr(conn, method)(sql, *args))
    try:
        done, _ = await asyncio.wait({call}, timeout=within)
    except BaseException:
        conn.terminate()
        call.cancel()
        raise
    if not done:
        conn.terminate()
        # The call fails as soon as the loop sees the connection gone; should it not, it is
        # cancelled (the connection is closed: no cancel request can be sent on its behalf).
        await asyncio.wait({call}, timeout=1.0)
        if not call.done():
            call.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await call
        raise TimeoutError(f"no answer within {within} s")
    return call.result()
