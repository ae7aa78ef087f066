"""The one interface every benchmarked backend implements.

A backend adapter is one application instance's client: a worker process creates exactly one,
connects it once, and shares it between all of its writer and reader tasks. Adding a backend
is adding one module that implements :class:`Backend` and registering it in
:mod:`orchestrator.backends.registry`. Where the client connects comes as
:class:`proxies.Endpoints` (already rewritten through any network emulation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Called by a backend when an invalidation for ``key`` reaches this instance from elsewhere:
# (key, server_version or None, monotonic arrival time in ns from time.perf_counter_ns());
# key None: the instance flushed its whole local cache (e.g. after losing its listener).
InvalidationHook = Callable[["str | None", "int | None", int], None]

# What get_or_set calls on a miss to compute the value (the workload's loader: it records its
# own execution).
Loader = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class GetResult:
    """What a read returned: the value (None on a miss) and whether it came from a local copy."""

    value: bytes | None
    local: bool = False


class Backend(Protocol):
    """One application instance's cache client."""

    name: str

    async def prepare(self) -> None:
        """Bring the server side to a fresh, empty state (run once per pass, by the parent)."""

    async def connect(self) -> None:
        """Open connections (pool, listener, ...)."""

    async def get(self, key: str) -> GetResult: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> int | None:
        """Write; return the server-side version written when the backend has one."""

    async def delete(self, key: str) -> None: ...

    async def get_or_set(self, key: str, loader: Loader, ttl_seconds: float) -> GetResult:
        """The value of ``key``; on a miss ``loader()`` computes it and it is stored.

        How many loaders run for one miss across the instances is the backend's recipe (the
        stampede view measures it).
        """

    def set_invalidation_hook(self, hook: InvalidationHook | None) -> None:
        """Register the worker's hook for invalidations arriving from other instances."""

    def stats(self) -> Mapping[str, Any]:
        """Client-side counters for the run's events (may be empty)."""

    async def close(self) -> None: ...
