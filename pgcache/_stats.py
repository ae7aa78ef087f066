"""An instance's counters, and ``CacheStats``, the snapshot users read."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


class Counters:
    """Plain integer counters every part of an instance adds to (no locking: one loop)."""

    __slots__ = ("deletes", "foreign_notifications", "heartbeats_sent", "invalidations_received",
                 "loads", "local_evictions", "local_flushes", "local_hits", "lock_waits",
                 "misses", "notifications_sent", "notified_keys", "notify_errors", "remote_hits",
                 "retries", "sets", "shared_reads", "trimmed", "write_statements")

    def __init__(self) -> None:
        self.deletes = 0
        self.foreign_notifications = 0
        self.heartbeats_sent = 0
        self.invalidations_received = 0
        self.loads = 0
        self.local_evictions = 0
        self.local_flushes = 0
        self.local_hits = 0
        self.lock_waits = 0
        self.misses = 0
        self.notifications_sent = 0
        self.notified_keys = 0
        self.notify_errors = 0
        self.remote_hits = 0
        self.retries = 0
        self.sets = 0
        self.shared_reads = 0
        self.trimmed = 0
        self.write_statements = 0

    def snapshot(self, *, listener_reconnects: int, listener_connected: bool, local_size: int,
                 lease_valid: bool, lease_lapses: int) -> CacheStats:
        """These counters, with what the instance's other parts say, as a ``CacheStats``."""
        return CacheStats(
            local_hits=self.local_hits, remote_hits=self.remote_hits, misses=self.misses,
            sets=self.sets, deletes=self.deletes, loads=self.loads,
            invalidations_received=self.invalidations_received,
            local_evictions=self.local_evictions, local_flushes=self.local_flushes,
            listener_reconnects=listener_reconnects, listener_connected=listener_connected,
            local_size=local_size, notifications_sent=self.notifications_sent,
            notified_keys=self.notified_keys, notify_errors=self.notify_errors,
            write_statements=self.write_statements, shared_reads=self.shared_reads,
            lease_valid=lease_valid, lease_lapses=lease_lapses,
            heartbeats_sent=self.heartbeats_sent,
            foreign_notifications=self.foreign_notifications, lock_waits=self.lock_waits,
            retries=self.retries, trimmed=self.trimmed)


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
    # Whether local copies may be served right now (the lease is held), how often a held
    # lease lapsed, and the heartbeats sent to renew it.
    lease_valid: bool = False
    lease_lapses: int = 0
    heartbeats_sent: int = 0
    # Notifications on the channel that are not pgcache's (or not this version's): counted,
    # logged once, otherwise ignored.
    foreign_notifications: int = 0
    # get_or_set waits for another instance's load; statements retried on a fresh connection.
    lock_waits: int = 0
    retries: int = 0
    # Rows this instance's trims deleted to keep the table within max_entries / max_bytes.
    trimmed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)
