"""The listener: an instance's dedicated LISTEN connection, watched and reconnected.

The connection is watched twice: asyncpg reports a closed connection (backend terminated,
reset, server stopped), and a heartbeat query detects a silent blackhole. Either way the owner
is told first (it stops trusting and flushes its local copies), then the listener reconnects
with exponential backoff and jitter and reports ready once LISTEN is in place again. (The
lease, see ``_lease``, bounds staleness long before the heartbeat query gives up.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from ._connect import cut
from ._db import call_bounded
from ._settings import CacheSettings

Connection = Any  # asyncpg.Connection
Connector = Callable[[], Awaitable[Connection]]

log = logging.getLogger("pgcache")


class Backoff:
    """Exponential backoff with full jitter between ``minimum`` and ``maximum`` seconds."""

    __slots__ = ("_current", "maximum", "minimum")

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._current = minimum

    def next_delay(self) -> float:
        delay = random.uniform(self.minimum, self._current)
        self._current = min(self._current * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._current = self.minimum


class Listener:
    """LISTENs on the notification channel; reports payloads, loss and readiness."""

    def __init__(self, settings: CacheSettings, connect: Connector, *,
                 on_payload: Callable[[str], None], on_lost: Callable[[str], None],
                 on_ready: Callable[[], None]) -> None:
        self._settings = settings
        self._connect = connect
        self._on_payload = on_payload
        self._on_lost = on_lost
        self._on_ready = on_ready
        self._conn: Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0
        self.connected = False

    async def start(self) -> None:
        """Connect and LISTEN once (errors propagate), then watch in the background."""
        await self._listen()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pgcache-listener")

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            conn.add_termination_listener(self._terminated)
            await conn.add_listener(self._settings.notify_channel, self._notified)
        except BaseException:
            conn.terminate()
            raise
        self._lost.clear()
        self._conn = conn
        self.connected = True

    def _notified(self, conn: Connection, pid: int, channel: str, payload: str) -> None:
        if conn is self._conn:
            self._on_payload(payload)

    def _terminated(self, conn: Connection) -> None:
        if conn is self._conn:
            self._lost.set()

    async def _heartbeat_ok(self, conn: Connection) -> bool:
        try:
            await call_bounded(conn, "fetchval", "SELECT 1",
                               within=self._settings.listener_heartbeat_timeout_seconds)
        except Exception:
            return False
        return True

    async def _run(self) -> None:
        interval = self._settings.listener_heartbeat_interval_seconds
        backoff = Backoff(self._settings.reconnect_backoff_min_seconds,
                          self._settings.reconnect_backoff_max_seconds)
        while True:
            conn = self._conn
            assert conn is not None
            reason = ""
            try:
                async with asyncio.timeout(interval):
                    await self._lost.wait()
                reason = "connection closed"
            except TimeoutError:
                if not await self._heartbeat_ok(conn):
                    reason = "heartbeat failed"
            if not reason:
                continue
            self.connected = False
            self._conn = None
            conn.terminate()
            self._on_lost(reason)
            log.warning("pgcache listener lost (%s): local copies are bypassed until it is "
                        "back", reason)
            while True:
                delay = backoff.next_delay()
                await asyncio.sleep(delay)
                try:
                    await self._listen()
                except Exception as exc:
                    log.info("pgcache listener reconnect failed (%r); retrying in %.2f s",
                             exc, delay)
                    continue
                break
            backoff.reset()
            self.reconnects += 1
            self._on_ready()
            log.info("pgcache listener reconnected (%d reconnects)", self.reconnects)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        conn, self._conn = self._conn, None
        self.connected = False
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 1.0)
            except (Exception, asyncio.CancelledError):
                conn.terminate()

    def abandon(self) -> None:
        """Cut the connection without the event loop it belongs to (which may be closed)."""
        conn, self._conn, self._task = self._conn, None, None
        self.connected = False
        if conn is not None:
            cut(conn)
