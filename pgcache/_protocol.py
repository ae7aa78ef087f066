"""``Cache``, the typing protocol every cache client here follows, and ``NullCache``.

Both are postgres-cache 0.1.1's: code typed against ``Cache`` takes a ``PostgresCache`` or a
``NullCache`` (caching switched off: every ``get_or_set`` runs its loader).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

Loader = Callable[[], Awaitable[Any]] | Callable[[], Any]


@runtime_checkable
class Cache(Protocol):
    """What a cache client offers."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None: ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def get(self, key: str) -> Any: ...

    async def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> Any: ...

    async def delete(self, key: str) -> Any: ...

    async def invalidate(self, key: str) -> Any: ...

    async def get_or_set(self, key: str, loader: Loader,
                         ttl_seconds: float | None = None) -> Any: ...

    async def cleanup_expired(self) -> int: ...


class NullCache:
    """A cache that stores nothing: ``get`` misses, ``get_or_set`` always runs the loader."""

    async def __aenter__(self) -> NullCache:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get(self, key: str) -> Any:
        return None

    async def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        return None

    async def delete(self, key: str) -> bool:
        return False

    async def invalidate(self, key: str) -> bool:
        return False

    async def get_or_set(self, key: str, loader: Loader,
                         ttl_seconds: float | None = None) -> Any:
        value = loader()
        if inspect.isawaitable(value):
            value = await value
        return value

    async def cleanup_expired(self) -> int:
        return 0
