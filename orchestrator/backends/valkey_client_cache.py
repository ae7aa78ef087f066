"""The ``valkey-client-cache`` backend: Valkey with client-side caching, the peer of pgcache.

valkey-py's asyncio client with RESP3 and ``cache_enabled=True`` (valkey-py >= 6): each
connection of the client's pool turns on ``CLIENT TRACKING`` (default mode, no NOLOOP) and
keeps a local cache of the GET replies it received; the server pushes an invalidation on
that connection when a tracked key changes (any client's write, expiry, eviction, FLUSHDB).

What the stock client does, and therefore what this backend measures, stated plainly:

* The local cache belongs to each pooled *connection*, not to the application instance: a
  GET is served locally only if the connection it borrows has cached that key. With many
  concurrent tasks the pool grows and the copies are spread over its connections (up to one
  copy per connection), so the hit rate is lower than one shared cache would give.
  ``max_connections`` bounds the pool (valkey-py then raises when it is exhausted).
* Invalidations are read from a connection's socket when that connection is next borrowed,
  just before its cache is consulted, so a cached value is never served after its
  invalidation has reached this process. Their arrival time as reported to the invalidation
  hook is that processing time (an upper bound on the true arrival).
* Every invalidation a connection receives is reported, including those caused by this
  instance's own writes (tracking without NOLOOP: the writer's copy must be dropped too).
  Valkey sends no version, so the hook gets ``server_version=None``.
* A miss is never cached (valkey-py cannot tell a cached ``None`` from "not cached").
* Writes (SET PX / DEL) always go to the server; the local copy is dropped by the server's
  invalidation, not updated in place (no write-through).

``GetResult.local`` is True exactly when valkey-py answered from a connection's cache: the
connection class below notes it in a context variable of the calling task.

Options go to ``valkey.asyncio.Valkey.from_url`` (e.g. ``cache_max_size``, ``cache_ttl``,
``max_connections``); ``url``, ``protocol`` and ``cache_enabled`` are set here.
"""

from __future__ import annotations

import contextvars
import inspect
import time
from collections.abc import Mapping
from typing import Any

import valkey.asyncio as valkey_asyncio
from valkey.asyncio.connection import Connection
from valkey.exceptions import ValkeyError

from orchestrator.backends.base import GetResult, InvalidationHook
from orchestrator.backends.stampede import RECIPE_OPTIONS
from orchestrator.backends.valkey import ValkeyBackend
from orchestrator.errors import BackendError
from proxies import Endpoints

__all__ = ["RESERVED_OPTIONS", "ValkeyClientCacheBackend", "allowed_options"]

RESERVED_OPTIONS = frozenset({"url", "protocol", "cache_enabled", "connection_class"})

# Set by a connection when it answers from its local cache; read by the calling task.
_served_locally: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "valkey_client_cache_served_locally", default=False)


def allowed_options() -> set[str]:
    """The option names this backend accepts (the Valkey client's keyword arguments)."""
    params = set(inspect.signature(valkey_asyncio.Valkey.__init__).parameters) - {"self"}
    return params - RESERVED_OPTIONS


class ValkeyClientCacheBackend(ValkeyBackend):
    """GET through valkey-py's client-side cache; SET PX / DEL to the server."""

    _errors = (ValkeyError, OSError)

    def __init__(self, name: str, options: Mapping[str, Any], endpoints: Endpoints) -> None:
        reserved = sorted(set(options) & RESERVED_OPTIONS)
        if reserved:
            raise BackendError(
                f"{name}: option(s) {', '.join(reserved)} are set by the orchestrator; "
                f"remove them from the workload")
        unknown = sorted(set(options) - allowed_options() - RECIPE_OPTIONS)
        if unknown:
            raise BackendError(
                f"{name}: unknown option(s) {', '.join(unknown)}; expected keyword arguments "
                f"of valkey.asyncio.Valkey such as cache_max_size, cache_ttl, max_connections")
        super().__init__(name, options, endpoints)
        self._hook: InvalidationHook | None = None
        self._counts = {"local_hits": 0, "server_gets": 0, "invalidated_keys": 0,
                        "invalidate_all": 0}
        self._connection_class = self._make_connection_class()

    def _make_connection_class(self) -> type[Connection]:
        backend = self

        class _ReportingConnection(Connection):
            """A pooled connection that reports local answers and invalidations."""

            async def _get_from_local_cache(self, command: Any) -> Any:
                response = await super()._get_from_local_cache(command)
                if response is not None:
                    _served_locally.set(True)
                return response

            def _cache_invalidation_process(self, data: list[Any]) -> None:
                super()._cache_invalidation_process(data)
                backend._on_invalidation(data[1])

        return _ReportingConnection

    def _on_invalidation(self, keys: list[bytes | str] | None) -> None:
        now = time.perf_counter_ns()
        if keys is None:  # "invalidate everything" (FLUSHDB, or tracking table overflow)
            self._counts["invalidate_all"] += 1
            return
        self._counts["invalidated_keys"] += len(keys)
        hook = self._hook
        if hook is None:
            return
        for key in keys:
            hook(key.decode() if isinstance(key, bytes) else str(key), None, now)

    def _new_client(self, *, for_prepare: bool = False) -> Any:
        if for_prepare:
            return valkey_asyncio.Valkey.from_url(self._url)
        return valkey_asyncio.Valkey.from_url(
            self._url, protocol=3, cache_enabled=True,
            connection_class=self._connection_class, **self._options)

    async def get(self, key: str) -> GetResult:
        client = self._require()
        token = _served_locally.set(False)
        try:
            value: bytes | None = await client.get(key)
            local = _served_locally.get()
        finally:
            _served_locally.reset(token)
        self._counts["local_hits" if local else "server_gets"] += 1
        return GetResult(value, local)

    def set_invalidation_hook(self, hook: InvalidationHook | None) -> None:
        self._hook = hook

    def stats(self) -> Mapping[str, Any]:
        pool = self._client.connection_pool if self._client is not None else None
        connections = 0
        if pool is not None:
            connections = len(pool._available_connections) + len(pool._in_use_connections)
        return {**self._counts, "connections": connections}
