"""The write path: set, set_many, delete and truncate, each one statement that carries its
own notification.

Every write statement announces itself in its own transaction (``pg_notify`` in the same
statement): the notification is delivered if and only if the write commits, the moment it
commits. No write can be committed and left unannounced, whatever happens to the writer
afterwards (a crash, a broken connection). Concurrent ``set`` calls share statements
(``_batching.WriteQueue``), so one NOTIFY covers a whole batch.

A write is in flight (``LocalCache.begin``) from before it is sent until it returns, so an
invalidation for a newer version that arrives meanwhile (another instance wrote the key too)
stops it from installing its own, older, version. A write whose outcome is unknown (a lost
connection, a cancellation) drops the instance's copy of the key, and stops every operation
of that key in flight from installing: the row may now hold something newer than any of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from operator import attrgetter

from ._batching import Write, WriteQueue
from ._db import Database
from ._errors import CacheServerError, PgCacheError
from ._keys import key_bytes, key_hash
from ._local import LocalCache
from ._payload import chunks, flush_all, header, inline_parts, name
from ._schema import Statements
from ._settings import CacheSettings
from ._stats import Counters

_monotonic = time.monotonic
# Above every version (bigint): "something newer than anything held may have been written".
_UNKNOWN = 1 << 63


def _collision(key: str) -> CacheServerError:
    return CacheServerError(
        f"set({key[:80]!r}): another key with the same 16-byte hash is stored; nothing was "
        "written", hint="this is a SHA-256 collision; please report it")


class Writer:
    """Writes of one instance, announced in their own transactions."""

    __slots__ = ("_announce", "_channel", "_counters", "_db", "_expires", "_instance_id",
                 "_local", "_max_payload", "_next_seq", "_queue", "_sql")

    def __init__(self, db: Database, sql: Statements, settings: CacheSettings,
                 local: LocalCache | None, expires: Callable[[float | None], float],
                 counters: Counters, instance_id: str, next_seq: Callable[[], int]) -> None:
        self._db = db
        self._sql = sql
        self._local = local
        self._expires = expires
        self._counters = counters
        self._instance_id = instance_id
        self._next_seq = next_seq
        self._announce = not settings.disable_notify
        self._channel = settings.notify_channel
        self._max_payload = settings.notify_max_payload_bytes
        self._queue: WriteQueue | None = None
        if settings.write_batch_max > 1:
            self._queue = WriteQueue(self._write_one, self._write_batch,
                                     max_batch=settings.write_batch_max,
                                     slots=settings.write_batch_concurrency)

    # -- the local copy around a write ------------------------------------------------------

    def _begin(self, key: str) -> int:
        local = self._local
        return local.begin(key) if local is not None else 0

    def _settle(self, key: str, version: int, data: bytes | None, kind: int,
                ttl: float | None, epoch: int) -> None:
        """``key`` was written (``data``) or deleted (None) at ``version``: update our copy."""
        local = self._local
        if local is None:
            return
        announced = local.end(key)
        local.invalidate(key, version)  # older copies go; operations in flight learn of it
        if data is not None and version >= announced and epoch == local.epoch \
                and _monotonic() < local.trusted_until:
            local.install(key, data, kind, version, self._expires(ttl))

    def _abandon(self, key: str) -> None:
        """The write of ``key`` failed, or may have: trust no copy of it from before."""
        local = self._local
        if local is not None:
            local.end(key)
            local.invalidate(key, _UNKNOWN)

    # -- set --------------------------------------------------------------------------------

    async def set(self, key: str, data: bytes, kind: int, ttl: float | None) -> int:
        """Write one value; its version. Concurrent calls may share a statement."""
        stored = key_bytes(key)
        write = Write(key, stored, key_hash(stored), data, kind, ttl)
        epoch = self._begin(key)
        try:
            if self._queue is None:
                version = await self._write_one(write)
            else:
                version = await self._queue.submit(write)
        except BaseException:
            self._abandon(key)
            raise
        self._counters.sets += 1
        self._settle(key, version, data, kind, ttl, epoch)
        return version

    async def _write_one(self, write: Write) -> int:
        counters = self._counters
        if self._announce:
            head, tail = inline_parts(self._instance_id, self._next_seq(), write.key)
            version: int | None = await self._db.run(
                "set", "fetchval", self._sql.set_notify, write.key_hash, write.key_bytes,
                write.data, write.kind, write.ttl, self._channel, head, tail)
        else:
            version = await self._db.run(
                "set", "fetchval", self._sql.set, write.key_hash, write.key_bytes, write.data,
                write.kind, write.ttl)
        counters.write_statements += 1
        if version is None:
            raise _collision(write.key)
        if self._announce:
            counters.notifications_sent += 1
            counters.notified_keys += 1
        return version

    async def _write_batch(self, batch: list[Write]) -> list[int | BaseException]:
        """Distinct keys in one statement; per-write results (version or error)."""
        try:
            versions = await self._statement(batch)
        except CacheServerError:
            # One write was rejected (a constraint, a trigger...): write them one by one so
            # that only the offending one fails.
            results: list[int | BaseException] = []
            for write in batch:
                try:
                    results.append(await self._write_one(write))
                except PgCacheError as exc:
                    results.append(exc)
            return results
        except PgCacheError as exc:
            return [exc] * len(batch)
        return [versions.get(w.key_hash) or _collision(w.key) for w in batch]

    async def _statement(self, writes: list[Write]) -> dict[bytes, int]:
        """One statement writing ``writes`` (distinct keys); key hash -> version written."""
        # Rows in hash order: two instances upserting overlapping batches then lock them in
        # the same order and cannot deadlock.
        ordered = sorted(writes, key=attrgetter("key_hash"))
        columns = ([w.key_hash for w in ordered], [w.key_bytes for w in ordered],
                   [w.data for w in ordered], [w.kind for w in ordered],
                   [w.ttl for w in ordered])
        counters = self._counters
        if self._announce:
            head = header(self._instance_id, self._next_seq()) + ","
            named = [name(w.key) for w in ordered]
            texts = [text for text, _ in named]
            chunk = chunks(texts, head=len(head), limit=self._max_payload)
            rows = await self._db.run(
                "set", "fetch", self._sql.set_batch_notify, *columns, self._channel, head,
                texts, [sign for _, sign in named], chunk)
        else:
            rows = await self._db.run("set", "fetch", self._sql.set_batch, *columns)
        counters.write_statements += 1
        versions = {bytes(row[0]): row[1] for row in rows}
        if self._announce and versions:
            by_hash = dict(zip(columns[0], chunk, strict=True))
            counters.notifications_sent += len({by_hash[h] for h in versions})
            counters.notified_keys += len(versions)
        return versions

    async def set_many(self, items: list[tuple[str, bytes, int]],
                       ttl: float | None) -> dict[str, int]:
        """Write every ``(key, data, kind)`` in one statement; key -> version."""
        writes = []
        for key, data, kind in items:
            stored = key_bytes(key)
            writes.append(Write(key, stored, key_hash(stored), data, kind, ttl))
        if not writes:
            return {}
        epochs = {w.key: self._begin(w.key) for w in writes}
        try:
            versions = await self._statement(writes)
        except BaseException:
            for write in writes:
                self._abandon(write.key)
            raise
        result: dict[str, int] = {}
        collided: list[str] = []
        for write in writes:
            version = versions.get(write.key_hash)
            if version is None:
                collided.append(write.key)
                self._abandon(write.key)
                continue
            result[write.key] = version
            self._settle(write.key, version, write.data, write.kind, ttl, epochs[write.key])
        self._counters.sets += len(result)
        if collided:
            raise _collision(collided[0])
        return result

    # -- delete, truncate -------------------------------------------------------------------

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (table and every instance's copy); True if a live row existed."""
        stored = key_bytes(key)
        hashed = key_hash(stored)
        epoch = self._begin(key)
        try:
            if self._announce:
                head, tail = inline_parts(self._instance_id, self._next_seq(), key)
                row = await self._db.run("delete", "fetchrow", self._sql.delete_notify, hashed,
                                         stored, self._channel, head, tail)
            else:
                row = await self._db.run("delete", "fetchrow", self._sql.delete, hashed, stored)
        except BaseException:
            self._abandon(key)
            raise
        counters = self._counters
        counters.write_statements += 1
        counters.deletes += 1
        if row is None:
            # Nothing was stored, so no instance can hold a valid copy; drop ours regardless.
            self._abandon(key)
            return False
        if self._announce:
            counters.notifications_sent += 1
            counters.notified_keys += 1
        self._settle(key, row[0], None, 0, None, epoch)
        return bool(row[1])

    async def truncate(self) -> None:
        """Empty the table; every instance (this one too) flushes its local cache."""
        statement = self._sql.truncate
        if self._announce:
            payload = flush_all(self._instance_id, self._next_seq())
            # One simple-protocol string: both statements run in one transaction, so the
            # flush is announced if and only if the truncate commits.
            statement += (f"; SELECT pg_notify({_literal(self._channel)}, "
                          f"{_literal(payload)})")
        await self._db.run("truncate", "execute", statement)
        self._counters.write_statements += 1
        if self._announce:
            self._counters.notifications_sent += 1


def _literal(text: str) -> str:
    """An SQL string literal (for the two values the simple protocol cannot bind)."""
    return "'" + text.replace("'", "''") + "'"

