"""``get_or_set``: the loader runs once per miss across all instances, and waiting for it
never takes the pool away from anyone.

Within an instance, concurrent callers for one key share one load: a task of its own, so
that no caller's cancellation or timeout reaches the others (the load is cancelled only
when every caller has gone, and never once the loader has returned: its value is stored
and its lock released whoever still waits). A call joining a load takes its result only if
nothing about the key was announced (an invalidation, this instance's own write, a flush)
since the load began, and the lease holds: otherwise the load may bring back a version
older than one this instance knows, so the call waits for the load to end and then reads
for itself (and loads again if the key is missing). A loader calling ``get_or_set`` of its
own key (directly or through other keys' loaders) would wait for itself: it gets
``CacheStateError`` at once.

Across instances, the loader runs under a PostgreSQL advisory lock on the key, tried on the
instance's lock session (``_locks``), so a load never holds a pooled connection. An instance
that finds the lock taken does not queue on it: it waits without holding any connection,
woken by the notification of the filling write (or a short poll, for when notifications are
off), re-reads the key, and tries the lock again, for at most ``lock_timeout_seconds``. A
loader may be bounded by ``loader_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ._errors import (
    CacheArgumentError,
    CacheLoaderTimeoutError,
    CacheLockTimeoutError,
    CacheStateError,
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

# The lock keys of the loads the current context runs the loader of (a loader's own
# get_or_set calls see them: the load of such a key would wait for itself).
_LOADING: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "pgcache_loading", default=frozenset())


class _Load:
    """One load of a key in flight in this instance, and the calls waiting for it."""

    __slots__ = ("abandoned", "callers", "epoch", "mark", "settled", "task")

    def __init__(self, mark: int, epoch: int) -> None:
        # The key's high-water mark and the local cache's epoch when the load began: while
        # both are unchanged nothing newer than what the load reads was announced.
        self.mark = mark
        self.epoch = epoch
        self.callers = 0
        self.settled = False  # the loader returned: the load runs to its end regardless
        self.abandoned = False  # every caller left before that: cancelled
        self.task: asyncio.Task[Any]


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
        self._loading: dict[str, _Load] = {}
        self._woken = woken  # shared with Coherence, which sets them

    async def get_or_set(self, key: str, loader: Loader, ttl: float | None,
                         loader_timeout: float | None) -> Any:
        """The value of ``key`` after a local miss: read, or loaded once cluster-wide."""
        lock = lock_key(self._table, key_parts(key)[1])
        if lock in _LOADING.get():
            raise CacheStateError(
                f"get_or_set({key[:80]!r}) was called by the loader of that same key (or by "
                "a loader it is waiting for): a loader cannot load its own key, it would wait "
                "for itself", hint="compute the value inside the loader, or read the key with "
                                   "get()")
        while True:
            load = self._loading.get(key)
            if load is None:
                load = self._start(key, lock, loader, ttl, loader_timeout)
                fresh = True
            else:
                fresh = self._fresh(key, load)
            load.callers += 1
            try:
                if fresh:
                    return await asyncio.shield(load.task)
                await asyncio.wait((load.task,))
            finally:
                load.callers -= 1
                if load.callers == 0 and not load.task.done() and not load.settled \
                        and not load.abandoned:
                    load.abandoned = True  # nobody wants it any more
                    load.task.cancel()
            # The load may have read a version older than one announced since it began:
            # read for ourselves, and load again if the key is missing.
            value = await self._get(key)
            if value is not None:
                return value

    def _fresh(self, key: str, load: _Load) -> bool:
        """Whether a call beginning now may take ``load``'s result: nothing about ``key``
        was announced since the load began (the same rule as a shared read)."""
        if load.abandoned:
            return False
        local = self._local
        if local is None:
            # No local cache, no listener: this instance knows only of its own writes, so a
            # join is fresh while none of them returned since the load began (of any key: a
            # count is all there is without the local cache's per-key marks).
            return self._counters.write_statements == load.mark
        slot = local.inflight.get(key)
        return (slot is not None and slot[1] == load.mark and local.epoch == load.epoch
                and _monotonic() < local.trusted_until)

    def _start(self, key: str, lock: int, loader: Loader, ttl: float | None,
               loader_timeout: float | None) -> _Load:
        local = self._local
        mark = epoch = 0
        if local is None:
            mark = self._counters.write_statements  # see _fresh
        else:
            # In flight for as long as the load runs: announcements meanwhile raise the mark.
            epoch = local.begin(key)
            mark = local.inflight[key][1]
        load = _Load(mark, epoch)
        context = contextvars.copy_context()
        context.run(_LOADING.set, _LOADING.get() | {lock})
        load.task = asyncio.get_running_loop().create_task(
            self._load(key, lock, loader, ttl, loader_timeout, load), context=context)
        load.task.add_done_callback(partial(self._ended, key, load))
        self._loading[key] = load
        return load

    def _ended(self, key: str, load: _Load, task: asyncio.Task[Any]) -> None:
        if self._loading.get(key) is load:
            del self._loading[key]
        if self._local is not None:
            self._local.end(key)
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have gone

    async def _load(self, key: str, lock: int, loader: Loader, ttl: float | None,
                    loader_timeout: float | None, load: _Load) -> Any:
        deadline = _monotonic() + self._settings.lock_timeout_seconds
        poll = _POLL_MIN_S
        while True:
            if await self._locks.try_lock(lock, "get_or_set"):
                try:
                    value = await self._get(key)  # filled while we were not looking?
                    if value is not None:
                        return value
                    value = await self._run(key, loader, loader_timeout)
                    load.settled = True  # store it and unlock, whether or not anyone waits
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
        # The load is in flight in the local cache meanwhile (``_start``), so a long key's
        # notification, which names it by hash, finds it.
        event = self._woken[key] = asyncio.Event()
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            del self._woken[key]

    async def _run(self, key: str, loader: Loader, limit: float | None) -> Any:
        value = loader()
        if not inspect.isawaitable(value):
            return value
        try:
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
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # every caller has gone
            # The loader's own: its callers were not cancelled and must not see one.
            raise CacheStateError(
                f"get_or_set({key[:80]!r}): the loader raised CancelledError although no "
                "caller was cancelled; nothing was stored") from None


def check_loader(loader: Any) -> None:
    if not callable(loader):
        raise CacheArgumentError(
            f"get_or_set() takes a loader: a function (sync or async) of no arguments, got "
            f"{type(loader).__name__}")
