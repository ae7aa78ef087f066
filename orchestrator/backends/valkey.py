"""The ``valkey`` backend: redis-py's asyncio client (hiredis parser) against Valkey.

One client (one connection pool) per application instance; each concurrent command borrows a
connection. ``options`` go to ``redis.asyncio.Redis.from_url``, except the ``get_or_set``
recipe's (``orchestrator.backends.stampede``: ``get_or_set: naive | lock``, ``lock_ttl_ms``,
``lock_poll_ms``, ``lock_timeout_seconds``); the ``valkey-lock`` preset uses the lock recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator.backends.base import GetResult, InvalidationHook, Loader
from orchestrator.backends.stampede import RELEASE_SCRIPT, LockRecipe, naive, recipe_options
from orchestrator.errors import BackendError
from proxies import Endpoints


class ValkeyBackend:
    """GET / SET PX / DEL on one shared client."""

    # What a failed connection or command raises (valkey-py has its own twin hierarchy).
    _errors: tuple[type[Exception], ...] = (RedisError, OSError)

    def __init__(self, name: str, options: Mapping[str, Any], endpoints: Endpoints) -> None:
        self.name = name
        self._url = endpoints.valkey_url
        self._recipe, self._options = recipe_options(options)
        self._client: Any = None
        self._lock_recipe = LockRecipe(self._recipe, self.get, self.set, self._acquire,
                                       self._release)

    def _new_client(self, *, for_prepare: bool = False) -> Any:
        return Redis.from_url(self._url, **self._options)

    async def prepare(self) -> None:
        client = self._new_client(for_prepare=True)
        try:
            await client.flushdb()
        except self._errors as exc:
            raise BackendError(f"{self.name}: could not flush Valkey at {self._url}: {exc}") \
                from exc
        finally:
            await client.aclose()

    async def connect(self) -> None:
        if self._client is not None:
            raise BackendError(f"{self.name}: backend is already connected")
        client = self._new_client()
        try:
            await client.ping()
        except self._errors as exc:
            await client.aclose()
            raise BackendError(f"{self.name}: could not connect to Valkey at {self._url}: "
                               f"{exc}") from exc
        self._client = client

    def _require(self) -> Any:
        if self._client is None:
            raise BackendError(f"{self.name}: backend is not connected")
        return self._client

    async def get(self, key: str) -> GetResult:
        value: bytes | None = await self._require().get(key)
        # decode_responses is off (the default): replies are bytes.
        return GetResult(value, False)

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> int | None:
        await self._require().set(key, value, px=max(1, int(ttl_seconds * 1000)))
        return None

    async def delete(self, key: str) -> None:
        await self._require().delete(key)

    async def get_or_set(self, key: str, loader: Loader, ttl_seconds: float) -> GetResult:
        if self._recipe.get_or_set == "lock":
            return await self._lock_recipe(key, loader, ttl_seconds)
        return await naive(self.get, self.set, key, loader, ttl_seconds)

    async def _acquire(self, lock: str, token: str, ttl_ms: int) -> bool:
        return bool(await self._require().set(lock, token, nx=True, px=ttl_ms))

    async def _release(self, lock: str, token: str) -> None:
        await self._require().eval(RELEASE_SCRIPT, 1, lock, token)

    def set_invalidation_hook(self, hook: InvalidationHook | None) -> None:
        return None  # no local copies, nothing to invalidate

    def stats(self) -> Mapping[str, Any]:
        return {}

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
