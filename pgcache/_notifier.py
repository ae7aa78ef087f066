"""The notifier: announces overlapping writes after they commit, batched, on a connection of
its own; and keeps the lease alive with heartbeats when nothing else is sent.

A NOTIFY inside every writer's transaction would take PostgreSQL's cluster-wide notify lock at
every commit, and every listening instance pays for every notification it receives (measured:
one NOTIFY per write statement took 16 writers from 73k to 25k writes/s with two instances
listening). So a lone write (nothing else of the instance on the wire, nothing queued here)
carries its own NOTIFY, and writes that overlap are queued here and sent together:

- repeated keys are coalesced (newest version wins), as many pairs as fit in
  ``notify_max_payload_bytes`` go in one payload;
- adaptive pacing: after a batch of n keys the next NOTIFY waits up to
  ``notify_coalesce_seconds * min(1, n / notify_coalesce_keys)`` since the previous one, so a
  lone write goes out at once and a busy instance sends few, large batches;
- past ``notify_max_pending`` distinct keys the others are told to flush everything;
- a send that fails, or gets no answer within ``listener_heartbeat_timeout_seconds``, is
  retried on a new connection with backoff (re-sending is harmless: invalidation is
  idempotent); nothing queued is dropped.

What this costs: a write whose instance dies after commit and before its batch is sent (within
``notify_coalesce_seconds`` under load) is never announced, and other instances keep their
copies of it until ``local_ttl_seconds``. A lone write's own NOTIFY cannot be lost that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from ._connect import cut
from ._db import call_bounded, wrong_loop
from ._keys import LONG_KEY_CHARS
from ._listener import Backoff
from ._payload import flush_all, header, heartbeat, name
from ._settings import CacheSettings
from ._stats import Counters

Connection = Any  # asyncpg.Connection
Connector = Callable[[], Awaitable[Connection]]

log = logging.getLogger("pgcache")

_NOTIFY = "SELECT pg_notify($1, $2)"


class Notifier:
    """Collects (key, version) pairs of committed writes and sends them in batched NOTIFYs."""

    def __init__(self, settings: CacheSettings, connect: Connector, instance_id: str, *,
                 next_seq: Callable[[], int], counters: Counters,
                 heartbeat_every: float | None) -> None:
        self._settings = settings
        self._connect = connect
        self._instance_id = instance_id
        self._next_seq = next_seq
        self._counters = counters
        # Send a heartbeat when nothing was sent for this long (None: never).
        self._heartbeat_every = heartbeat_every
        self._pending: dict[str, int] = {}
        self._max_pending = settings.notify_max_pending
        self._flush_all = False
        self._floor = 0  # a trim's "every key changed at this version" (0: none)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_sent = 0.0  # loop time of the last notification of this instance

    async def start(self) -> None:
        """Open the notifier's connection (a failure is retried when there is something to
        send) and start sending in the background."""
        try:
            self._conn = await self._connect()
        except Exception as exc:
            log.warning("pgcache notifier could not connect (retrying when needed): %s", exc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pgcache-notifier")

    @property
    def idle(self) -> bool:
        """Nothing is waiting to be sent."""
        return not self._pending and not self._flush_all and not self._floor

    def sent_inline(self) -> None:
        """Count a notification a writer sent in its own transaction."""
        self.last_sent = asyncio.get_running_loop().time()
        self._counters.notifications_sent += 1
        self._counters.notified_keys += 1

    def kick(self) -> None:
        """Send a heartbeat now (the listener is back and needs a first proof)."""
        self.last_sent = 0.0
        self._wake.set()

    def enqueue(self, key: str, version: int) -> None:
        """Queue one committed write (never suspends; coalesces repeated keys)."""
        pending = self._pending
        if not pending:
            # The sender waits for work only when nothing is pending, and is marked idle
            # only then: only the first key of a batch needs to wake it.
            self._idle.clear()
            self._wake.set()
        old = pending.get(key)
        if old is None or old < version:
            pending[key] = version
            if len(pending) > self._max_pending:
                pending.clear()
                self._flush_all = True

    def enqueue_floor(self, version: int) -> None:
        """Queue "every row written before ``version`` is gone" (after a trim)."""
        self._floor = max(self._floor, version)
        self._idle.clear()
        self._wake.set()

    async def drain(self, within_seconds: float) -> bool:
        """Wait until everything queued has been sent; False if not within that time."""
        if self._task is not None and self._task.get_loop() is not asyncio.get_running_loop():
            raise wrong_loop()  # its sending task cannot run from here
        try:
            async with asyncio.timeout(within_seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _next_payload(self) -> tuple[str, int]:
        """The next payload to send and how many keys it names."""
        seq = self._next_seq()
        if self._flush_all:
            self._flush_all = False
            return flush_all(self._instance_id, seq), 0
        start = header(self._instance_id, seq)
        limit = self._settings.notify_max_payload_bytes - 1  # room for the closing bracket
        pending = self._pending
        parts = [start]
        if self._floor:
            parts.append(f",{self._floor},null")
            self._floor = 0
        size = sum(len(part) for part in parts)
        while pending:
            key, version = pending.popitem()
            if len(key) > LONG_KEY_CHARS:
                text, sign = name(key)
                item = f",{sign * version},{text}"
            else:  # the common case of _payload.name, inline: this runs for every key
                item = f",{version},{encode_basestring_ascii(key)}"
            if size + len(item) > limit and len(parts) > 1:
                pending[key] = max(version, pending.get(key, 0))
                break
            parts.append(item)
            size += len(item)
        parts.append("]")
        return "".join(parts), len(parts) - 2

    def _requeue(self, payload: str) -> None:
        items = json.loads(payload)[2:]
        for i in range(0, len(items), 2):
            version, key = items[i], items[i + 1]
            if key is None:
                self._floor = max(self._floor, version)
            elif version > 0:
                self._pending[key] = max(version, self._pending.get(key, 0))
            else:
                # A flush, or a long key's hash, which cannot be turned back into the key:
                # make everyone flush.
                self._flush_all = True

    async def _run(self) -> None:
        backoff = Backoff(self._settings.reconnect_backoff_min_seconds,
                          self._settings.reconnect_backoff_max_seconds)
        coalesce = self._settings.notify_coalesce_seconds
        full_batch = self._settings.notify_coalesce_keys
        loop = asyncio.get_running_loop()
        last_count = 0
        while True:
            if self.idle:
                self._idle.set()
                await self._wait_for_work(loop)
            self._wake.clear()
            if self.idle:
                if self._heartbeat_every is None:
                    continue
                payload, count = heartbeat(self._instance_id, self._next_seq()), -1
            else:
                # A batch of n keys is followed by a pause of up to coalesce * n / full_batch
                # since it was sent: a lone write goes out at once, and under load pauses
                # and batches grow together.
                if coalesce > 0 and last_count > 1:
                    pause = coalesce * min(1.0, last_count / full_batch) \
                        - (loop.time() - self.last_sent)
                    if pause > 0:
                        await asyncio.sleep(pause)
                payload, count = self._next_payload()
            if not await self._send(payload):
                if count >= 0:
                    self._requeue(payload)
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self.last_sent = loop.time()
            if count < 0:
                self._counters.heartbeats_sent += 1
                last_count = 0
            else:
                self._counters.notifications_sent += 1
                self._counters.notified_keys += count
                last_count = max(count, 1)

    async def _wait_for_work(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until something is queued, or a heartbeat is due."""
        every = self._heartbeat_every
        while not self._wake.is_set():
            if every is None:
                await self._wake.wait()
                return
            due = self.last_sent + every - loop.time()
            if due <= 0:
                return
            # On time-out, look again: an inline send may have renewed in the meantime.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(due):
                    await self._wake.wait()

    async def _send(self, payload: str) -> bool:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            await call_bounded(self._conn, "execute", _NOTIFY, self._settings.notify_channel,
                               payload, within=self._settings.listener_heartbeat_timeout_seconds)
        except Exception as exc:
            self._counters.notify_errors += 1
            if self._conn is not None:
                self._conn.terminate()
                self._conn = None
            log.warning("pgcache notifier: sending failed, will retry: %r", exc)
            return False
        return True

    async def close(self, drain_timeout: float) -> None:
        """Send what is queued (bounded by ``drain_timeout``), then close the connection."""
        if self._task is None:
            return
        await self.drain(drain_timeout)
        self._task.cancel()
        await asyncio.wait({self._task})
        self._task = None
        if self._conn is not None:
            try:
                await asyncio.wait_for(self._conn.close(), 1.0)
            except (Exception, asyncio.CancelledError):
                self._conn.terminate()
            self._conn = None

    def abandon(self) -> None:
        """Cut the connection without the event loop it belongs to (which may be closed)."""
        conn, self._conn, self._task = self._conn, None, None
        if conn is not None:
            cut(conn)
