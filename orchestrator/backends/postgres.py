"""The ``pgcache`` backend: one :class:`pgcache.PostgresCache` per application instance.

``options`` become :class:`pgcache.CacheSettings` keywords; ``dsn`` and ``listener_dsn`` come
from the (possibly emulated) endpoints. The seed's three Postgres variants are presets of this
type (see ``orchestrator.backends.registry.PRESETS``).

A read is recorded as *local* when the cache answered it from its local copy:
:meth:`pgcache.PostgresCache.get_local` (no I/O, never suspends) is asked first, and only when
it has nothing does the read go through ``get`` to PostgreSQL. Nothing can change the local
cache between the two calls (there is no suspension point between them), so a read that reaches
``get`` always leaves the process: the flag is exact with many coroutines sharing the cache.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from orchestrator.backends.base import GetResult, InvalidationHook, Loader
from orchestrator.errors import BackendError
from pgcache import CacheSettings, PgCacheError, PostgresCache
from proxies import Endpoints


def _as_dict(stats: Any) -> dict[str, Any]:
    if isinstance(stats, Mapping):
        return dict(stats)
    if hasattr(stats, "as_dict"):
        return dict(stats.as_dict())
    names = getattr(stats, "__slots__", None) or getattr(stats, "__dict__", {})
    return {name: getattr(stats, name) for name in names if not name.startswith("_")}


class PgCacheBackend:
    """Adapter from the orchestrator's Backend protocol to pgcache."""

    def __init__(self, name: str, options: Mapping[str, Any], endpoints: Endpoints) -> None:
        self.name = name
        try:
            self._settings = CacheSettings(dsn=endpoints.postgres_dsn,
                                           listener_dsn=endpoints.postgres_listener_dsn,
                                           **dict(options))
        except (PgCacheError, TypeError) as exc:
            raise BackendError(f"{name}: invalid pgcache options: {exc}") from exc
        self._cache: Any = None
        self._get_local: Any = None
        self._hook: InvalidationHook | None = None
        # The GetResult of each key's last local hit, reused while the copy is the same
        # object (building the frozen dataclass costs more than the hit itself). Bounded by
        # the local cache's size.
        self._hits: dict[str, GetResult] = {}
        self._hits_max = max(1, self._settings.local_max_entries)

    async def prepare(self) -> None:
        try:
            await PostgresCache.init_db(self._settings)
            cache = PostgresCache(self._settings)
            await cache.connect()
            try:
                await cache.truncate()
            finally:
                await cache.close()
        except (PgCacheError, OSError) as exc:
            raise BackendError(f"{self.name}: could not prepare the cache table: {exc}") \
                from exc

    async def connect(self) -> None:
        self._cache = PostgresCache(self._settings)
        self._get_local = self._cache.get_local
        self._cache.add_invalidation_callback(self._on_invalidation)
        try:
            await self._cache.connect()
        except (PgCacheError, OSError) as exc:
            raise BackendError(f"{self.name}: could not connect: {exc}") from exc

    def _on_invalidation(self, key: str | None, version: int | None) -> None:
        hook = self._hook
        if hook is not None:
            hook(key, version, time.perf_counter_ns())

    def _local_hit(self, key: str) -> GetResult | None:
        value = self._get_local(key)
        if value is None:
            return None
        hits = self._hits
        result = hits.get(key)
        if result is None or result.value is not value:
            if len(hits) >= self._hits_max:
                hits.clear()
            result = hits[key] = GetResult(value, True)
        return result

    async def get(self, key: str) -> GetResult:
        return self._local_hit(key) or GetResult(await self._cache.get(key), False)

    async def get_or_set(self, key: str, loader: Loader, ttl_seconds: float) -> GetResult:
        """pgcache's own get_or_set: the loader runs once per miss across all instances."""
        hit = self._local_hit(key)
        if hit is not None:
            return hit
        value = await self._cache.get_or_set(key, loader, ttl_seconds=ttl_seconds)
        return GetResult(value, False)

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> int | None:
        version: int | None = await self._cache.set(key, value, ttl_seconds=ttl_seconds)
        return version

    async def delete(self, key: str) -> None:
        await self._cache.delete(key)

    def set_invalidation_hook(self, hook: InvalidationHook | None) -> None:
        self._hook = hook

    def stats(self) -> Mapping[str, Any]:
        return _as_dict(self._cache.stats) if self._cache is not None else {}

    async def close(self) -> None:
        if self._cache is not None:
            cache, self._cache = self._cache, None
            self._hits.clear()
            await cache.close()
