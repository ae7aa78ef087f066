"""A minimal connection pool for single-statement operations.

asyncpg's own pool resets every connection on release (one extra round trip: ``RESET ALL``,
``UNLISTEN *``, ...) and schedules timers per acquire; on loopback that doubled the latency of
a one-row read. pgcache never leaves session state behind on a pooled connection, so a LIFO
list of idle connections is all it needs. Acquiring an idle connection does not suspend.

A connection is opened in a task of its own that the caller waits on (shielded): a caller
cancelled meanwhile never cancels a half-open connect (asyncpg would leave the failed attempt's
error unread); the connection, once open, goes to the pool (or is closed if the pool is), and a
failed attempt's error is retrieved and frees the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ._connect import cut
from ._errors import CacheStateError

Connection = Any  # asyncpg.Connection; asyncpg ships no type information
Connector = Callable[[], Awaitable[Connection]]


class ConnectionPool:
    """Up to ``max_size`` connections made by ``connect``; at least ``min_size`` kept open."""

    __slots__ = ("_closed", "_connect", "_idle", "_max_size", "_min_size", "_opening", "_size",
                 "_waiters")

    def __init__(self, connect: Connector, *, min_size: int, max_size: int) -> None:
        self._connect = connect
        self._min_size = min_size
        self._max_size = max_size
        self._idle: list[Connection] = []
        self._size = 0  # open or opening connections, idle or in use
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._closed = False
        # Connections being opened for callers (see the module docstring).
        self._opening: set[asyncio.Task[Connection]] = set()

    @property
    def size(self) -> int:
        return self._size

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def start(self) -> None:
        """Open ``min_size`` connections; the first failure propagates, and nothing stays
        open (nor when start() is cancelled: what opens later is closed as it opens)."""
        self._size += self._min_size
        opening = [asyncio.ensure_future(self._connect()) for _ in range(self._min_size)]
        try:
            await asyncio.wait(opening)
        except BaseException:
            self._size -= self._min_size
            for task in opening:
                task.cancel()
                task.add_done_callback(_close_opened)
            raise
        errors = [t.exception() for t in opening if t.exception() is not None]
        if errors:
            self._size -= self._min_size
            for task in opening:
                _close_opened(task)
            raise errors[0]  # type: ignore[misc]
        self._idle.extend(task.result() for task in opening)

    def try_acquire(self) -> Connection | None:
        """An idle, open connection, or None (never suspends)."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.is_closed():
                return conn
            self._size -= 1  # the server or the network closed it while idle
        return None

    async def acquire(self) -> Connection:
        """A connection for one operation; give it back with ``release``."""
        while True:
            if self._closed:
                raise CacheStateError("cache is closed", hint="create a new PostgresCache")
            conn = self.try_acquire()
            if conn is not None:
                return conn
            if self._size < self._max_size:
                self._size += 1
                return await self._open_one()
            waiter: asyncio.Future[Connection | None] = (
                asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    # Handed a connection (or an error) just as we were cancelled: pass it on.
                    handed = None if waiter.exception() else waiter.result()
                    if handed is not None:
                        self.release(handed)
                    elif waiter.exception() is None:
                        self._wake_one(None)
                else:
                    self._remove_waiter(waiter)
                raise
            if conn is not None:
                return conn
            # None: a slot was freed; loop to open a connection in it.

    async def _open_one(self) -> Connection:
        """Open a connection in the slot just taken (see the module docstring)."""
        task = asyncio.ensure_future(self._connect())
        self._opening.add(task)
        task.add_done_callback(self._opened)
        try:
            conn: Connection = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and not task.cancelled() and task.exception() is None:
                # Opened just as we were cancelled: the callback found it claimed; pass it on.
                self.release(task.result())
            else:
                # Still opening: whoever gets it is decided when it opens (``_opened``).
                task.add_done_callback(self._orphaned)
            raise
        return conn

    def _opened(self, task: asyncio.Task[Connection]) -> None:
        self._opening.discard(task)
        if task.cancelled() or task.exception() is not None:  # retrieved: nobody else may
            self._size -= 1
            self._wake_one(None)

    def _orphaned(self, task: asyncio.Task[Connection]) -> None:
        """A connection opened for a caller that was cancelled meanwhile: the pool takes it."""
        if not task.cancelled() and task.exception() is None:
            self.release(task.result())

    def release(self, conn: Connection) -> None:
        """Give a connection back; a closed or mid-transaction one is discarded."""
        if conn.is_closed() or conn.is_in_transaction() or self._closed:
            if not conn.is_closed():
                conn.terminate()
            self._size -= 1
            self._wake_one(None)
            return
        if not self._wake_one(conn):
            self._idle.append(conn)

    def discard(self, conn: Connection) -> None:
        """Close a connection whose session state is unknown and free its slot."""
        conn.terminate()
        self._size -= 1
        self._wake_one(None)

    def cut(self, conn: Connection) -> None:
        """Close a connection without running anything of its event loop (which may be
        closed); it no longer counts."""
        cut(conn)
        self._size -= 1

    def abandon(self) -> None:
        """Close the pool without its event loop: cut the idle connections."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self.cut(conn)

    def discard_idle(self) -> int:
        """Close every idle connection (after one failed, the others are suspect: a server
        restart ends them all); returns how many went."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.terminate()
            self._size -= 1
            self._wake_one(None)
        return len(idle)

    def _wake_one(self, conn: Connection | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _remove_waiter(self, waiter: asyncio.Future[Connection | None]) -> None:
        with contextlib.suppress(ValueError):  # already taken off by _wake_one: nothing to do
            self._waiters.remove(waiter)

    async def close(self) -> None:
        """Close idle connections now, and those being opened as they open (each attempt is
        bounded by connect_timeout); connections in use are closed when released."""
        self._closed = True
        if self._opening:
            await asyncio.wait(set(self._opening))
        idle, self._idle = self._idle, []
        self._size -= len(idle)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(CacheStateError("cache is closed"))
        results = await asyncio.gather(*(c.close(timeout=2.0) for c in idle),
                                       return_exceptions=True)
        for conn, result in zip(idle, results, strict=True):
            if isinstance(result, BaseException):
                conn.terminate()


def _close_opened(task: asyncio.Future[Connection]) -> None:
    """A connection opened for nothing (its start() failed or was cancelled) is closed."""
    if not task.cancelled() and task.exception() is None:
        task.result().terminate()
