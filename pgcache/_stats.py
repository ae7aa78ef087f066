"""``CacheStats``: a snapshot of one instance's counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of an instance's counters (``PostgresCache.stats``)."""

    local_hits: int
    remote_hits: int
    misses: int
    sets: int
    deletes: int
    loads: int
    invalidations_received: int
    local_evictions: int
    local_flushes: int
    listener_reconnects: int
    listener_connected: bool
    local_size: int
    notifications_sent: int
    notified_keys: int
    notify_errors: int
    write_statements: int
    shared_reads: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)
