"""The write path: set, set_many, delete and truncate.

A lone write (no other write statement of the instance on the wire, nothing queued in the
notifier) carries its own NOTIFY in its own statement: delivered if and only if it commits.
Overlapping writes are announced by the notifier after they commit, batched (see
``_notifier``, which also says what that costs and why). Concurrent ``set`` calls share
statements (``_batching.WriteQueue``).

A write is in flight (``LocalCache.begin``) from before it is sent until it returns, so an
invalidation for a newer version that arrives meanwhile (another instance wrote the key too)
stops it from installing its own, older, version. A write whose outcome is unknown (a lost
connection, a cancellation) drops the instance's copy of the key, stops every operation of
that key in flight from installing, and tells the other instances to drop theirs: the row
may now hold something newer than any copy.

Closing (``close``): writes starting from then on fail with ``CacheStateError``; the writes in
flight are waited for (bounded), so that each is queued for its announcement before the
notifier sends its last batch: a write that returns while its instance closes is still
announced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from operator import attrgetter
from typing import Any

from ._batching import Write, WriteQueue
from ._db import Database
from ._errors import CacheServerError, CacheStateError, PgCacheError
from ._keys import key_parts
from ._local import LocalCache
from ._notifier import Notifier
from ._payload import flush_all, inline_parts
from ._schema import Statements
from ._settings import CacheSettings
from ._stats import Counters

# The largest version (bigint): "something newer than anything held may have been written".
UNKNOWN_VERSION = (1 << 63) - 1


def _collision(key: str) -> CacheServerError:
    return CacheServerError(
        f"set({key[:80]!r}): another key with the same 16-byte hash is stored; nothing was "
        "written", hint="this is a SHA-256 collision; please report it")


class Writer:
    """Writes of one instance, and their announcement."""

    __slots__ = ("_active", "_channel", "_closing", "_compress_min", "_counters", "_db",
                 "_inserted", "_instance_id", "_local", "_local_ttl", "_next_seq", "_notifier",
                 "_pack", "_sql", "_writing", "submit")

    def __init__(self, db: Database, sql: Statements, settings: CacheSettings,
                 local: LocalCache | None, counters: Counters, instance_id: str,
                 next_seq: Callable[[], int],
                 notifier: Notifier | None, pack: Callable[[bytes, int], tuple[bytes, int]],
                 inserted: Callable[[int], None] | None = None) -> None:
        self._db = db
        # Plain bytes of a value -> what the table stores (compressed or not); shorter values
        # than this are stored as they are without asking.
        self._pack = pack
        self._compress_min = (settings.compress_min_bytes
                              if settings.compress_min_bytes is not None else 1 << 62)
        self._sql = sql
        self._local = local
        self._local_ttl = settings.local_ttl_seconds
        self._counters = counters
        self._instance_id = instance_id
        self._next_seq = next_seq
        self._notifier = notifier
        # Told of new rows (not updates): a bounded table checks its size by them.
        self._inserted = inserted
        self._channel = settings.notify_channel
        # Write statements of this instance on the wire (a lone write is announced inline).
        self._writing = 0
        # Calls (set, set_many, delete, truncate, a fill) begun and not yet returned.
        self._active = 0
        self._closing = False
        # Writes one set (alone, or shared with concurrent ones); its version or its error.
        self.submit: Callable[[Write], Awaitable[int]] = self._write_one
        if settings.write_batch_max > 1:
            self.submit = WriteQueue(self._write_one, self._write_batch,
                                     max_batch=settings.write_batch_max,
                                     slots=settings.write_batch_concurrency).submit

    # -- the local copy around a write ------------------------------------------------------

    def _begin(self, key: str) -> int:
        local = self._local
        return local.begin(key) if local is not None else 0

    def _settle(self, key: str, version: int, data: bytes | None, kind: int,
                ttl: float | None, epoch: int) -> None:
        """``key`` was written (``data``) or deleted (None) at ``version``: update our copy."""
        local = self._local
        if local is not None:
            lifetime = self._local_ttl if ttl is None or ttl > self._local_ttl else ttl
            local.written(key, version, data, kind, lifetime, epoch)

    def _abandon(self, key: str, error: BaseException) -> None:
        """The write of ``key`` failed with ``error``: if it may have committed anyway, no
        copy of the key from before can be trusted, here or anywhere."""
        local = self._local
        if local is not None:
            local.end(key)
        if isinstance(error, CacheServerError):
            return  # rejected by the server: nothing was written
        if local is not None:
            local.invalidate(key, UNKNOWN_VERSION)
        if self._notifier is not None:
            self._notifier.enqueue(key, UNKNOWN_VERSION)

    def _announce(self, key: str, version: int) -> None:
        if self._notifier is not None:
            self._notifier.enqueue(key, version)

    def _alone(self) -> bool:
        """Whether a write starting now may carry its own NOTIFY."""
        notifier = self._notifier
        return notifier is not None and self._writing == 0 and notifier.idle

    # -- set --------------------------------------------------------------------------------

    def prepare(self, key: str, data: bytes, kind: int, ttl: float | None) -> Write:
        """A ``set`` about to go out, begun (``submit`` it, then ``done`` or ``abandon``).
        Split so that the facade awaits ``submit`` directly: one coroutine frame less on the
        hottest write path."""
        if self._closing:
            raise _closed()
        stored, hashed = key_parts(key)
        local = self._local
        write = Write(key, stored, hashed, data, kind, ttl,
                      local.begin(key) if local is not None else 0)
        self._active += 1
        return write

    def done(self, write: Write, version: int) -> None:
        self._active -= 1
        self._counters.sets += 1
        self._settle(write.key, version, write.data, write.kind, write.ttl, write.epoch)

    def abandon(self, write: Write, error: BaseException) -> None:
        self._active -= 1
        self._abandon(write.key, error)

    async def close(self, within: float) -> int:
        """Refuse new writes, and wait up to ``within`` seconds for those in flight (each
        queued for its announcement when it returns); how many are still in flight."""
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        # Polled, not an Event: closing is rare, and no write pays for a wake-up.
        while (self._active or self._writing) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        return self._active + self._writing

    async def _write_one(self, write: Write) -> int:
        inline = self._alone()
        # Counted from here (no suspension since _alone() looked): a write that arrives while
        # this one waits for a connection does not count itself alone.
        self._writing += 1
        data, kind = write.data, write.kind
        if len(data) >= self._compress_min:
            data, kind = self._pack(data, kind)
        args: tuple[Any, ...]
        if inline:
            head, tail = inline_parts(self._instance_id, self._next_seq(), write.key)
            sql = self._sql.set_notify
            args = (write.key_hash, write.key_bytes, data, kind, write.ttl, self._channel,
                    head, tail)
        else:
            sql = self._sql.set
            args = (write.key_hash, write.key_bytes, data, kind, write.ttl)
        # The version alone, or (version, whether the row is new) when a bounded table
        # counts new rows (see _schema).
        method = "fetchval" if self._inserted is None else "fetchrow"
        try:
            result = await self._db.run("set", method, sql, *args)
        finally:
            self._writing -= 1
        self._counters.write_statements += 1
        if result is None:
            raise _collision(write.key)
        version: int
        if self._inserted is None:
            version = result
        else:
            version = result[0]
            if result[1]:
                self._inserted(1)
        if inline:
            assert self._notifier is not None
            self._notifier.sent_inline()
        else:
            self._announce(write.key, version)
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
        """One statement writing ``writes`` (distinct keys), each announced; key hash ->
        version written."""
        # Rows in hash order (the statement computes the same hashes from the keys, and
        # inserts in array order): two instances upserting overlapping batches then lock
        # them in the same order and cannot deadlock.
        ordered = sorted(writes, key=attrgetter("key_hash"))
        pack, small = self._pack, self._compress_min
        keys: list[bytes] = []
        values: list[bytes] = []
        kinds: list[int] = []
        ttl = ordered[0].ttl
        uniform = True
        for write in ordered:
            data, kind = write.data, write.kind
            if len(data) >= small:
                data, kind = pack(data, kind)
            keys.append(write.key_bytes)
            values.append(data)
            kinds.append(kind)
            if write.ttl != ttl or kind != kinds[0]:
                uniform = False
        self._writing += 1
        try:
            if uniform:
                rows = await self._db.run("set", "fetch", self._sql.set_batch_uniform, keys,
                                          values, kinds[0], ttl)
            else:
                rows = await self._db.run("set", "fetch", self._sql.set_batch, keys, values,
                                          kinds, [w.ttl for w in ordered])
        finally:
            self._writing -= 1
        self._counters.write_statements += 1
        versions = {bytes(row[0]): row[1] for row in rows}
        notifier = self._notifier
        if notifier is not None:
            for write in ordered:
                version = versions.get(write.key_hash)
                if version is not None:
                    notifier.enqueue(write.key, version)
        if self._inserted is not None:
            new = sum(1 for row in rows if row[2])
            if new:
                self._inserted(new)
        return versions

    async def set_many(self, items: list[tuple[str, bytes, int]],
                       ttl: float | None) -> dict[str, int]:
        """Write every ``(key, data, kind)`` in one statement; key -> version."""
        if self._closing:
            raise _closed()
        writes = []
        for key, data, kind in items:
            stored, hashed = key_parts(key)
            writes.append(Write(key, stored, hashed, data, kind, ttl, 0))
        if not writes:
            return {}
        for write in writes:  # begun once every key is known to be valid
            write.epoch = self._begin(write.key)
        self._active += 1
        try:
            versions = await self._statement(writes)
        except BaseException as exc:
            for write in writes:
                self._abandon(write.key, exc)
            raise
        finally:
            self._active -= 1
        result: dict[str, int] = {}
        collided: list[str] = []
        for write in writes:
            version = versions.get(write.key_hash)
            if version is None:
                collided.append(write.key)
                self._abandon(write.key, _collision(write.key))
                continue
            result[write.key] = version
            self._settle(write.key, version, write.data, write.kind, ttl, write.epoch)
        self._counters.sets += len(result)
        if collided:
            raise _collision(collided[0])
        return result

    # -- delete, truncate -------------------------------------------------------------------

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (table and every instance's copy); True if a live row existed."""
        if self._closing:
            raise _closed()
        stored, hashed = key_parts(key)
        epoch = self._begin(key)
        inline = self._alone()
        self._writing += 1
        try:
            if inline:
                head, tail = inline_parts(self._instance_id, self._next_seq(), key)
                row = await self._db.run("delete", "fetchrow", self._sql.delete_notify, hashed,
                                         stored, self._channel, head, tail)
            else:
                row = await self._db.run("delete", "fetchrow", self._sql.delete, hashed, stored)
        except BaseException as exc:
            self._abandon(key, exc)
            raise
        finally:
            self._writing -= 1
        counters = self._counters
        counters.write_statements += 1
        counters.deletes += 1
        if row is None:
            # Nothing was stored, so no instance can hold a valid copy; drop ours regardless.
            if self._local is not None:
                self._local.end(key)
                self._local.remove(key)
            return False
        if inline:
            assert self._notifier is not None
            self._notifier.sent_inline()
        else:
            self._announce(key, row[0])
        self._settle(key, row[0], None, 0, None, epoch)
        return bool(row[1])

    async def truncate(self) -> None:
        """Empty the table; every instance (this one too) flushes its local cache."""
        if self._closing:
            raise _closed()
        statement = self._sql.truncate
        if self._notifier is not None:
            payload = flush_all(self._instance_id, self._next_seq())
            # One simple-protocol string: both statements run in one transaction, so the
            # flush is announced if and only if the truncate commits.
            statement += (f"; SELECT pg_notify({_literal(self._channel)}, "
                          f"{_literal(payload)})")
        self._writing += 1
        try:
            await self._db.run("truncate", "execute", statement)
        finally:
            self._writing -= 1
        self._counters.write_statements += 1
        if self._notifier is not None:
            self._notifier.sent_inline()


def _closed() -> CacheStateError:
    return CacheStateError("cache is closed", hint="create a new PostgresCache")


def _literal(text: str) -> str:
    """An SQL string literal (for the two values the simple protocol cannot bind)."""
    return "'" + text.replace("'", "''") + "'"
