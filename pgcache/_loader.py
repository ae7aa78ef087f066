"""``get_or_set``: the loader runs once per miss across all instances, and waiting for it
never takes the pool away from anyone.

Within an instance, concurrent callers for one key share one load. Across instances, the
loader runs under a PostgreSQL advisory lock on the key, tried on the instance's lock session
(``_locks``), so a load never holds a pooled connection. An instance that finds the lock
taken does not queue on it: it waits without holding any connection, woken by the
notification of the filling write (or a short poll, for when notifications are off), re-reads
the key, and tries the lock again, for at most ``lock_timeout_seconds``. A loader may be
bounded by ``loader_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._errors import (
    CacheArgumentError,
    CacheLoaderTimeoutError,
    CacheLockTimeoutError,
)
from ._keys import key_parts
from ._local import LocalCache
from ._locks import AdvisoryLocks
from ._schema import lock_key
from ._settings import CacheSettings
from ._stats import Counters
from ._values import ValueCodec

Loader = Callable[[], Any]

_monotonic = time.monotonic
# How long a waiting instance sleeps between looks when no notification wakes it.
_POLL_MIN_S = 0.005
_POLL_MAX_S = 0.1


class Loads:
    """The get_or_set machinery of one instance."""

    def __init__(self, settings: CacheSettings, table: str, local: LocalCache | None,
                 codec: ValueCodec, counters: Counters, locks: AdvisoryLocks,
                 woken: dict[str, asyncio.Event], *,
                 get: Callable[[str], Awaitable[Any]],
                 set: Callable[[str, bytes, int, float | None], Awaitable[int]]) -> None:
        self._settings = settings
        self._locks = locks
        self._table = table
        self._local = local
        self._codec = codec
        self._counters = counters
        self._get = get
        self._set = set
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self._woken = woken  # shared with Coherence, which sets them

    async def get_or_set(self, key: str, loader: Loader, ttl: float | None,
                         loader_timeout: float | None) -> Any:
        """The value of ``key`` after a local miss: read, or loaded once cluster-wide."""
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await self._load(key, loader, ttl, loader_timeout)
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

    async def _load(self, key: str, loader: Loader, ttl: float | None,
                    loader_timeout: float | None) -> Any:
        lock = lock_key(self._table, key_parts(key)[1])
        deadline = _monotonic() + self._settings.lock_timeout_seconds
        poll = _POLL_MIN_S
        while True:
            if await self._locks.try_lock(lock, "get_or_set"):
                try:
                    value = await self._get(key)  # filled while we were not looking?
                    if value is not None:
                        return value
                    value = await self._run(key, loader, loader_timeout)
                    self._counters.loads += 1
                    if value is None:
                        return None
                    data, kind = self._codec.encode(value)
                    await self._set(key, data, kind, ttl)
                    return value
                finally:
                    await self._locks.unlock(lock, "get_or_set")
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise CacheLockTimeoutError(
                    f"get_or_set({key[:80]!r}): another instance is loading this key and has "
                    f"not stored it within lock_timeout_seconds="
                    f"{self._settings.lock_timeout_seconds} s", key=key,
                    hint="raise lock_timeout_seconds, or bound loaders with "
                         "loader_timeout_seconds")
            self._counters.lock_waits += 1
            await self._wait(key, min(poll, remaining))
            poll = min(poll * 2, _POLL_MAX_S)
            value = await self._get(key)
            if value is not None:
                return value

    async def _wait(self, key: str, seconds: float) -> None:
        """Sleep up to ``seconds``, or until another instance's write of ``key`` arrives."""
        event = self._woken[key] = asyncio.Event()
        local = self._local
        if local is not None:
            local.begin(key)  # so that a long key's notification (by hash) finds it
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            del self._woken[key]
            if local is not None:
                local.end(key)

    async def _run(self, key: str, loader: Loader, limit: float | None) -> Any:
        value = loader()
        if not inspect.isawaitable(value):
            return value
        if limit is None:
            return await value
        try:
            async with asyncio.timeout(limit) as scope:
                return await value
        except TimeoutError:
            if not scope.expired():
                raise  # the loader's own TimeoutError
            raise CacheLoaderTimeoutError(
                f"get_or_set({key[:80]!r}): the loader did not finish within {limit} s; "
                "nothing was stored", key=key,
                hint="raise loader_timeout_seconds, or make the loader faster") from None


def check_loader(loader: Any) -> None:
    if not callable(loader):
        raise CacheArgumentError(
            f"get_or_set() takes a loader: a function (sync or async) of no arguments, got "
            f"{type(loader).__name__}")
