"""The ``valkey-tracking`` backend: Valkey with a local cache built as well as pgcache's.

This is the fair peer of pgcache's local cache, built the way the best Redis clients build
server-assisted client-side caching (rueidis; Redis's "client-side caching" reference):

* **One local cache per application instance**, shared by all its tasks:
  :class:`pgcache.LocalCache`, the very LRU pgcache uses, with pgcache's bound
  (``local_max_entries``, default 4096) and TTL cap (``local_ttl_seconds``, 60 s). A copy
  also expires with the key: every read fetches ``GET`` and ``PTTL`` in one round trip.
* **Coherent through CLIENT TRACKING**, default mode. The instance's commands go over one
  pipelined RESP3 *data connection* (any number of tasks share it; commands of one
  event-loop iteration leave in one write) with ``CLIENT TRACKING ON REDIRECT <id> NOLOOP``:
  the server remembers the keys it read and sends their invalidations to a dedicated
  *invalidation connection* (RESP3, subscribed to ``__redis__:invalidate``). Default mode
  rather than OPTIN because every read of this cache is meant to be cached (OPTIN would add a
  ``CLIENT CACHING yes`` per read for nothing); rather than BCAST because BCAST coalesces
  invalidations per event-loop iteration, which makes write-through unsafe (below).
* **Race-safe installs.** Valkey has no row versions, so the version is a per-instance
  counter of invalidations received (and of this instance's own writes): a read begun when
  the counter was ``c`` installs with version ``c`` only if nothing newer was announced for
  the key while it was in flight (``LocalCache.begin``/``end``), the local cache was not
  flushed meanwhile, and the lease holds. An invalidation that arrives while a GET is in
  flight therefore always stops its install; one that arrives after the reply evicts the
  copy. Concurrent local misses of one key share one fetch, as in pgcache.
* **Write-through.** A write takes the next version (above every read sent before it on the
  same connection, whose replies come first), sends ``MULTI; SET key value PX ttl; PTTL key;
  EXEC``, and when it returns drops older copies, stops reads sent before it from installing,
  and installs the value it wrote if nothing was announced meanwhile (until then the old copy
  may still be served: the write has not completed, as in pgcache). Deletes drop the copy the
  same way. NOLOOP keeps the server from echoing the instance's own
  writes back to it (an echo would evict the fresh copy); the PTTL inside the transaction
  makes the data connection track the key again, atomically with the write, so the next
  write by another instance is announced. (A write untracks the key for every client: a plain
  SET would leave the write-through copy unannounced, i.e. stale until its TTL.)
* **Flush and bypass while the invalidation path is down, then reconnect.** When the
  invalidation connection is lost (or the data connection, whose tracking state dies with
  it; or the server reports ``tracking-redir-broken``), the local cache is flushed, reads go
  to the server and install nothing, and the connection is reopened (the invalidation
  connection with a growing backoff, as pgcache's listener; the data connection at the next
  command, at most once per ``reconnect_backoff_min_seconds``); the data connection is then
  pointed at the new invalidation connection.
* **A lease, like pgcache's.** A silent invalidation connection (blackholed, not closed)
  looks like a quiet one, so copies are served only within ``local_lease_seconds`` (0.5 s)
  of the send time of the last ``PING`` answered on the invalidation connection. The server
  writes invalidations and the PONG to that connection in order, so a PONG proves that every
  invalidation produced before the PING was processed has arrived; a copy is stale by at most
  the lease. Pings go out every ``heartbeat_interval_seconds`` (default: a quarter of the
  lease); one unanswered for ``heartbeat_timeout_seconds`` closes the connection.

The invalidation hook receives every key invalidated by another instance (``server_version``
None: Valkey sends no version), and ``None`` when the local cache was flushed; a read served
from a local copy is ``GetResult.local``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from orchestrator.backends.base import GetResult, InvalidationHook, Loader
from orchestrator.backends.resp import (
    ConnectionLost,
    Push,
    ReplyError,
    RespConnection,
    ServerAddress,
    encode,
    open_connection,
    parse_url,
)
from orchestrator.backends.stampede import (
    RECIPE_OPTIONS,
    RELEASE_SCRIPT,
    LockRecipe,
    naive,
    recipe_option_issues,
    recipe_options,
)
from orchestrator.errors import BackendError
from pgcache import CacheSettings, LocalCache
from proxies import Endpoints

__all__ = ["TrackingSettings", "ValkeyTrackingBackend", "option_issues"]

_monotonic = time.monotonic
_PGCACHE: dict[str, Any] = {f.name: f.default for f in fields(CacheSettings)}
_PING = encode("PING")
_MULTI = encode("MULTI")
_EXEC = encode("EXEC")
_SUBSCRIBE = encode("SUBSCRIBE", "__redis__:invalidate")
# What a shared fetch resolves to when it failed: each read that shared it fetches for itself.
_FETCH_FAILED: Any = object()


@dataclass(frozen=True, slots=True)
class TrackingSettings:
    """The backend's options; the local cache's defaults are pgcache's."""

    local_max_entries: int = _PGCACHE["local_max_entries"]
    local_ttl_seconds: float = _PGCACHE["local_ttl_seconds"]
    local_lease_seconds: float = _PGCACHE["local_lease_seconds"]
    heartbeat_interval_seconds: float | None = None  # None: a quarter of the lease
    heartbeat_timeout_seconds: float = _PGCACHE["listener_heartbeat_timeout_seconds"]
    connect_timeout: float = _PGCACHE["connect_timeout"]
    command_timeout: float | None = None  # None: wait for replies (redis-py's default too)
    reconnect_backoff_min_seconds: float = _PGCACHE["reconnect_backoff_min_seconds"]
    reconnect_backoff_max_seconds: float = _PGCACHE["reconnect_backoff_max_seconds"]

    @property
    def heartbeat_interval(self) -> float:
        if self.heartbeat_interval_seconds is not None:
            return self.heartbeat_interval_seconds
        return self.local_lease_seconds / 4


