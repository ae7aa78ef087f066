"""The read path past the local cache: one statement per read, installed only when safe.

Before a local miss goes to PostgreSQL the key is registered as in flight (``LocalCache.begin``)
together with the local cache's epoch. The row it brings back is installed only if (a) no
invalidation for a version newer than the fetched one arrived meanwhile, (b) no flush happened
meanwhile (same epoch), and (c) the lease still holds. A read overtaken by an invalidation
still returns what it read (it began before the write finished), but installs nothing.

Shared reads: a local miss of a key that another coroutine of the instance is already
fetching waits for that fetch instead of sending its own, as long as no invalidation of the
key (and no flush) arrived since that fetch began. If the shared fetch fails or its caller is
cancelled, each waiting read fetches for itself: one caller's error never becomes another's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from ._db import Database
from ._errors import CacheArgumentError
from ._keys import key_parts
from ._local import LocalCache
from ._schema import Statements
from ._stats import Counters
from ._values import KIND_BYTES, ValueCodec

_monotonic = time.monotonic
# What a shared fetch resolves to when it failed: each read that shared it fetches for itself.
_FETCH_FAILED = object()


class Reader:
    """``get`` after a local miss, and ``get_many``."""

    __slots__ = ("_codec", "_counters", "_db", "_local", "_local_ttl", "_sql")

    def __init__(self, db: Database, sql: Statements, codec: ValueCodec,
                 local: LocalCache | None, local_ttl: float, counters: Counters) -> None:
        self._db = db
        self._sql = sql
        self._codec = codec
        self._local = local
        self._local_ttl = local_ttl
        self._counters = counters

    def expires(self, ttl: float | None) -> float:
        """The local deadline of a copy whose row has ``ttl`` seconds left (None: no expiry)."""
        local_ttl = self._local_ttl
        if ttl is not None and ttl < local_ttl:
            local_ttl = ttl
        return _monotonic() + local_ttl

    async def get(self, key: str) -> Any:
        """The value of ``key`` from PostgreSQL (the local cache had no usable copy)."""
        data, hashed = key_parts(key)
        local = self._local
        shared: asyncio.Future[Any] | None = None
        epoch = 0
        if local is None:
            sql = self._sql.get_value  # nothing to install: version and TTL are not needed
        elif _monotonic() >= local.trusted_until:
            sql = self._sql.get  # nothing read now may be installed: no tracking, no sharing
        else:
            # Another read of this key is on the wire and no invalidation of it (nor a
            # flush) arrived since it began: share its answer instead of asking again.
            joined = local.joinable(key)
            if joined is not None:
                row = await asyncio.shield(joined)
                if row is not _FETCH_FAILED:
                    self._counters.shared_reads += 1
                    return self._answer(key, row)
            shared = asyncio.get_running_loop().create_future()
            epoch = local.begin(key, shared)
            sql = self._sql.get
        try:
            row = await self._db.run("get", "fetchrow", sql, hashed, data, idempotent=True)
        except BaseException:
            if shared is not None:
                assert local is not None
                local.end(key, shared)
                shared.set_result(_FETCH_FAILED)  # the sharers fetch for themselves
            raise
        if shared is None:
            return self._answer(key, row)
        assert local is not None
        announced = local.end(key, shared)
        shared.set_result(row)
        if row is None:
            return self._answer(key, row)
        # Read first: a row another program wrote raises here, and nothing is installed.
        value, data, kind = self._codec.read(key, row[0], row[1])
        if row[2] >= announced and epoch == local.epoch \
                and _monotonic() < local.trusted_until:
            local.install(key, data, kind, row[2], self.expires(row[3]))
        self._counters.remote_hits += 1
        return value

    def _answer(self, key: str, row: Any) -> Any:
        """The value of a fetched row (None: a miss), counted."""
        if row is None:
            self._counters.misses += 1
            return None
        kind = row[1]
        if kind == KIND_BYTES:
            self._counters.remote_hits += 1
            return row[0]
        value = self._codec.read(key, row[0], kind)[0]
        self._counters.remote_hits += 1
        return value

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those ``keys`` that exist: local copies first, then one statement."""
        if isinstance(keys, str | bytes | bytearray) or not isinstance(keys, Iterable):
            raise CacheArgumentError(
                f"get_many() takes an iterable of str keys, got {type(keys).__name__}",
                hint="pass a list of keys; a single key goes to get()")
        wanted: dict[str, tuple[bytes, bytes]] = {}
        for key in keys:
            wanted[key] = key_parts(key)
        result: dict[str, Any] = {}
        local = self._local
        counters = self._counters
        now = _monotonic()
        trusted = local is not None and now < local.trusted_until
        if trusted:
            assert local is not None
            for key in list(wanted):
                entry = local.lookup(key, now)
                if entry is not None:
                    counters.local_hits += 1
                    result[key] = self._codec.decode(entry.value, entry.kind)
                    del wanted[key]
        if not wanted:
            return result
        names = list(wanted)
        epochs: dict[str, int] = {}
        if trusted:
            assert local is not None
            epochs = {key: local.begin(key) for key in names}
        announced: dict[str, int] = {}
        try:
            rows = await self._db.run(
                "get_many", "fetch", self._sql.get_many,
                [hashed for _, hashed in wanted.values()],
                [data for data, _ in wanted.values()],
                idempotent=True)
        finally:
            if trusted:
                assert local is not None
                announced = {key: local.end(key) for key in epochs}
        for index, stored, stored_kind, version, ttl in rows:
            key = names[index - 1]
            # Read first: a row another program wrote raises here, and nothing is installed.
            result[key], value, kind = self._codec.read(key, stored, stored_kind)
            if trusted:
                assert local is not None
                if version >= announced[key] and epochs[key] == local.epoch \
                        and _monotonic() < local.trusted_until:
                    local.install(key, value, kind, version, self.expires(ttl))
            counters.remote_hits += 1
        counters.misses += len(wanted) - len(rows)
        return result
