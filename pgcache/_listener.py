"""The two dedicated connections of an instance: the listener and the notifier.

Notifications are sent after commit, in batches, by one notifier per instance on its own
connection. A NOTIFY inside every writer's transaction would take PostgreSQL's database-wide
notify lock at every writer's commit and serialize concurrent writers; here, among
overlapping writes, only the notifier holds it, once per batch. A lone write (nothing else of
the instance on the wire, nothing queued here) carries its own NOTIFY instead, built from
:meth:`Notifier.inline_parts` (see ``PostgresCache._commit_one``): there is no writer for it
to serialize, and it saves a statement and a transaction.

Payload (JSON, ASCII): ``[instance_id, v1, k1, v2, k2, ...]`` where
``v > 0`` names key ``k`` written at version ``v``, ``v < 0`` names a long key by its digest
(see ``_local.key_digest``), and ``v == 0`` asks every instance to flush (after a truncate,
or when the notifier fell too far behind to name every key).

The listener connection LISTENs and is watched twice: asyncpg reports a closed connection
(backend terminated, reset, server stopped) and a heartbeat query detects a silent blackhole.
Either way the owner is told first (it flushes and stops trusting its local copies), then the
listener reconnects with exponential backoff and reports ready once LISTEN is in place again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Awaitable, Callable
from json.encoder import encode_basestring_ascii
from typing import Any

import structlog

from ._local import LONG_KEY_CHARS, key_digest
from ._settings import CacheSettings

Connection = Any  # asyncpg.Connection
Connector = Callable[[], Awaitable[Connection]]

log = structlog.get_logger("pgcache")

FLUSH_ALL = 0


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


class Notifier:
    """Collects (key, version) pairs of committed writes and sends them in batched NOTIFYs."""

    def __init__(self, settings: CacheSettings, connect: Connector, instance_id: str) -> None:
        self._settings = settings
        self._connect = connect
        self._header = "[" + json.dumps(instance_id)
        self._pending: dict[str, int] = {}
        self._flush_all = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.notifications_sent = 0
        self.keys_sent = 0
        self.send_errors = 0

    async def start(self) -> None:
        """Open the notifier's connection (a failure is retried when there is something to
        send) and start sending in the background."""
        try:
            self._conn = await self._connect()
        except Exception as exc:
            log.warning("pgcache_notifier_connect_failed", error=repr(exc))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pgcache-notifier")

    @property
    def idle(self) -> bool:
        """Nothing is waiting to be sent."""
        return not self._pending and not self._flush_all

    def inline_parts(self, key: str) -> tuple[str, str]:
        """The payload of a notification for ``key`` alone, around its version: the writer
        sends ``head + str(version) + tail`` in its own transaction (see PostgresCache)."""
        if len(key) > LONG_KEY_CHARS:
            return self._header + ",-", f",\"{key_digest(key)}\"]"
        return self._header + ",", f",{encode_basestring_ascii(key)}]"

    def sent_inline(self) -> None:
        """Count a notification a writer sent in its own transaction."""
        self.notifications_sent += 1
        self.keys_sent += 1

    def enqueue(self, key: str, version: int) -> None:
        """Queue one committed write (never suspends; coalesces repeated keys)."""
        pending = self._pending
        old = pending.get(key)
        if old is None or old < version:
            pending[key] = version
        if len(pending) > self._settings.notify_max_pending:
            pending.clear()
            self._flush_all = True
        self._idle.clear()
        self._wake.set()

    def enqueue_flush_all(self) -> None:
        """Queue "flush everything" (after a truncate)."""
        self._pending.clear()
        self._flush_all = True
        self._idle.clear()
        self._wake.set()

    async def drain(self, within_seconds: float) -> bool:
        """Wait until everything queued has been sent; False if not within that time."""
        try:
            async with asyncio.timeout(within_seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _next_payload(self) -> tuple[str, int]:
        if self._flush_all:
            self._flush_all = False
            return self._header + f",{FLUSH_ALL},\"\"]", 0
        limit = self._settings.notify_max_payload_bytes - 1  # room for the closing bracket
        pending = self._pending
        parts = [self._header]
        size = len(self._header)
        while pending:
            key, version = pending.popitem()
            if len(key) > LONG_KEY_CHARS:
                item = f",{-version},\"{key_digest(key)}\""
            else:
                item = f",{version},{encode_basestring_ascii(key)}"
            if size + len(item) > limit and len(parts) > 1:
                old = pending.get(key)
                if old is None or old < version:
                    pending[key] = version
                break
            parts.append(item)
            size += len(item)
        parts.append("]")
        return "".join(parts), len(parts) - 2

    def _requeue(self, payload: str) -> None:
        items = json.loads(payload)[1:]
        for i in range(0, len(items), 2):
            version, name = items[i], items[i + 1]
            if version == FLUSH_ALL:
                self._flush_all = True
            elif version > 0:
                old = self._pending.get(name)
                if old is None or old < version:
                    self._pending[name] = version
            else:
                # A long key's digest cannot be turned back into the key: make everyone flush.
                self._flush_all = True

    async def _run(self) -> None:
        backoff = Backoff(self._settings.reconnect_backoff_min_seconds,
                          self._settings.reconnect_backoff_max_seconds)
        channel = self._settings.notify_channel
        coalesce = self._settings.notify_coalesce_seconds
        full_batch = self._settings.notify_coalesce_keys
        last_count = 0
        last_sent = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending and not self._flush_all:
                self._idle.set()
                await self._wake.wait()
            self._wake.clear()
            # Adaptive coalescing: a batch of n keys is followed by a pause of up to
            # coalesce * n / full_batch (at most coalesce) since it was sent. A lone write
            # goes out at once (lowest lag); under load pauses and batches grow together,
            # cutting the per-NOTIFY cost on both ends.
            if coalesce > 0 and last_count > 1:
                pause = coalesce * min(1.0, last_count / full_batch) - (loop.time() - last_sent)
                if pause > 0:
                    await asyncio.sleep(pause)
            last_count = 0
            while self._pending or self._flush_all:
                if last_count:
                    break  # one payload per round: the next one waits its coalescing time
                payload, count = self._next_payload()
                try:
                    if self._conn is None or self._conn.is_closed():
                        self._conn = await self._connect()
                    await self._conn.execute("SELECT pg_notify($1, $2)", channel, payload)
                except Exception as exc:
                    # Re-sending after an ambiguous failure is harmless: invalidation is
                    # idempotent. Nothing queued is dropped.
                    self.send_errors += 1
                    self._requeue(payload)
                    if self._conn is not None:
                        self._conn.terminate()
                        self._conn = None
                    delay = backoff.next_delay()
                    log.warning("pgcache_notifier_error", error=repr(exc), retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                backoff.reset()
                self.notifications_sent += 1
                self.keys_sent += count
                last_count = max(count, 1)
                last_sent = loop.time()

    async def close(self, drain_timeout: float) -> None:
        """Send what is queued (bounded by ``drain_timeout``), then close the connection."""
        if self._task is None:
            return
        await self.drain(drain_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._conn is not None:
            try:
                await asyncio.wait_for(self._conn.close(), 1.0)
            except (Exception, asyncio.CancelledError):
                self._conn.terminate()
            self._conn = None


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
        # Not fetchval(timeout=...): on timeout asyncpg would open yet another connection to
        # send a cancel request into the same black hole. Terminating first fails the query.
        probe = asyncio.ensure_future(conn.fetchval("SELECT 1"))
        done, _ = await asyncio.wait(
            {probe}, timeout=self._settings.listener_heartbeat_timeout_seconds)
        if not done:
            conn.terminate()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await probe
            return False
        return probe.exception() is None

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
            log.warning("pgcache_listener_lost", reason=reason)
            while True:
                delay = backoff.next_delay()
                await asyncio.sleep(delay)
                try:
                    await self._listen()
                except (Exception, TimeoutError) as exc:
                    log.info("pgcache_listener_reconnect_failed", error=repr(exc),
                             retry_in_s=delay)
                    continue
                break
            backoff.reset()
            self.reconnects += 1
            self._on_ready()
            log.info("pgcache_listener_reconnected", reconnects=self.reconnects)

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
