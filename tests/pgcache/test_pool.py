"""ConnectionPool and Database with plain stand-in connections (their I/O is an argument)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from pgcache import CacheConnectionError, CacheServerError, CacheSettings, CacheStateError
from pgcache._db import Database
from pgcache._pool import ConnectionPool
from pgcache._stats import Counters


class Conn:
    """Just enough of a connection for the pool: a name, open/closed, a scripted answer."""

    def __init__(self, name: int) -> None:
        self.name = name
        self.closed = False
        self.in_transaction = False
        self.script: list[Any] = []  # what fetchval does next: a value or an exception

    def is_closed(self) -> bool:
        return self.closed

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    def terminate(self) -> None:
        self.closed = True

    async def close(self, **_: Any) -> None:
        self.closed = True

    async def fetchval(self, sql: str, *args: Any) -> Any:
        step = self.script.pop(0) if self.script else sql
        if isinstance(step, BaseException):
            raise step
        return step


class Connector:
    """Opens numbered Conns; can be told to fail."""

    def __init__(self) -> None:
        self.opened: list[Conn] = []
        self.fail: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.script: list[Any] = []  # what each new connection's fetchval does first

    async def __call__(self) -> Conn:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        conn = Conn(len(self.opened))
        conn.script = list(self.script)
        self.opened.append(conn)
        return conn


class TestConnectionPool:
    async def test_lifo_reuse_and_bound(self) -> None:
        """Idle connections are reused last-in first-out; never more than max_size exist."""
        connect = Connector()
        pool = ConnectionPool(connect, min_size=2, max_size=3)
        await pool.start()
        assert pool.size == 2 and pool.idle == 2
        first = pool.try_acquire()
        assert first is connect.opened[1]
        held = [first, await pool.acquire(), await pool.acquire()]
        assert pool.size == 3 and pool.try_acquire() is None
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        pool.release(held[0])
        assert await waiter is held[0]

    async def test_closed_or_mid_transaction_connections_are_not_reused(self) -> None:
        """A connection that closed while idle, or is left in a transaction, is dropped."""
        connect = Connector()
        pool = ConnectionPool(connect, min_size=1, max_size=2)
        await pool.start()
        conn = await pool.acquire()
        conn.in_transaction = True
        pool.release(conn)
        assert conn.closed and pool.size == 0
        fresh = await pool.acquire()
        pool.release(fresh)
        fresh.closed = True  # the server went away while it was idle
        assert pool.try_acquire() is None and pool.size == 0

    async def test_discard_frees_a_slot_for_a_waiter(self) -> None:
        """Discarding a connection lets a waiting caller open a new one."""
        connect = Connector()
        pool = ConnectionPool(connect, min_size=1, max_size=1)
        await pool.start()
        conn = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        pool.discard(conn)
        new = await waiter
        assert new is not conn and conn.closed and pool.size == 1

    async def test_discard_idle_closes_every_idle_connection(self) -> None:
        """After one failure, the idle neighbours go too."""
        connect = Connector()
        pool = ConnectionPool(connect, min_size=3, max_size=3)
        await pool.start()
        assert pool.discard_idle() == 3
        assert pool.size == 0 and all(c.closed for c in connect.opened)

    async def test_failed_connect_frees_its_slot(self) -> None:
        """A connect that fails leaves the pool able to try again."""
        connect = Connector()
        pool = ConnectionPool(connect, min_size=0, max_size=1)
        connect.fail = OSError("refused")
        with pytest.raises(OSError):
            await pool.acquire()
        assert pool.size == 0
        connect.fail = None
        assert await pool.acquire() is connect.opened[0]

    async def test_cancelled_waiter_passes_its_connection_on(self) -> None:
        """A waiter cancelled just as it was handed a connection does not leak it."""
        connect = Connector()
        pool = ConnectionPool(connect, min_size=1, max_size=1)
        await pool.start()
        conn = await pool.acquire()
        cancelled = asyncio.ensure_future(pool.acquire())
        second = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        pool.release(conn)  # handed to `cancelled`...
        cancelled.cancel()  # ...which is cancelled before it runs
        assert await second is conn

    async def test_close_fails_waiters_and_later_acquires(self) -> None:
        """After close, waiting and new callers get "cache is closed"."""
        connect = Connector()
        pool = ConnectionPool(connect, min_size=1, max_size=1)
        await pool.start()
        held = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        await pool.close()
        with pytest.raises(CacheStateError):
            await waiter
        with pytest.raises(CacheStateError):
            await pool.acquire()
        pool.release(held)
        assert held.closed


class TestDatabase:
    async def _db(self, size: int = 2) -> tuple[Database, Connector, Counters]:
        connect = Connector()
        pool = ConnectionPool(connect, min_size=size, max_size=size)
        await pool.start()
        counters = Counters()
        return Database(pool, CacheSettings(dsn="postgresql://h/db"), "h:5432/db",
                        counters), connect, counters

    async def test_server_rejection_keeps_the_connection(self) -> None:
        """A statement the server rejects maps to CacheServerError; the session is reused."""
        db, connect, _ = await self._db(size=1)
        conn = connect.opened[0]
        error = asyncpg.exceptions.UniqueViolationError("duplicate")
        conn.script = [error]
        with pytest.raises(CacheServerError) as info:
            await db.run("set", "fetchval", "SQL")
        assert info.value.__cause__ is error and not conn.closed
        assert await db.run("get", "fetchval", "again") == "again"

    @pytest.mark.parametrize("error", [
        asyncpg.exceptions.InternalClientError("cannot switch to state 12; another "
                                               "operation is in progress"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
        ConnectionResetError("reset"), RuntimeError("driver bug"),
    ], ids=lambda e: type(e).__name__)
    async def test_driver_failures_become_connection_errors(self, error: Exception) -> None:
        """Any driver failure is a CacheConnectionError; that connection and its idle
        neighbours are never used again."""
        db, connect, _ = await self._db(size=2)
        for conn in connect.opened:
            conn.script = [error]
        connect.script = [error]  # the retry's fresh connection (if any) fails too
        with pytest.raises(CacheConnectionError) as info:
            await db.run("set", "fetchval", "SQL")
        assert info.value.__cause__ is error
        assert all(c.closed for c in connect.opened)
        connect.script = []
        assert await db.run("get", "fetchval", "fresh") == "fresh"

    async def test_reads_and_unsent_writes_are_retried_once(self) -> None:
        """A read (idempotent) or a statement that never left is tried once more on a fresh
        connection; an ambiguous write failure is not."""
        db, connect, counters = await self._db(size=1)
        connect.opened[0].script = [asyncpg.exceptions.ConnectionDoesNotExistError("gone")]
        assert await db.run("get", "fetchval", "read", idempotent=True) == "read"
        assert counters.retries == 1
        connect.opened[1].script = [asyncpg.exceptions.InternalClientError("state")]
        assert await db.run("set", "fetchval", "write") == "write"
        assert counters.retries == 2
        connect.opened[2].script = [asyncpg.exceptions.ConnectionDoesNotExistError("gone")]
        with pytest.raises(CacheConnectionError):
            await db.run("set", "fetchval", "write")
        assert counters.retries == 2

    async def test_cancellation_travels_unchanged_and_drops_the_connection(self) -> None:
        """A cancelled statement leaves its session in an unknown state: it is dropped."""
        db, connect, _ = await self._db(size=1)
        gate = asyncio.Event()

        async def stuck(sql: str, *args: Any) -> Any:
            await gate.wait()

        connect.opened[0].fetchval = stuck  # type: ignore[method-assign]
        call = asyncio.ensure_future(db.run("get", "fetchval", "x"))
        await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert connect.opened[0].closed

    async def test_bounded_call_terminates_a_silent_connection(self) -> None:
        """run_bounded gives up after its limit and terminates (never cancels) the session."""
        db, connect, _ = await self._db(size=1)

        async def silent(sql: str, *args: Any) -> Any:
            await asyncio.Event().wait()

        connect.opened[0].fetchval = silent  # type: ignore[method-assign]
        with pytest.raises(CacheConnectionError):
            await db.run_bounded("heartbeat", "fetchval", "x", within=0.05)
        assert connect.opened[0].closed and db.pool.size == 0
