"""``Parts``: what ``connect()`` opens for one instance and ``close()`` closes, in order.

Open: the pool (and a check of the schema), the notifier, the request parts (``Reader``,
``Writer``, ``Loads``, ``Sweeper``), then the listener (own, or the host's relay) and the
lease's first proof, then the sweeper. Close: stop trusting copies, stop the sweeper, wait for
the writes in flight (each then queued for its announcement), close the listener, send the
notifier's last batch, close the lock session and the pool. Abandon: cut every connection
without the event loop they belong to.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from ._coherence import Coherence
from ._connect import Connection, connect_once
from ._db import Database
from ._errors import CacheServerError, CacheStateError
from ._lease import Lease
from ._listener import Listener
from ._loader import Loads
from ._local import LocalCache
from ._locks import AdvisoryLocks
from ._notifier import Notifier
from ._pool import ConnectionPool
from ._reads import Reader
from ._relay import RelayLink, RelayServer, relay_address
from ._schema import SchemaNames, Statements
from ._settings import CacheSettings
from ._stats import Counters
from ._sweeper import Sweeper
from ._values import ValueCodec
from ._writes import Writer

log = logging.getLogger("pgcache")


class Parts:
    """The open parts of one instance (each None until opened)."""

    def __init__(self, settings: CacheSettings, names: SchemaNames, sql: Statements,
                 codec: ValueCodec, instance_id: str, address: str, counters: Counters,
                 local: LocalCache | None, lease: Lease | None, coherence: Coherence,
                 woken: dict[str, asyncio.Event], *,
                 get: Callable[[str], Awaitable[Any]],
                 store: Callable[[str, bytes, int, float | None], Awaitable[int]]) -> None:
        self._settings = settings
        self._names = names
        self._sql = sql
        self._codec = codec
        self._instance_id = instance_id
        self._address = address
        self._counters = counters
        self._local = local
        self._lease = lease
        self._coherence = coherence
        self._woken = woken
        self._seq = 0
        self._get = get
        self._store = store
        self.db: Database | None = None
        self.reader: Reader | None = None
        self.writer: Writer | None = None
        self.loads: Loads | None = None
        self.locks: AdvisoryLocks | None = None
        self.sweeper: Sweeper | None = None
        self.listener: Listener | RelayLink | None = None
        self.notifier: Notifier | None = None

    # -- open -------------------------------------------------------------------------------

    async def open_pool(self) -> None:
        """The pool, the schema's check and the notifier; what opened is closed by
        ``close()`` if one fails."""
        settings = self._settings
        pool = ConnectionPool(self._open_pool_connection,
                              min_size=max(settings.min_pool_size, 1),
                              max_size=settings.max_pool_size)
        self.db = db = Database(pool, settings, self._address, self._counters)
        await pool.start()
        await self._check_schema(db)
        if not settings.disable_notify:
            # With a shared listener the relay proves the path for everyone.
            heartbeats = self._lease is not None and not settings.shared_listener
            self.notifier = Notifier(
                settings, self._open_notifier_connection, self._instance_id,
                next_seq=self._next_seq, counters=self._counters,
                heartbeat_every=settings.local_lease_seconds / 4 if heartbeats else None)
            await self.notifier.start()

    def build(self) -> tuple[Reader, Writer, Loads]:
        """The request parts, on the open pool."""
        db = self.db
        if db is None:
            raise CacheStateError("the parts need the pool", hint="a pgcache bug")
        settings, sql, local = self._settings, self._sql, self._local
        self.reader = Reader(db, sql, self._codec, local, settings.local_ttl_seconds,
                             self._counters)
        self.locks = AdvisoryLocks(settings, self._open_lock_connection, self._address)
        self.sweeper = sweeper = Sweeper(db, sql, settings, self._names.table, self.locks,
                                         self._counters, floor=self.trimmed)
        bounded = settings.max_entries is not None or settings.max_bytes is not None
        # Every lone write numbers its notification: the lease's own method, not a detour.
        next_seq = self._lease.next_seq if self._lease is not None else self._next_seq
        self.writer = Writer(db, sql, settings, local, self._counters,
                             self._instance_id, next_seq, self.notifier,
                             self._codec.pack, inserted=sweeper.inserted if bounded else None)
        self.loads = Loads(settings, self._names.table, local, self._codec, self._counters,
                           self.locks, self._woken, get=self._get, set=self._store)
        return self.reader, self.writer, self.loads

    async def listen(self) -> None:
        """The listener and the lease's first proof (or, without NOTIFY, copies trusted until
        their local TTL), then the sweeper."""
        if self._lease is not None:
            await self._start_listening(self._lease)
        elif self._local is not None:
            # No NOTIFY: copies live until local_ttl_seconds, nothing evicts them earlier.
            self._local.trusted_until = math.inf
        if self.sweeper is not None:
            self.sweeper.start()

    async def _start_listening(self, lease: Lease) -> None:
        settings = self._settings
        coherence = self._coherence
        notifier = self.notifier
        if notifier is None:  # a listener implies notifications
            raise CacheStateError("a listener needs notifications", hint="a pgcache bug")
        if settings.shared_listener:
            self.listener = await RelayLink.join(settings, coherence, host=self._start_relay)
        else:
            lease.kick = notifier.kick
            self.listener = Listener(settings, self._open_listener_connection,
                                     on_payload=coherence.on_payload,
                                     on_lost=coherence.on_lost, on_ready=coherence.on_ready)
            await self.listener.start()
        lease.resume()
        if not await lease.wait_proven(settings.connect_timeout):
            log.warning("pgcache: no notification came back within connect_timeout=%s s; "
                        "local copies are bypassed until one does", settings.connect_timeout)

    async def _start_relay(self) -> RelayServer | None:
        """Start the host's relay in this process, unless another process runs it."""
        relay = RelayServer(self._settings, relay_address(self._settings),
                            connect_listener=self._open_listener_connection,
                            connect_notifier=self._open_notifier_connection,
                            relay_id=f"relay-{self._instance_id}")
        return relay if await relay.start() else None

    async def _check_schema(self, db: Database) -> None:
        try:
            version = await db.run("connect", "fetchval", self._names.select_schema_version,
                                   idempotent=True)
        except CacheServerError as exc:
            if exc.sqlstate != "42P01":  # undefined_table
                raise
            version = 0
        if version < self._names.latest_version:
            raise CacheStateError(
                f"the cache schema for prefix {self._settings.schema_prefix!r} is at version "
                f"{version}, this pgcache needs {self._names.latest_version}",
                hint="run `await PostgresCache.init_db(settings)` once before connecting")

    def _next_seq(self) -> int:
        """The number of this instance's next notification (the lease counts them)."""
        if self._lease is not None:
            return self._lease.next_seq()
        self._seq += 1
        return self._seq

    def trimmed(self, version: int) -> None:
        """A trim deleted every row written before ``version``: tell everyone, us too."""
        if self.notifier is not None:
            self.notifier.enqueue_floor(version)
        self._coherence.floor(version)

    async def _open_pool_connection(self) -> Connection:
        return await connect_once(self._settings, self._settings.dsn,
                                  self._settings.application_name)

    async def _open_notifier_connection(self) -> Connection:
        return await connect_once(self._settings, self._settings.dsn,
                                  f"{self._settings.application_name}-notify"[:63])

    async def _open_lock_connection(self) -> Connection:
        return await connect_once(self._settings, self._settings.dsn,
                                  f"{self._settings.application_name}-lock"[:63])

    async def _open_listener_connection(self) -> Connection:
        dsn = self._settings.listener_dsn or self._settings.dsn
        return await connect_once(self._settings, dsn,
                                  f"{self._settings.application_name}-listen"[:63])

    # -- close ------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close every part that is open, in the order the module docstring gives."""
        settings = self._settings
        if self._lease is not None:
            self._lease.suspend()
        if self._local is not None:
            self._local.trusted_until = 0.0
        if self.sweeper is not None:
            await self.sweeper.stop()
        if self.writer is not None:
            # Before the notifier's last batch: every write that returns is announced.
            left = await self.writer.close(within=settings.connect_timeout)
            if left:
                log.warning("pgcache: close() did not wait for %d write(s) still on the wire "
                            "after connect_timeout=%s s; other instances may keep older "
                            "copies of their keys until local_ttl_seconds", left,
                            settings.connect_timeout)
        if isinstance(self.listener, RelayLink):
            await self.listener.leave(self._coherence)
        elif self.listener is not None:
            await self.listener.close()
        if self.notifier is not None:
            await self.notifier.close(drain_timeout=settings.connect_timeout)
        if self.locks is not None:
            await self.locks.close()
        if self.db is not None:
            await self.db.pool.close()

    def abandon(self) -> None:
        """Cut every connection without the loop they belong to (close() on another one)."""
        if isinstance(self.listener, RelayLink):
            self.listener.abandon(self._coherence)
        elif self.listener is not None:
            self.listener.abandon()
        if self.notifier is not None:
            self.notifier.abandon()
        if self.locks is not None:
            self.locks.abandon()
        if self.db is not None:
            self.db.pool.abandon()