_OPTIONAL = {"heartbeat_interval_seconds", "command_timeout"}


def option_issues(options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Problems with ``options``: (option, expected, found) for each."""
    issues = recipe_option_issues(options)
    known = {f.name for f in fields(TrackingSettings)} | RECIPE_OPTIONS
    for key, value in options.items():
        if key in RECIPE_OPTIONS:
            continue
        if key not in known:
            issues.append((str(key), f"a valkey-tracking option ({', '.join(sorted(known))})",
                           repr(key)))
        elif key == "local_max_entries":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                issues.append((key, "an integer >= 1", repr(value)))
        elif value is None and key in _OPTIONAL:
            continue
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0 \
                or not math.isfinite(value):
            issues.append((key, "a number > 0" + (" or null" if key in _OPTIONAL else ""),
                           repr(value)))
    return issues


def settings_from(name: str, options: Mapping[str, Any]) -> TrackingSettings:
    """The settings of ``options`` (the get_or_set recipe's aside); BackendError naming every
    problem."""
    issues = option_issues(options)
    if issues:
        raise BackendError(f"{name}: invalid valkey-tracking options: " + "; ".join(
            f"{key}: expected {expected}, found {found}" for key, expected, found in issues))
    return replace(TrackingSettings(), **{k: v for k, v in options.items()
                                          if k not in RECIPE_OPTIONS})


class _Counters:
    """The instance's counters (plain attributes: one event loop, no locking)."""

    __slots__ = ("data_reconnects", "flushes", "invalidated_keys", "invalidation_reconnects",
                 "lease_lapses", "local_hits", "misses", "redirect_broken", "remote_hits",
                 "shared_reads", "writes")

    def __init__(self) -> None:
        self.data_reconnects = 0
        self.flushes = 0  # the whole local cache dropped
        self.invalidated_keys = 0  # keys named by invalidations received
        self.invalidation_reconnects = 0
        self.lease_lapses = 0
        self.local_hits = 0
        self.misses = 0
        self.redirect_broken = 0
        self.remote_hits = 0
        self.shared_reads = 0
        self.writes = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class ValkeyTrackingBackend:
    """GET / SET / DEL through one instance-wide local cache kept coherent by tracking."""

    def __init__(self, name: str, options: Mapping[str, Any], endpoints: Endpoints) -> None:
        self.name = name
        self.settings = settings = settings_from(name, options)
        self._recipe = recipe_options(options)[0]
        self._lock_recipe = LockRecipe(self._recipe, self.get, self.set, self._acquire,
                                       self._release)
        try:
            self._address: ServerAddress = parse_url(endpoints.valkey_url)
        except ValueError as exc:
            raise BackendError(f"{name}: {exc}") from exc
        self._local = LocalCache(settings.local_max_entries)
        self._entries = self._local.data
        self._version = 0  # invalidations received + own writes: the versions of copies
        self._data: RespConnection | None = None
        self._inv: RespConnection | None = None
        self._inv_id: int | None = None
        self._tracked_into: int | None = None  # the invalidation connection the data
        # connection's tracking redirects to (acknowledged)
        self._generation = 0  # bumped whenever trust is withdrawn
        self._data_lock = asyncio.Lock()
        self._data_retry_at = 0.0
        self._data_error = ""
        self._keeper: asyncio.Task[None] | None = None
        self._closing = False
        self._hook: InvalidationHook | None = None
        self._counts = _Counters()
        # The GetResult of each key's last local hit, reused while the copy is the same
        # object (as the pgcache backend does). Bounded by the local cache's size.
        self._hits: dict[str, GetResult] = {}
        self._hits_max = settings.local_max_entries

    # -- life cycle -------------------------------------------------------------------------
    async def prepare(self) -> None:
        try:
            conn, _ = await open_connection(self._address,
                                            connect_timeout=self.settings.connect_timeout)
            try:
                await conn.call("FLUSHDB")
            finally:
                await conn.close()
        except (OSError, TimeoutError, ReplyError) as exc:
            raise BackendError(f"{self.name}: could not flush Valkey at "
                               f"{self._address.host}:{self._address.port}: {exc}") from exc

    async def connect(self) -> None:
        if self._keeper is not None:
            raise BackendError(f"{self.name}: backend is already connected")
        try:
            await self._open_invalidations()
            await self._open_data()
            await self._heartbeat()
        except (OSError, TimeoutError, ReplyError) as exc:
            await self._close_connections()
            raise BackendError(f"{self.name}: could not connect to Valkey at "
                               f"{self._address.host}:{self._address.port}: {exc}") from exc
        self._keeper = asyncio.create_task(self._keep_invalidations())

    async def close(self) -> None:
        self._closing = True
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        await self._close_connections()
        self._hits.clear()

    async def _close_connections(self) -> None:
        for conn in (self._data, self._inv):
            if conn is not None and not conn.closed:
                await conn.close()
        self._data = self._inv = None

    # -- the invalidation connection ----------------------------------------------------------
    async def _open_invalidations(self) -> None:
        """Connect the invalidation connection and subscribe it; point the data connection
        (if any) at it."""
        conn, (client_id,) = await open_connection(
            self._address, connect_timeout=self.settings.connect_timeout, on_push=self._on_push,
            on_lost=self._on_lost, setup=[encode("CLIENT", "ID")])
        # In RESP3 the subscription is confirmed by a push; the PING after it is answered
        # once that push has been read.
        conn.send_unanswered(_SUBSCRIBE)
        async with asyncio.timeout(self.settings.connect_timeout):
            await conn.send(_PING)
        self._inv, self._inv_id = conn, int(client_id)
        data = self._data
        if data is not None and not data.closed:
            await self._track(data)

    async def _track(self, data: RespConnection) -> None:
        """Make ``data`` redirect its invalidations to the current invalidation connection."""
        target = self._inv_id
        if target is None:
            return
        try:
            await data.call("CLIENT", "TRACKING", "ON", "REDIRECT", target, "NOLOOP")
        except ReplyError:
            return  # the invalidation connection is gone already; it will be reopened
        if data is self._data and target == self._inv_id:
            # Reads whose replies arrived before this acknowledgement were not tracked (or
            # tracked into a lost connection); none of them installed (no lease meanwhile).
            self._tracked_into = target

    async def _heartbeat(self) -> None:
        """PING the invalidation connection; its PONG renews the lease from the send time."""
        inv = self._inv
        if inv is None:
            return
        generation = self._generation
        tracked = self._tracked_into is not None and self._tracked_into == self._inv_id
        sent = _monotonic()
        try:
            async with asyncio.timeout(self.settings.heartbeat_timeout_seconds):
                await inv.send(_PING)
        except TimeoutError:
            inv.abort()  # silent: treat it as lost
            return
        except ConnectionLost:
            return
        if tracked and generation == self._generation and inv is self._inv \
                and self._tracked_into == self._inv_id:
            local = self._local
            until = sent + self.settings.local_lease_seconds
            if until > local.trusted_until:
                if 0 < local.trusted_until < _monotonic():
                    self._counts.lease_lapses += 1
                local.trusted_until = until

    async def _keep_invalidations(self) -> None:
        """Heartbeats; reopen the invalidation connection (with backoff) whenever it is lost."""
        settings = self.settings
        backoff = settings.reconnect_backoff_min_seconds
        while not self._closing:
            if self._inv is None:
                try:
                    await self._open_invalidations()
                except Exception:
                    # Whatever went wrong, retry: without the keeper the lease would never be
                    # renewed again.
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, settings.reconnect_backoff_max_seconds)
                    continue
                self._counts.invalidation_reconnects += 1
                backoff = settings.reconnect_backoff_min_seconds
            if self._data is None:
                # Reopen the data connection too: its tracking is what renews the lease.
                with contextlib.suppress(OSError, TimeoutError, ReplyError, BackendError):
                    await self._link()
            await self._heartbeat()
            await asyncio.sleep(settings.heartbeat_interval)

    def _on_push(self, push: Push) -> None:
        if not push:
            return
        kind = push[0]
        if kind == b"invalidate":
            keys = push[1] if len(push) > 1 else None
            now_ns = time.perf_counter_ns()
            if keys is None:  # FLUSHDB / FLUSHALL: every key changed
                self._flush(now_ns)
                return
            self._version += 1
            version = self._version
            invalidate = self._local.invalidate
            hook = self._hook
            for raw in keys:
                key = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) \
                    else str(raw)
                invalidate(key, version)
                if hook is not None:
                    hook(key, None, now_ns)
            self._counts.invalidated_keys += len(keys)
        elif kind == b"tracking-redir-broken":
            # The server lost the invalidation connection before we noticed.
            self._counts.redirect_broken += 1
            broken = push[1] if len(push) > 1 else None
            if broken is not None and broken not in (self._tracked_into, self._inv_id):
                return  # about a connection already replaced
            self._tracked_into = None
            self._withdraw_trust()
            inv = self._inv
            if inv is not None:
                inv.abort()

    def _on_lost(self, conn: RespConnection) -> None:
        if conn is self._inv:
            self._inv = None
            self._inv_id = None
            self._tracked_into = None
        elif conn is self._data:
            self._data = None
            self._tracked_into = None
        else:
            return
        if not self._closing:
            self._withdraw_trust()

    def _withdraw_trust(self) -> None:
        """Invalidations may be missed from now on: flush, serve nothing local, install nothing."""
        self._generation += 1
        self._local.trusted_until = 0.0
        self._flush(time.perf_counter_ns())

    def _flush(self, now_ns: int) -> None:
        self._local.flush()
        self._counts.flushes += 1
        hook = self._hook
        if hook is not None:
            hook(None, None, now_ns)

    # -- the data connection ------------------------------------------------------------------
    async def _open_data(self) -> None:
        conn, _ = await open_connection(
            self._address, connect_timeout=self.settings.connect_timeout,
            on_push=self._on_push, on_lost=self._on_lost)
        old, self._data = self._data, conn
        if old is not None:
            old.abort()
        await self._track(conn)

    async def _link(self) -> RespConnection:
        """The data connection, reopened if it was lost (at most one attempt per
        ``reconnect_backoff_min_seconds``)."""
        conn = self._data
        if conn is not None:
            return conn
        if self._keeper is None or self._closing:
            raise BackendError(f"{self.name}: backend is not connected")
        async with self._data_lock:
            if self._data is not None:
                return self._data
            now = _monotonic()
            if now < self._data_retry_at:
                raise ConnectionLost(f"Valkey unreachable, retrying in "
                                     f"{self._data_retry_at - now:.2f} s: {self._data_error}")
            try:
                await self._open_data()
            except (OSError, TimeoutError, ReplyError) as exc:
                # Commands fail fast until the next attempt. No growing backoff here: a
                # client reconnects for its next command (redis-py does, on every one).
                self._data_error = f"{type(exc).__name__}: {exc}"
                self._data_retry_at = _monotonic() + self.settings.reconnect_backoff_min_seconds
                raise
            self._counts.data_reconnects += 1
            assert self._data is not None
            return self._data

    async def _reply(self, conn: RespConnection, future: asyncio.Future[Any]) -> Any:
        timeout = self.settings.command_timeout
        if timeout is None:
            return await future
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            conn.abort()  # replies are matched in order: a late one would be misread
            raise

    def _expires(self, now: float, pttl: Any) -> float:
        ttl = self.settings.local_ttl_seconds
        if isinstance(pttl, int) and 0 <= pttl < ttl * 1000:
            ttl = pttl / 1000
        return now + ttl

    # -- operations ---------------------------------------------------------------------------
    async def get(self, key: str) -> GetResult:
        entry = self._entries.get(key)
        if entry is not None:
            now = _monotonic()
            if now < entry.expires:
                if now < self._local.trusted_until:
                    self._entries.move_to_end(key)
                    self._counts.local_hits += 1
                    hits = self._hits
                    result = hits.get(key)
                    if result is None or result.value is not entry.value:
                        if len(hits) >= self._hits_max:
                            hits.clear()
                        result = hits[key] = GetResult(entry.value, True)
                    return result
            else:
                self._local.remove(key)
        return GetResult(await self._fetch(key), False)

    async def _fetch(self, key: str) -> bytes | None:
        conn = self._data or await self._link()
        local = self._local
        if _monotonic() >= local.trusted_until:
            # Nothing read now may be installed: no tracking to rely on, no sharing.
            value, _ = await self._read(conn, key)
            return value
        shared = local.joinable(key)
        if shared is not None:
            value = await asyncio.shield(shared)
            if value is not _FETCH_FAILED:
                self._counts.shared_reads += 1
                return value
        shared = asyncio.get_running_loop().create_future()
        version = self._version
        epoch = local.begin(key, shared)
        try:
            value, pttl = await self._read(conn, key)
        except BaseException:
            local.end(key, shared)
            shared.set_result(_FETCH_FAILED)  # the sharers fetch for themselves
            raise
        announced = local.end(key, shared)
        shared.set_result(value)
        if value is not None and version >= announced and epoch == local.epoch:
            now = _monotonic()
            if now < local.trusted_until and pttl != -2:
                local.install(key, value, 0, version, self._expires(now, pttl))
        return value

    async def _read(self, conn: RespConnection, key: str) -> tuple[bytes | None, Any]:
        """GET and PTTL in one round trip (no MULTI needed: a write between them is announced
        to this instance, since the GET tracked the key)."""
        replies = await self._reply(conn, conn.send_many(
            encode("GET", key) + encode("PTTL", key), 2))
        value = replies[0]
        if value is None:
            self._counts.misses += 1
        else:
            self._counts.remote_hits += 1
        return value, replies[1]

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> int | None:
        conn = self._data or await self._link()
        local = self._local
        version = self._begin_write(key)
        epoch = local.begin(key)
        try:
            replies = await self._reply(conn, conn.send_many(
                _MULTI + encode("SET", key, value, "PX", max(1, int(ttl_seconds * 1000)))
                + encode("PTTL", key) + _EXEC, 4))
        except BaseException:
            self._end_write(key, version)
            raise
        announced = self._end_write(key, version)
        self._counts.writes += 1
        result = replies[3]
        if not isinstance(result, list) or len(result) != 2:
            raise ReplyError(f"unexpected EXEC reply {result!r}")
        if isinstance(result[0], ReplyError):
            raise result[0]
        if version >= announced and epoch == local.epoch:
            now = _monotonic()
            if now < local.trusted_until:
                local.install(key, value, 0, version, self._expires(now, result[1]))
        return None

    async def delete(self, key: str) -> None:
        conn = self._data or await self._link()
        version = self._begin_write(key)
        self._local.begin(key)
        try:
            await self._reply(conn, conn.send(encode("DEL", key)))
        finally:
            self._end_write(key, version)
        self._counts.writes += 1

    async def get_or_set(self, key: str, loader: Loader, ttl_seconds: float) -> GetResult:
        if self._recipe.get_or_set == "lock":
            return await self._lock_recipe(key, loader, ttl_seconds)
        return await naive(self.get, self.set, key, loader, ttl_seconds)

    async def _acquire(self, lock: str, token: str, ttl_ms: int) -> bool:
        conn = self._data or await self._link()
        reply = await self._reply(conn, conn.send(encode("SET", lock, token, "NX", "PX",
                                                         ttl_ms)))
        return reply is not None

    async def _release(self, lock: str, token: str) -> None:
        conn = self._data or await self._link()
        await self._reply(conn, conn.send(encode("EVAL", RELEASE_SCRIPT, 1, lock, token)))

    def _begin_write(self, key: str) -> int:
        """The version of a write of ``key`` about to be sent: above that of every read sent
        before it (their replies, which precede its own, may hold the old value)."""
        self._version += 1
        return self._version

    def _end_write(self, key: str, version: int) -> int:
        """The write at ``version`` is back (or failed): copies older than it go, and reads of
        the key sent before it learn of it. Returns what was announced while it was away.

        Until then the old copy is still served: the write has not completed, so a read
        overlapping it may return either value (as pgcache does).
        """
        local = self._local
        announced = local.end(key)
        local.invalidate(key, version)
        return announced

    # -- reporting ----------------------------------------------------------------------------
    def set_invalidation_hook(self, hook: InvalidationHook | None) -> None:
        self._hook = hook

    def stats(self) -> Mapping[str, Any]:
        return {**self._counts.as_dict(), "local_size": len(self._local),
                "lease_held": _monotonic() < self._local.trusted_until,
                "invalidation_connected": self._inv is not None,
                "invalidation_client_id": self._inv_id,
                "data_connected": self._data is not None}
