"""``PostgresCache``: the public API, a facade over the parts of one instance.

Lifecycle and argument checks live here; the work is done by the parts: ``Database`` (pool,
statements, errors), ``Reader``, ``Writer`` + ``Notifier``, ``Loads`` (get_or_set),
``Sweeper``, ``Listener`` + ``Coherence`` + ``Lease`` (invalidation and its staleness bound)
and ``LocalCache``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import secrets
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any

from ._coherence import Coherence, InvalidationCallback
from ._connect import Connection, connect_once, describe_address
from ._db import Database, wrong_loop
from ._errors import CacheArgumentError, CacheServerError, CacheStateError
from ._keys import key_type_error
from ._lease import Lease
from ._listener import Listener
from ._loader import Loader, Loads, check_loader
from ._local import LocalCache
from ._locks import AdvisoryLocks
from ._migrations import apply_migrations, drop_schema
from ._notifier import Notifier
from ._pool import ConnectionPool
from ._reads import Reader
from ._relay import RelayLink, RelayServer, relay_address
from ._schema import SchemaNames, Statements
from ._serializers import Serializer
from ._settings import CacheSettings
from ._stats import CacheStats, Counters
from ._sweeper import Sweeper
from ._values import KIND_BYTES, ValueCodec, check_ttl
from ._writes import Writer

log = logging.getLogger("pgcache")

_monotonic = time.monotonic


class State(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


class PostgresCache:
    """A cache in one PostgreSQL table with a local LRU kept coherent by LISTEN/NOTIFY.

    Create one per application instance and share it between all its coroutines.
    """

    def __init__(self, settings: CacheSettings, serializer: Serializer | None = None) -> None:
        if not isinstance(settings, CacheSettings):
            raise CacheArgumentError(
                f"PostgresCache() takes a CacheSettings, got {type(settings).__name__}")
        if serializer is not None:
            warnings.warn("PostgresCache(settings, serializer=...) is postgres-cache 0.1.1's; "
                          "use CacheSettings(serializer=...)", DeprecationWarning, stacklevel=2)
            settings = replace(settings, serializer=serializer)
        self._settings = settings
        self._names = SchemaNames.from_settings(settings)
        self._sql = Statements.build(
            self._names,
            count_inserts=settings.max_entries is not None or settings.max_bytes is not None)
        self._codec = ValueCodec(settings.resolved_serializer, settings.compress_min_bytes)
        self._default_ttl = settings.default_ttl_seconds
        self._max_age = settings.max_age_seconds
        self._instance_id = secrets.token_hex(8)
        self._address = describe_address(settings.dsn)
        self._counters = Counters()
        self._local: LocalCache | None = (
            LocalCache(settings.local_max_entries) if settings.local_cache_enabled else None)
        self._lease: Lease | None = None
        if self._local is not None and settings.listener_enabled:
            self._lease = Lease(self._local, settings.local_lease_seconds)
        # get_or_set's waiters, woken by the notification of a key they wait for.
        self._woken: dict[str, asyncio.Event] = {}
        self._coherence = Coherence(self._instance_id, self._local, self._lease,
                                    self._counters, woken=self._woken)
        self._state = State.NEW
        # The loop connect() ran on: every connection and task of the instance belongs to it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Task[None] | None = None
        self._shutting: asyncio.Future[None] | None = None
        self._seq = 0
        # The parts that talk to PostgreSQL exist while the cache is open.
        self._db: Database | None = None
        self._reader: Reader | None = None
        self._writer: Writer | None = None
        self._loads: Loads | None = None
        self._locks: AdvisoryLocks | None = None
        self._sweeper: Sweeper | None = None
        self._listener: Listener | RelayLink | None = None
        self._notifier: Notifier | None = None

    # -- schema -----------------------------------------------------------------------------

    @staticmethod
    async def init_db(settings: CacheSettings) -> int:
        """Create or upgrade the cache's tables (idempotent, safe to run concurrently).

        Returns the schema version now in place. The table's persistence follows
        ``settings.logged`` (an existing table is altered if it differs).
        """
        return await apply_migrations(settings)

    @staticmethod
    async def drop_db(settings: CacheSettings) -> None:
        """Drop the cache's tables (for tests and teardown)."""
        await drop_schema(settings)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def settings(self) -> CacheSettings:
        return self._settings

    @property
    def instance_id(self) -> str:
        """This instance's id; its own notifications carry it and are ignored on receipt."""
        return self._instance_id

    @property
    def connected(self) -> bool:
        return self._state is State.OPEN

    @property
    def table_name(self) -> str:
        return self._names.table

    async def connect(self) -> None:
        """Open the pool, the notifier and the listener; fails with CacheConnectionError.

        A close() meanwhile stops it wherever it is: it raises CacheStateError ("closed while
        connecting") and nothing stays open.
        """
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise wrong_loop()
        if self._state is State.CLOSED:
            raise CacheStateError("cache is closed", hint="create a new PostgresCache")
        if self._state is not State.NEW:
            raise CacheStateError(f"cache is already {self._state.value}",
                                  hint="call connect() once per PostgresCache")
        self._loop = loop = asyncio.get_running_loop()
        self._state = State.CONNECTING
        # A task of its own, so that close() can cancel it at whichever await it is in.
        opening = self._opening = loop.create_task(self._open(), name="pgcache-connect")
        try:
            await opening  # our caller's cancellation cancels it too
        except BaseException as exc:
            closed = self._state is State.CLOSED
            # What was opened goes, whichever way this ended (joins close()'s shutdown).
            await self._shutdown()
            if not closed:
                if self._state is not State.CLOSED:  # no close() during that shutdown
                    self._state = State.NEW  # a failed connect() may be tried again
                    self._loop = None
                raise
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None \
                    and task.cancelling():
                raise  # our own caller cancelled us, and close() came too
            raise CacheStateError("cache closed while connecting",
                                  hint="close() was called before connect() finished"
                                  ) from (None if isinstance(exc, asyncio.CancelledError)
                                          else exc)
        finally:
            self._opening = None
        if self._state is not State.CONNECTING:
            # close() came after the last step, before we resumed; it closed everything.
            raise CacheStateError("cache closed while connecting",
                                  hint="close() was called before connect() finished")
        self._state = State.OPEN

    async def _open(self) -> None:
        """connect()'s steps; what they opened is closed by connect() if one fails."""
        settings = self._settings
        pool = ConnectionPool(self._open_pool_connection,
                              min_size=max(settings.min_pool_size, 1),
                              max_size=settings.max_pool_size)
        self._db = db = Database(pool, settings, self._address, self._counters)
        await pool.start()
        await self._check_schema(db)
        if not settings.disable_notify:
            # With a shared listener the relay proves the path for everyone.
            heartbeats = self._lease is not None and not settings.shared_listener
            self._notifier = Notifier(
                settings, self._open_notifier_connection, self._instance_id,
                next_seq=self._next_seq, counters=self._counters,
                heartbeat_every=settings.local_lease_seconds / 4 if heartbeats else None)
            await self._notifier.start()
        sweeper = self._build_parts(db)
        if self._lease is not None:
            await self._start_listening(self._lease)
        elif self._local is not None:
            # No NOTIFY: copies live until local_ttl_seconds, nothing evicts them earlier.
            self._local.trusted_until = math.inf
        sweeper.start()

    def _build_parts(self, db: Database) -> Sweeper:
        settings, sql, local = self._settings, self._sql, self._local
        self._reader = Reader(db, sql, self._codec, local, settings.local_ttl_seconds,
                              self._counters)
        self._locks = AdvisoryLocks(settings, self._open_lock_connection, self._address)
        self._sweeper = sweeper = Sweeper(db, sql, settings, self._names.table, self._locks,
                                          self._counters, floor=self._trimmed)
        bounded = settings.max_entries is not None or settings.max_bytes is not None
        # Every lone write numbers its notification: the lease's own method, not a detour.
        next_seq = self._lease.next_seq if self._lease is not None else self._next_seq
        self._writer = Writer(db, sql, settings, local, self._counters,
                              self._instance_id, next_seq, self._notifier,
                              self._codec.pack, inserted=sweeper.inserted if bounded else None)
        self._loads = Loads(settings, self._names.table, local, self._codec, self._counters,
                            self._locks, self._woken, get=self.get, set=self._store)
        return sweeper

    async def _start_listening(self, lease: Lease) -> None:
        settings = self._settings
        coherence = self._coherence
        notifier = self._notifier
        if notifier is None:  # a listener implies notifications
            raise CacheStateError("a listener needs notifications", hint="a pgcache bug")
        if settings.shared_listener:
            self._listener = await RelayLink.join(settings, coherence, host=self._start_relay)
        else:
            lease.kick = notifier.kick
            self._listener = Listener(settings, self._open_listener_connection,
                                      on_payload=coherence.on_payload,
                                      on_lost=coherence.on_lost, on_ready=coherence.on_ready)
            await self._listener.start()
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

    def _next_seq(self) -> int:
        if self._lease is not None:
            return self._lease.next_seq()
        self._seq += 1
        return self._seq

    async def close(self) -> None:
        """Close every connection; idempotent, and stops a connect() in progress.

        On another event loop than the one it connected on, the instance is closed without
        waiting for anything: its connections are cut (their loop cannot run them).
        """
        self._state = State.CLOSED
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            self._abandon()
            return
        opening = self._opening
        if opening is not None and not opening.done():
            opening.cancel()
            await asyncio.wait({opening})
        await self._shutdown()

    async def _shutdown(self) -> None:
        """Close every part that is open; concurrent callers share one run, which goes on
        to the end even if they are cancelled."""
        running = self._shutting
        if running is None:
            running = self._shutting = asyncio.ensure_future(self._close_parts())
        await asyncio.shield(running)

    async def _close_parts(self) -> None:
        try:
            if self._lease is not None:
                self._lease.suspend()
            if self._local is not None:
                self._local.trusted_until = 0.0
            if self._sweeper is not None:
                await self._sweeper.stop()
            if self._writer is not None:
                # Before the notifier's last batch: every write that returns is announced.
                left = await self._writer.close(within=self._settings.connect_timeout)
                if left:
                    log.warning("pgcache: close() did not wait for %d write(s) still on the "
                                "wire after connect_timeout=%s s; other instances may keep "
                                "older copies of their keys until local_ttl_seconds", left,
                                self._settings.connect_timeout)
            if isinstance(self._listener, RelayLink):
                await self._listener.leave(self._coherence)
            elif self._listener is not None:
                await self._listener.close()
            if self._notifier is not None:
                await self._notifier.close(drain_timeout=self._settings.connect_timeout)
            if self._locks is not None:
                await self._locks.close()
            if self._db is not None:
                await self._db.pool.close()
            self._forget_parts()
        finally:
            self._shutting = None

    def _abandon(self) -> None:
        """Cut every connection without the loop they belong to (close() on another one)."""
        if isinstance(self._listener, RelayLink):
            self._listener.abandon(self._coherence)
        elif self._listener is not None:
            self._listener.abandon()
        if self._notifier is not None:
            self._notifier.abandon()
        if self._locks is not None:
            self._locks.abandon()
        if self._db is not None:
            self._db.pool.abandon()
        self._forget_parts()

    def _forget_parts(self) -> None:
        if self._local is not None:
            self._local.trusted_until = 0.0
            self._local.flush()
        self._db = self._reader = self._writer = self._loads = self._locks = None
        self._sweeper = self._listener = self._notifier = None

    async def __aenter__(self) -> PostgresCache:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

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

    def _ttl(self, ttl_seconds: Any) -> float | None:
        """A write's TTL: checked, defaulted, and capped by ``max_age_seconds``."""
        ttl = check_ttl(ttl_seconds, self._settings.default_ttl_seconds)
        max_age = self._settings.max_age_seconds
        if max_age is not None and (ttl is None or ttl > max_age):
            return max_age
        return ttl

    def _not_open(self) -> CacheStateError:
        if self._state is State.CLOSED:
            return CacheStateError("cache is closed", hint="create a new PostgresCache")
        return CacheStateError("cache is not connected",
                               hint="use `async with PostgresCache(settings)` or "
                                    "`await cache.connect()` first")

    # -- invalidation -----------------------------------------------------------------------

    def add_invalidation_callback(self, callback: InvalidationCallback) -> None:
        """Call ``callback(key, version)`` for each invalidation from another instance.

        ``(None, None)`` means the local cache was flushed (listener lost, or another instance
        truncated the cache). Called synchronously in the event loop; keep it short.
        """
        if not callable(callback):
            raise CacheArgumentError(
                f"the callback must be callable, got {type(callback).__name__}")
        self._coherence.add_callback(callback)

    def remove_invalidation_callback(self, callback: InvalidationCallback) -> None:
        self._coherence.remove_callback(callback)

    def _trimmed(self, version: int) -> None:
        """A trim deleted every row written before ``version``: tell everyone, us too."""
        if self._notifier is not None:
            self._notifier.enqueue_floor(version)
        self._coherence.floor(version)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, key: str) -> Any:
        """The value stored under ``key``, or None if there is none (or it expired)."""
        # None is never stored, so it can only mean "no usable local copy".
        value = self.get_local(key)
        if value is not None:
            return value
        reader = self._reader
        if reader is None:
            raise self._not_open()
        return await reader.get(key)

    def get_local(self, key: str) -> Any:
        """The value of ``key`` if this instance holds a usable local copy, else None.

        Never suspends and never asks PostgreSQL: a hit counts as a local hit, a None counts
        as nothing (``get`` would go on to PostgreSQL). A copy is usable while its TTL and the
        lease (``local_lease_seconds``) both hold.
        """
        local = self._local
        if local is not None:
            try:
                entry = local.lookup(key, _monotonic())
            except TypeError:
                raise key_type_error(key) from None
            if entry is not None:
                self._counters.local_hits += 1
                if entry.kind == KIND_BYTES:
                    return entry.value
                return self._codec.decode(entry.value, entry.kind)
        if not isinstance(key, str):
            raise key_type_error(key)
        return None

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those ``keys`` that exist, in one round trip for the local misses."""
        reader = self._reader
        if reader is None:
            raise self._not_open()
        return await reader.get_many(keys)

    # -- writes -----------------------------------------------------------------------------

    async def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> int:
        """Store ``value`` under ``key``; returns the version written.

        ``ttl_seconds`` None means ``default_ttl_seconds`` (which may be None: no expiry).
        Concurrent calls may share one statement (``write_batch_max``); each still gets its
        own version or its own error.
        """
        if not isinstance(key, str):
            raise key_type_error(key)
        # The common case (bytes, the default TTL) inline: this is the hottest write path.
        if type(value) is bytes:
            data, kind = value, KIND_BYTES
        else:
            data, kind = self._codec.encode(value)
        if ttl_seconds is None and self._max_age is None:
            ttl = self._default_ttl
        else:
            ttl = self._ttl(ttl_seconds)
        return await self._store(key, data, kind, ttl)

    async def _store(self, key: str, data: bytes, kind: int, ttl: float | None) -> int:
        """``set`` of an already encoded value (get_or_set's fill)."""
        writer = self._writer
        if writer is None:
            raise self._not_open()
        write = writer.prepare(key, data, kind, ttl)
        try:
            version = await writer.submit(write)
        except BaseException as exc:
            writer.abandon(write, exc)
            raise
        writer.done(write, version)
        return version

    async def set_many(self, mapping: Mapping[str, Any],
                       ttl_seconds: float | None = None) -> dict[str, int]:
        """Store every item of ``mapping`` in one statement; returns key -> version."""
        if not isinstance(mapping, Mapping):
            raise CacheArgumentError(
                f"set_many() takes a mapping of key -> value, got {type(mapping).__name__}",
                hint="pass a dict")
        items = []
        for key, value in mapping.items():
            if not isinstance(key, str):
                raise key_type_error(key)
            items.append((key, *self._codec.encode(value)))
        ttl = self._ttl(ttl_seconds)
        writer = self._writer
        if writer is None:
            raise self._not_open()
        return await writer.set_many(items, ttl)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` everywhere (table and every instance's copy); True if it existed."""
        if not isinstance(key, str):
            raise key_type_error(key)
        writer = self._writer
        if writer is None:
            raise self._not_open()
        return await writer.delete(key)

    async def invalidate(self, key: str) -> bool:
        """Same as ``delete``: the next read of ``key`` anywhere is a miss."""
        return await self.delete(key)

    async def get_or_set(self, key: str, loader: Loader, ttl_seconds: float | None = None, *,
                         loader_timeout_seconds: float | None = None) -> Any:
        """The value of ``key``; on a miss, ``loader()`` (sync or async) computes and stores it.

        The loader runs once per miss across all instances (see pgcache/README.md). A loader
        returning None stores nothing; a loader's own exception propagates unchanged.
        ``loader_timeout_seconds`` (default: the setting) bounds an async loader.
        """
        if not isinstance(key, str):
            raise key_type_error(key)
        check_loader(loader)
        ttl = self._ttl(ttl_seconds)
        timeout = self._settings.loader_timeout_seconds
        if loader_timeout_seconds is not None:
            timeout = _positive("loader_timeout_seconds", loader_timeout_seconds)
        value = await self.get(key)
        if value is not None:
            return value
        loads = self._loads
        if loads is None:  # closed while get() was on the wire
            raise self._not_open()
        return await loads.get_or_set(key, loader, ttl, timeout)

    # -- maintenance ------------------------------------------------------------------------

    async def cleanup_expired(self, batch_size: int | None = None) -> int:
        """Delete expired rows in batches of ``batch_size`` (default sweep_batch_size)."""
        sweeper = self._sweeper
        if sweeper is None:
            raise self._not_open()
        return await sweeper.cleanup_expired(batch_size)

    async def trim(self) -> int:
        """Bring the table within ``max_entries`` / ``max_bytes`` now (the sweeper does this
        by itself); how many rows were deleted (0 if within bounds, or if another instance
        is trimming right now)."""
        sweeper = self._sweeper
        if sweeper is None:
            raise self._not_open()
        return await sweeper.trim()

    async def truncate(self) -> None:
        """Empty the table and every instance's local cache."""
        writer = self._writer
        if writer is None:
            raise self._not_open()
        await writer.truncate()
        self._coherence.flush()

    async def clear(self) -> None:
        """Same as ``truncate``."""
        await self.truncate()

    async def wait_notified(self, within_seconds: float = 5.0) -> bool:
        """Wait until this instance's queued notifications are sent (False on timeout)."""
        within = _positive("within_seconds", within_seconds, allow_zero=True)
        if self._notifier is None:
            return True
        return await self._notifier.drain(within)

    @property
    def stats(self) -> CacheStats:
        """A snapshot of this instance's counters."""
        c, listener, lease = self._counters, self._listener, self._lease
        return CacheStats(
            local_hits=c.local_hits, remote_hits=c.remote_hits, misses=c.misses,
            sets=c.sets, deletes=c.deletes, loads=c.loads,
            invalidations_received=c.invalidations_received,
            local_evictions=c.local_evictions, local_flushes=c.local_flushes,
            listener_reconnects=listener.reconnects if listener is not None else 0,
            listener_connected=listener is not None and listener.connected,
            local_size=len(self._local) if self._local is not None else 0,
            notifications_sent=c.notifications_sent, notified_keys=c.notified_keys,
            notify_errors=c.notify_errors, write_statements=c.write_statements,
            shared_reads=c.shared_reads,
            lease_valid=(self._local is not None
                         and _monotonic() < self._local.trusted_until),
            lease_lapses=lease.lapses if lease is not None else 0,
            heartbeats_sent=c.heartbeats_sent,
            foreign_notifications=c.foreign_notifications,
            lock_waits=c.lock_waits, retries=c.retries, trimmed=c.trimmed,
        )


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise CacheArgumentError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)

