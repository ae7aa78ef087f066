"""``PostgresCache``: the public API, tying pool, local cache, listener and notifier together."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import asyncpg
import structlog

from ._connect import CONNECTION_ERRORS, connect_once, describe_address, server_error
from ._errors import (
    CacheArgumentError,
    CacheConnectionError,
    CacheServerError,
    CacheStateError,
    PgCacheError,
)
from ._listener import FLUSH_ALL, Listener, Notifier
from ._local import LocalCache, encode_key
from ._pool import Connection, ConnectionPool
from ._schema import SchemaNames, Statements, lock_key
from ._settings import CacheSettings
from ._stats import CacheStats
from ._writes import Write, WriteQueue

log = structlog.get_logger("pgcache")

InvalidationCallback = Callable[[str | None, int | None], None]
Loader = Callable[[], Any]

KIND_BYTES = 0
KIND_SERIALIZED = 1

_monotonic = time.monotonic
# What a shared fetch resolves to when it failed: each read that shared it fetches for itself.
_FETCH_FAILED = object()


class PostgresCache:
    """A cache in one PostgreSQL table with a local LRU kept coherent by LISTEN/NOTIFY.

    Create one per application instance and share it between all its coroutines.
    """

    def __init__(self, settings: CacheSettings) -> None:
        if not isinstance(settings, CacheSettings):
            raise CacheArgumentError(
                f"PostgresCache() takes a CacheSettings, got {type(settings).__name__}")
        self._settings = settings
        self._names = SchemaNames.from_settings(settings)
        self._sql = Statements.build(self._names)
        self._serializer = settings.resolved_serializer
        self._instance_id = secrets.token_hex(8)
        self._local: LocalCache | None = (
            LocalCache(settings.local_max_entries, settings.local_ttl_seconds)
            if settings.local_cache_enabled else None)
        self._local_ttl = settings.local_ttl_seconds
        self._default_ttl = settings.default_ttl_seconds
        # Our own notifications come back to our listener; recognise them before parsing.
        self._own_payload_prefix = f'["{self._instance_id}"'
        self._pool: ConnectionPool | None = None
        self._listener: Listener | None = None
        self._notifier: Notifier | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._state = "new"
        # Local copies may be served (and installed) only while this is true: with a listener,
        # from LISTEN established until the listener is lost.
        self._trusted = False
        self._callbacks: list[InvalidationCallback] = []
        self._writes: WriteQueue | None = None
        if settings.write_batch_max > 1:
            self._writes = WriteQueue(self._commit_one, self._write_batch,
                                      max_batch=settings.write_batch_max,
                                      slots=settings.write_batch_concurrency)
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self._address = describe_address(settings.dsn)
        self._local_hits = 0
        self._remote_hits = 0
        self._misses = 0
        self._sets = 0
        self._deletes = 0
        self._loads = 0
        self._invalidations_received = 0
        self._local_evictions = 0
        self._local_flushes = 0
        self._write_statements = 0
        # Write statements of this instance on the wire (single, batched, set_many, delete).
        self._writing = 0
        self._shared_reads = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- schema ---------------------------------------------------------------------------------

    @staticmethod
    async def init_db(settings: CacheSettings) -> int:
        """Create or upgrade the cache's tables (idempotent, safe to run concurrently).

        Returns the schema version now in place. The table's persistence follows
        ``settings.logged`` (an existing table is altered if it differs).
        """
        names = SchemaNames.from_settings(settings)
        conn = await connect_once(settings, settings.dsn, settings.application_name)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", names.migration_lock)
                await conn.execute(names.create_version_table)
                current = await conn.fetchval(names.select_schema_version)
                for migration in names.migrations(logged=settings.logged):
                    if migration.version <= current:
                        continue
                    for statement in migration.statements:
                        await conn.execute(statement)
                    await conn.execute(names.insert_schema_version, migration.version,
                                       migration.description)
                    current = migration.version
                persistence = await conn.fetchval(names.select_persistence, names.table)
                wanted = "p" if settings.logged else "u"
                if persistence != wanted:
                    mode = "LOGGED" if settings.logged else "UNLOGGED"
                    await conn.execute(f'ALTER TABLE "{names.table}" SET {mode}')
            return int(current)
        except asyncpg.PostgresError as exc:
            raise server_error(exc, "init_db") from exc
        finally:
            await conn.close()

    @staticmethod
    async def drop_db(settings: CacheSettings) -> None:
        """Drop the cache's tables (for tests and teardown)."""
        names = SchemaNames.from_settings(settings)
        conn = await connect_once(settings, settings.dsn, settings.application_name)
        try:
            for statement in names.drop_statements():
                await conn.execute(statement)
        finally:
            await conn.close()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def settings(self) -> CacheSettings:
        return self._settings

    @property
    def instance_id(self) -> str:
        """This instance's id; its own notifications carry it and are ignored on receipt."""
        return self._instance_id

    @property
    def connected(self) -> bool:
        return self._state == "open"

    @property
    def table_name(self) -> str:
        return self._names.table

    async def connect(self) -> None:
        """Open the pool, the notifier and the listener; fails with CacheConnectionError."""
        if self._state == "closed":
            raise CacheStateError("cache is closed", hint="create a new PostgresCache")
        if self._state != "new":
            raise CacheStateError(f"cache is already {self._state}",
                                  hint="call connect() once per PostgresCache")
        self._state = "connecting"
        self._loop = asyncio.get_running_loop()
        settings = self._settings
        try:
            self._pool = ConnectionPool(self._open_pool_connection,
                                        min_size=max(settings.min_pool_size, 1),
                                        max_size=settings.max_pool_size)
            await self._pool.start()
            await self._check_schema()
            if not settings.disable_notify:
                self._notifier = Notifier(settings, self._open_notifier_connection,
                                          self._instance_id)
                await self._notifier.start()
            if settings.listener_enabled:
                self._listener = Listener(settings, self._open_listener_connection,
                                          on_payload=self._on_payload, on_lost=self._on_lost,
                                          on_ready=self._on_ready)
                await self._listener.start()
            if settings.sweep_interval_seconds > 0:
                self._sweeper = asyncio.get_running_loop().create_task(
                    self._sweep_forever(), name="pgcache-sweeper")
        except BaseException:
            await self._shutdown()
            self._state = "new"
            raise
        self._trusted = self._local is not None
        self._state = "open"

    async def close(self) -> None:
        """Send pending notifications, then close every connection; idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._trusted = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sweeper
            self._sweeper = None
        if self._notifier is not None:
            await self._notifier.close(drain_timeout=self._settings.connect_timeout)
            self._notifier = None
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._local is not None:
            self._local.flush()

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

    async def _open_listener_connection(self) -> Connection:
        dsn = self._settings.listener_dsn or self._settings.dsn
        return await connect_once(self._settings, dsn,
                                   f"{self._settings.application_name}-listen"[:63])

    async def _check_schema(self) -> None:
        try:
            version = await self._call("fetchval", self._names.select_schema_version)
        except CacheServerError as exc:
            if exc.sqlstate != "42P01":  # undefined_table
                raise
            version = 0
        if version < self._names.latest_version:
            raise CacheStateError(
                f"the cache schema for prefix {self._settings.schema_prefix!r} is at version "
                f"{version}, this pgcache needs {self._names.latest_version}",
                hint="run `await PostgresCache.init_db(settings)` once before connecting")

    def _require_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is None or self._state != "open":
            if self._state == "closed":
                raise CacheStateError("cache is closed", hint="create a new PostgresCache")
            if self._state != "connecting":
                raise CacheStateError("cache is not connected",
                                      hint="use `async with PostgresCache(settings)` or "
                                           "`await cache.connect()` first")
            assert pool is not None
        return pool

    async def _call(self, method: str, sql: str, *args: Any) -> Any:
        """Run one statement on a pooled connection, mapping asyncpg errors to ours."""
        pool = self._require_pool()
        conn = pool.try_acquire()
        if conn is None:
            conn = await self._acquire(pool)
        try:
            result = await getattr(conn, method)(sql, *args)
        except BaseException as exc:
            mapped = self._failed(pool, conn, exc, method)
            if mapped is exc:
                raise
            raise mapped from exc
        pool.release(conn)
        return result

    def _failed(self, pool: ConnectionPool, conn: Connection, exc: BaseException,
                what: str) -> BaseException:
        """Return ``conn`` after ``exc`` (or drop it) and say what to raise instead."""
        if isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, CONNECTION_ERRORS):
            pool.release(conn)  # the server rejected the statement; the session is fine
            return server_error(exc, what)
        # Cancelled, timed out or broken mid-statement: the session state is unknown.
        pool.discard(conn)
        if isinstance(exc, CONNECTION_ERRORS):
            return self._connection_error(exc)
        return exc

    async def _acquire(self, pool: ConnectionPool) -> Connection:
        try:
            return await pool.acquire()
        except PgCacheError:
            raise
        except CONNECTION_ERRORS as exc:
            raise self._connection_error(exc) from exc

    def _connection_error(self, exc: BaseException) -> CacheConnectionError:
        if isinstance(exc, CacheConnectionError):
            return exc
        if isinstance(exc, TimeoutError):
            return CacheConnectionError(
                f"PostgreSQL at {self._address} did not answer within command_timeout="
                f"{self._settings.command_timeout} s", address=self._address,
                hint="check the server's load and locks, or raise command_timeout")
        return CacheConnectionError(
            f"lost the connection to PostgreSQL at {self._address}: {exc}",
            address=self._address, hint="retry; if it persists, check the server and network")

    # -- invalidation ---------------------------------------------------------------------------

    def add_invalidation_callback(self, callback: InvalidationCallback) -> None:
        """Call ``callback(key, version)`` for each invalidation from another instance.

        ``(None, None)`` means the local cache was flushed (listener lost, or another instance
        truncated the cache). Called synchronously in the event loop; keep it short.
        """
        self._callbacks.append(callback)

    def remove_invalidation_callback(self, callback: InvalidationCallback) -> None:
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def _notify_callbacks(self, key: str | None, version: int | None) -> None:
        for callback in self._callbacks:
            try:
                callback(key, version)
            except Exception:
                log.exception("pgcache_invalidation_callback_failed")

    def _on_payload(self, payload: str) -> None:
        if payload.startswith(self._own_payload_prefix):
            return
        try:
            items = json.loads(payload)
        except ValueError:
            log.warning("pgcache_bad_notification", payload=payload[:200])
            return
        if not isinstance(items, list) or not items or items[0] == self._instance_id:
            return
        local = self._local
        for i in range(1, len(items) - 1, 2):
            version, name = items[i], items[i + 1]
            if not isinstance(version, int) or not isinstance(name, str):
                continue
            if version == FLUSH_ALL:
                self._flush_local()
                self._notify_callbacks(None, None)
                continue
            if version > 0:
                key: str | None = name
            else:
                version = -version
                key = local.key_for_digest(name) if local is not None else None
            self._invalidations_received += 1
            if key is None:
                continue  # a long key this instance neither holds nor is reading
            if local is not None and local.invalidate(key, version):
                self._local_evictions += 1
            if self._callbacks:
                self._notify_callbacks(key, version)

    def _flush_local(self) -> None:
        if self._local is not None:
            self._local.flush()
            self._local_flushes += 1

    def _on_lost(self, reason: str) -> None:
        # Notifications may be lost from here on: stop trusting copies until LISTEN is back.
        self._trusted = False
        self._flush_local()
        self._notify_callbacks(None, None)

    def _on_ready(self) -> None:
        if self._local is not None:
            self._local.flush()  # disowns reads that began while we were deaf
        self._trusted = self._state == "open"

    # -- values ---------------------------------------------------------------------------------

    def _encode_value(self, value: Any) -> tuple[bytes, int]:
        if type(value) is bytes:
            return value, KIND_BYTES
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value), KIND_BYTES
        if value is None:
            raise CacheArgumentError("None cannot be cached: get() returns None for a miss",
                                     hint="delete the key instead, or store a sentinel value")
        return self._serializer.dumps(value), KIND_SERIALIZED

    def _decode_value(self, data: bytes, kind: int) -> Any:
        if kind == KIND_BYTES:
            return data
        return self._serializer.loads(data)

    def _ttl(self, ttl_seconds: float | None) -> float | None:
        if ttl_seconds is None:
            return self._settings.default_ttl_seconds
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float) \
                or not ttl_seconds > 0 or ttl_seconds == float("inf"):
            raise CacheArgumentError(f"ttl_seconds must be a positive number, got {ttl_seconds!r}")
        return float(ttl_seconds)

    def _expires(self, ttl: float | None) -> float:
        local_ttl = self._local_ttl
        if ttl is not None and ttl < local_ttl:
            local_ttl = ttl
        return _monotonic() + local_ttl

    # -- reads ----------------------------------------------------------------------------------

    async def get(self, key: str) -> Any:
        """The value stored under ``key``, or None if there is none (or it expired)."""
        # None is never stored, so it can only mean "no usable local copy".
        value = self.get_local(key)
        if value is not None:
            return value
        return await self._get_remote(key)

    def get_local(self, key: str) -> Any:
        """The value of ``key`` if this instance holds a usable local copy, else None.

        Never suspends and never asks PostgreSQL: a hit counts as a local hit, a None counts
        as nothing (``get`` would go on to PostgreSQL). For latency-critical paths that can
        fall back, and for telling local hits apart without timing them.
        """
        local = self._local
        if local is not None and self._trusted:
            entry = local.data.get(key)
            if entry is not None:
                if entry.expires > _monotonic():
                    local.data.move_to_end(key)
                    self._local_hits += 1
                    if entry.kind == KIND_BYTES:
                        return entry.value
                    return self._serializer.loads(entry.value)
                local.remove(key)
        return None

    async def _get_remote(self, key: str) -> Any:
        if not isinstance(key, str):
            raise CacheArgumentError(f"keys are str, got {type(key).__name__}")
        local = self._local
        if local is not None and self._trusted:
            # Another read of this key is on the wire and no invalidation of it (nor a flush)
            # arrived since it began: share its answer instead of asking again.
            shared = local.joinable(key)
            if shared is not None:
                row = await asyncio.shield(shared)
                if row is not _FETCH_FAILED:
                    self._shared_reads += 1
                    return self._answer(row)
        # The round trip is inlined (no _call): this is the hot path of every local miss.
        pool = self._pool
        if pool is None or self._state != "open":
            pool = self._require_pool()
        conn = pool.try_acquire()
        if conn is None:
            conn = await self._acquire(pool)
        tracking = local is not None and self._trusted
        if tracking:
            assert local is not None and self._loop is not None
            shared = self._loop.create_future()
            epoch = local.begin_fetch(key, shared)
        try:
            row = await conn.fetchrow(self._sql.get if local is not None else self._sql.get_value,
                                      encode_key(key))
        except BaseException as exc:
            if tracking:
                assert local is not None
                local.end_fetch(key, shared)
                shared.set_result(_FETCH_FAILED)  # the sharers fetch for themselves
            mapped = self._failed(pool, conn, exc, "get")
            if mapped is exc:
                raise
            raise mapped from exc
        pool.release(conn)
        if tracking:
            assert local is not None
            invalidated = local.end_fetch(key, shared)
            shared.set_result(row)
            # Install only what no invalidation overtook (race a) and only while trusted.
            if row is not None and row[2] >= invalidated and epoch == local.epoch \
                    and self._trusted:
                local.install(key, row[0], row[1], row[2], self._expires(row[3]))
        return self._answer(row)

    def _answer(self, row: Any) -> Any:
        """The value of a fetched row (None: a miss), counted."""
        if row is None:
            self._misses += 1
            return None
        self._remote_hits += 1
        if row[1] == KIND_BYTES:
            return row[0]
        return self._serializer.loads(row[0])

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those ``keys`` that exist, in one round trip for the local misses."""
        result: dict[str, Any] = {}
        wanted: dict[bytes, str] = {}
        local = self._local
        trusted = local is not None and self._trusted
        now = _monotonic()
        for key in keys:
            if not isinstance(key, str):
                raise CacheArgumentError(f"keys are str, got {type(key).__name__}")
            if trusted:
                assert local is not None
                entry = local.data.get(key)
                if entry is not None and entry.expires > now:
                    local.data.move_to_end(key)
                    self._local_hits += 1
                    result[key] = self._decode_value(entry.value, entry.kind)
                    continue
            wanted[encode_key(key)] = key
        if not wanted:
            return result
        self._require_pool()
        epochs: dict[str, int] = {}
        if trusted:
            assert local is not None
            epochs = {key: local.begin_fetch(key) for key in wanted.values()}
        invalidated: dict[str, int] = {}
        try:
            rows = await self._call("fetch", self._sql.get_many, list(wanted))
        finally:
            if trusted:
                assert local is not None
                invalidated = {key: local.end_fetch(key) for key in epochs}
        for key_bytes, value, kind, version, ttl in rows:
            key = wanted[bytes(key_bytes)]
            if trusted and self._trusted:
                assert local is not None
                if version >= invalidated[key] and epochs[key] == local.epoch:
                    local.install(key, value, kind, version, self._expires(ttl))
            self._remote_hits += 1
            result[key] = self._decode_value(value, kind)
        self._misses += len(wanted) - len(rows)
        return result

    # -- writes ---------------------------------------------------------------------------------

    def _after_write(self, key: str, version: int, value: bytes | None, kind: int,
                     ttl: float | None, notified: bool = False) -> None:
        """A write of ``key`` at ``version`` committed: tell the others (unless its own
        transaction did), update our copy."""
        if self._notifier is not None and not notified:
            self._notifier.enqueue(key, version)
        local = self._local
        if local is not None:
            if local.inflight:
                local.invalidate(key, version)
            if value is None:
                local.remove(key)
            elif self._trusted:
                # install() replaces any older copy; invalidate() above only matters for
                # reads in flight (and install skips when a newer copy is held).
                local.install(key, value, kind, version, self._expires(ttl))
            else:
                local.invalidate(key, version)

    async def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> int:
        """Store ``value`` under ``key``; returns the version written.

        ``ttl_seconds`` None means ``default_ttl_seconds`` (which may be None: no expiry).
        Concurrent calls may share one statement (``write_batch_max``); each still gets its
        own version or its own error.
        """
        if not isinstance(key, str):
            raise CacheArgumentError(f"keys are str, got {type(key).__name__}")
        if type(value) is bytes:
            data, kind = value, KIND_BYTES
        else:
            data, kind = self._encode_value(value)
        ttl = self._default_ttl if ttl_seconds is None else self._ttl(ttl_seconds)
        if self._pool is None or self._state != "open":
            self._require_pool()
        write = Write(key, encode_key(key), data, kind, ttl)
        if self._writes is None:
            return await self._commit_one(write)
        return await self._writes.submit(write)

    async def _commit_one(self, write: Write) -> int:
        """Write one row on its own statement, then update copies and notify.

        A lone write (no other write statement of this instance on the wire, nothing queued
        for the notifier) carries its own NOTIFY: one statement and one transaction instead of
        two, and the notification is delivered exactly when the write commits. NOTIFY's
        database-wide lock at commit is then taken once per write, as the notifier would take
        it for this write alone anyway; as soon as writes overlap they go back to the notifier,
        which batches them, so concurrent writers never queue on that lock.
        """
        notifier = self._notifier
        inline = notifier is not None and self._writing == 0 and notifier.idle
        version = await self._write_one(write, notifier if inline else None)
        self._sets += 1
        self._after_write(write.key, version, write.data, write.kind, write.ttl, inline)
        return version

    async def _write_one(self, write: Write, notifier: Notifier | None = None) -> int:
        pool = self._require_pool()
        # Counted from here (no suspension since _commit_one looked): a write that arrives
        # while this one waits for a connection does not count itself alone.
        self._writing += 1
        conn = pool.try_acquire()
        if conn is None:
            try:
                conn = await self._acquire(pool)
            except BaseException:
                self._writing -= 1
                raise
        try:
            self._write_statements += 1
            if notifier is None:
                version: int = await conn.fetchval(self._sql.set, write.key_bytes, write.data,
                                                   write.kind, write.ttl)
            else:
                head, tail = notifier.inline_parts(write.key)
                version = await conn.fetchval(self._sql.set_notify, write.key_bytes,
                                              write.data, write.kind, write.ttl,
                                              self._settings.notify_channel, head, tail)
        except BaseException as exc:
            self._writing -= 1
            mapped = self._failed(pool, conn, exc, "set")
            if mapped is exc:
                raise
            raise mapped from exc
        self._writing -= 1
        pool.release(conn)
        if notifier is not None:
            notifier.sent_inline()
        return version

    async def _write_batch(self, batch: list[Write]) -> list[int | BaseException]:
        """Write distinct keys in one statement; per-write results (version or error)."""
        results: list[int | BaseException] = []
        self._write_statements += 1
        # Rows in key order: two instances upserting overlapping batches then lock them in the
        # same order and cannot deadlock.
        ordered = sorted(batch, key=lambda w: w.key_bytes)
        try:
            self._writing += 1
            try:
                rows = await self._call(
                    "fetch", self._sql.set_batch, [w.key_bytes for w in ordered],
                    [w.data for w in ordered], [w.kind for w in ordered],
                    [w.ttl for w in ordered])
            finally:
                self._writing -= 1
        except CacheServerError:
            # One write was rejected (a constraint, a trigger...): write them one by one so
            # that only the offending one fails.
            for write in batch:
                try:
                    results.append(await self._write_one(write))
                except PgCacheError as exc:
                    results.append(exc)
        except PgCacheError as exc:
            return [exc] * len(batch)
        else:
            by_key = {bytes(row[0]): row[1] for row in rows}
            results = [by_key[w.key_bytes] for w in batch]
        for write, result in zip(batch, results, strict=True):
            if not isinstance(result, BaseException):
                self._sets += 1
                self._after_write(write.key, result, write.data, write.kind, write.ttl)
        return results

    async def set_many(self, mapping: Mapping[str, Any],
                       ttl_seconds: float | None = None) -> dict[str, int]:
        """Store every item of ``mapping`` in one statement; returns key -> version."""
        ttl = self._ttl(ttl_seconds)
        by_bytes: dict[bytes, str] = {}
        values: list[bytes] = []
        kinds: list[int] = []
        items: list[tuple[bytes, str, bytes, int]] = []
        for key, value in mapping.items():
            if not isinstance(key, str):
                raise CacheArgumentError(f"keys are str, got {type(key).__name__}")
            data, kind = self._encode_value(value)
            items.append((encode_key(key), key, data, kind))
        # Key order: concurrent overlapping set_many calls lock rows alike (no deadlock).
        items.sort(key=lambda item: item[0])
        for key_bytes, key, data, kind in items:
            by_bytes[key_bytes] = key
            values.append(data)
            kinds.append(kind)
        if not by_bytes:
            return {}
        self._writing += 1
        try:
            rows = await self._call("fetch", self._sql.set_many, list(by_bytes), values, kinds,
                                    ttl)
        finally:
            self._writing -= 1
        data_by_key = dict(zip(by_bytes.values(), zip(values, kinds, strict=True), strict=True))
        versions: dict[str, int] = {}
        for key_bytes, version in rows:
            key = by_bytes[bytes(key_bytes)]
            versions[key] = version
            data, kind = data_by_key[key]
            self._after_write(key, version, data, kind, ttl)
        self._sets += len(versions)
        return versions

    async def delete(self, key: str) -> bool:
        """Remove ``key`` everywhere (table and every instance's copy); True if it existed."""
        if not isinstance(key, str):
            raise CacheArgumentError(f"keys are str, got {type(key).__name__}")
        self._writing += 1
        try:
            version = await self._call("fetchval", self._sql.delete, encode_key(key))
        finally:
            self._writing -= 1
        self._deletes += 1
        if version is None:
            # Nothing was stored, so no instance can hold a valid copy; drop ours regardless.
            if self._local is not None:
                self._local.remove(key)
            return False
        self._after_write(key, version, None, KIND_BYTES, None)
        return True

    async def invalidate(self, key: str) -> bool:
        """Same as ``delete``: the next read of ``key`` anywhere is a miss."""
        return await self.delete(key)

    async def get_or_set(self, key: str, loader: Loader,
                         ttl_seconds: float | None = None) -> Any:
        """The value of ``key``; on a miss, ``loader()`` (sync or async) computes and stores it.

        The loader runs once per miss across all instances: concurrent callers in this
        instance share one load, and instances serialise on a PostgreSQL advisory lock (the
        lock holder's result is read by the others). A loader returning None stores nothing.
        """
        value = await self.get(key)
        if value is not None:
            return value
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await self._load_once(key, loader, self._ttl(ttl_seconds))
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning if nobody waits
            raise
        else:
            future.set_result(value)
        finally:
            del self._loading[key]
        return value

    async def _load_once(self, key: str, loader: Loader, ttl: float | None) -> Any:
        pool = self._require_pool()
        key_bytes = encode_key(key)
        lock = lock_key(self._names.table, key_bytes)
        conn = pool.try_acquire()
        if conn is None:
            conn = await self._acquire(pool)
        try:
            await conn.execute(self._sql.lock, lock)
            try:
                value = await self._load_locked(conn, key, key_bytes, loader, ttl)
            finally:
                await conn.execute(self._sql.unlock, lock)
        except BaseException as exc:
            # Whether the advisory lock is still held is unknown: drop the session with it.
            pool.discard(conn)
            if isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, CONNECTION_ERRORS):
                raise server_error(exc, "get_or_set") from exc
            if isinstance(exc, CONNECTION_ERRORS):
                raise self._connection_error(exc) from exc
            raise
        pool.release(conn)
        return value

    async def _load_locked(self, conn: Connection, key: str, key_bytes: bytes, loader: Loader,
                           ttl: float | None) -> Any:
        row = await conn.fetchrow(self._sql.get, key_bytes)
        if row is not None:  # another instance loaded it while we waited for the lock
            self._remote_hits += 1
            return self._decode_value(row[0], row[1])
        value = loader()
        if inspect.isawaitable(value):
            value = await value
        self._loads += 1
        if value is None:
            return None
        data, kind = self._encode_value(value)
        version = await conn.fetchval(self._sql.set, key_bytes, data, kind, ttl)
        self._sets += 1
        self._after_write(key, version, data, kind, ttl)
        return value

    # -- maintenance ----------------------------------------------------------------------------

    async def cleanup_expired(self, batch_size: int | None = None) -> int:
        """Delete expired rows in batches of ``batch_size`` (default sweep_batch_size)."""
        size = batch_size or self._settings.sweep_batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise CacheArgumentError(f"batch_size must be a positive integer, got {size!r}")
        total = 0
        while True:
            status: str = await self._call("execute", self._sql.sweep, size)
            removed = int(status.rsplit(" ", 1)[-1])
            total += removed
            if removed < size:
                return total

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.sweep_interval_seconds)
            try:
                removed = await self.cleanup_expired()
            except PgCacheError as exc:
                log.warning("pgcache_sweep_failed", error=str(exc))
                continue
            if removed:
                log.debug("pgcache_swept", rows=removed)

    async def truncate(self) -> None:
        """Empty the table and every instance's local cache."""
        await self._call("execute", self._sql.truncate)
        self._flush_local()
        if self._notifier is not None:
            self._notifier.enqueue_flush_all()

    async def clear(self) -> None:
        """Same as ``truncate``."""
        await self.truncate()

    async def wait_notified(self, within_seconds: float = 5.0) -> bool:
        """Wait until this instance's queued notifications are sent (False on timeout)."""
        if self._notifier is None:
            return True
        return await self._notifier.drain(within_seconds)

    @property
    def stats(self) -> CacheStats:
        """A snapshot of this instance's counters."""
        notifier, listener = self._notifier, self._listener
        return CacheStats(
            local_hits=self._local_hits,
            remote_hits=self._remote_hits,
            misses=self._misses,
            sets=self._sets,
            deletes=self._deletes,
            loads=self._loads,
            invalidations_received=self._invalidations_received,
            local_evictions=self._local_evictions,
            local_flushes=self._local_flushes,
            listener_reconnects=listener.reconnects if listener is not None else 0,
            listener_connected=listener is not None and listener.connected,
            local_size=len(self._local) if self._local is not None else 0,
            notifications_sent=notifier.notifications_sent if notifier is not None else 0,
            notified_keys=notifier.keys_sent if notifier is not None else 0,
            notify_errors=notifier.send_errors if notifier is not None else 0,
            write_statements=self._write_statements,
            shared_reads=self._shared_reads,
        )
