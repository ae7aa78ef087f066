"""The ``null`` backend: a dict in the worker, no I/O — the harness's own ceiling.

Every operation completes without suspending, so its throughput is what the worker loop and the
recorder cost. Reads of a key written before hit (as a local copy), so the read path records a
version exactly as it does for the real backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.backends.base import GetResult, InvalidationHook, Loader
from orchestrator.backends.stampede import naive
from proxies import Endpoints

_MISS = GetResult(None, False)


class NullBackend:
    """Stores values in a dict; never touches the network."""

    def __init__(self, name: str, options: Mapping[str, Any], endpoints: Endpoints) -> None:
        self.name = name
        self._data: dict[str, GetResult] = {}
        self._sets = 0

    async def prepare(self) -> None:
        self._data.clear()

    async def connect(self) -> None:
        return None

    async def get(self, key: str) -> GetResult:
        return self._data.get(key, _MISS)

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> int | None:
        self._data[key] = GetResult(value, True)
        self._sets += 1
        return None

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def get_or_set(self, key: str, loader: Loader, ttl_seconds: float) -> GetResult:
        return await naive(self.get, self.set, key, loader, ttl_seconds)

    def set_invalidation_hook(self, hook: InvalidationHook | None) -> None:
        return None

    def stats(self) -> Mapping[str, Any]:
        return {"entries": len(self._data), "sets": self._sets}

    async def close(self) -> None:
        self._data.clear()
