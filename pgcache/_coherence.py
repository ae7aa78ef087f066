"""Keeping the local copies coherent: what an arriving notification, a lost listener and a
listener back again do to them.

- Another instance's ``(key, v)`` drops a copy older than v and tells any operation of that
  key in flight (``LocalCache.invalidate``); a copy of v or newer stays. A trim's floor v
  does the same for every key (``LocalCache.floor``); callbacks hear ``(None, v)``.
- Our own notifications come back too: they renew the lease (``_lease``), nothing else.
- Listener lost: copies are no longer trusted (the lease is suspended), the local cache is
  flushed (operations in flight are disowned) and callbacks hear ``(None, None)``.
- Listener back: flushed again (what was read while deaf is disowned), and the next echo
  renews the lease.
- A payload that is not pgcache's (another program on the channel, another version during a
  rolling deploy), or one with an item pgcache cannot read, is counted in
  ``stats.foreign_notifications``, logged once, and flushes the local cache: it may have
  announced a write this instance cannot tell, and a flush never serves a stale copy.
  Nothing a payload holds makes ``on_payload`` raise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ._lease import Lease
from ._local import LocalCache
from ._payload import FLUSH_ALL, FOREIGN, Notice, decode, own_prefix, own_seq
from ._stats import Counters

log = logging.getLogger("pgcache")

InvalidationCallback = Callable[[str | None, int | None], None]
# What _resolve returns for a pair that is not pgcache's.
_UNREADABLE: tuple[str, int] = ("", -1)


class Coherence:
    """Applies invalidations to one instance's local cache and tells the callbacks."""

    __slots__ = ("_callbacks", "_counters", "_foreign_logged", "_lease", "_local",
                 "_own_prefix", "_woken", "instance_id")

    def __init__(self, instance_id: str, local: LocalCache | None, lease: Lease | None,
                 counters: Counters, woken: dict[str, asyncio.Event]) -> None:
        self.instance_id = instance_id
        self._local = local
        self._lease = lease
        self._counters = counters
        self._own_prefix = own_prefix(instance_id)
        self._callbacks: list[InvalidationCallback] = []
        self._foreign_logged = False
        # get_or_set's waiters: key -> the event that wakes the one waiting for that key.
        self._woken = woken

    def add_callback(self, callback: InvalidationCallback) -> None:
        self._callbacks.append(callback)

    def remove_callback(self, callback: InvalidationCallback) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def _tell(self, key: str | None, version: int | None) -> None:
        for callback in self._callbacks:
            try:
                callback(key, version)
            except Exception:
                log.exception("pgcache invalidation callback %r failed", callback)

    def on_payload(self, payload: str) -> None:
        """A payload from this instance's own listener; never raises."""
        try:
            if payload.startswith(self._own_prefix):  # our own write's or heartbeat's echo
                seq = own_seq(payload, self._own_prefix)
                if seq is not None:
                    self.on_echo(seq)
                return
            notice = decode(payload)
            if notice is None:
                self._foreign(payload)
                return
            self.on_notice(notice)
        except Exception:
            # Raised here it would only reach asyncio's exception handler, the payload
            # unapplied: what it might have announced is dropped instead.
            log.exception("pgcache could not apply a notification: %.200r", payload)
            self._foreign(payload)

    def on_echo(self, seq: int) -> None:
        """Our own notification ``seq`` came back."""
        if self._lease is not None:
            self._lease.echoed(seq)

    def on_proof(self, at: float) -> None:
        """The relay forwarded everything committed before ``at``."""
        if self._lease is not None:
            self._lease.proven(at)

    def _foreign(self, payload: object) -> None:
        self._counters.foreign_notifications += 1
        if not self._foreign_logged:
            self._foreign_logged = True
            log.warning("pgcache flushes its local copies on notifications on its channel "
                        "that are not its own (counted in stats.foreign_notifications; "
                        "logged once): %.200r", payload)
        self.flush()
        self._tell(None, None)

    def on_notice(self, notice: Notice) -> None:
        """Another instance's decoded payload (``FOREIGN``: not a pgcache payload)."""
        if notice.seq == FOREIGN.seq:
            self._foreign(notice.items[0] if notice.items else "")
            return
        local = self._local
        counters = self._counters
        items = iter(notice.items)
        for version, name in zip(items, items, strict=False):
            # The common case needs no resolving: a short key written at a version (every
            # write of every other instance passes here).
            if not (type(version) is int and version > 0 and type(name) is str):
                resolved = self._resolve(version, name)
                if resolved is None:
                    continue
                if resolved is _UNREADABLE:
                    self._foreign(notice.items)
                    return
                name, version = resolved
            counters.invalidations_received += 1
            if local is not None and local.invalidate(name, version):
                counters.local_evictions += 1
            if self._woken or self._callbacks:
                self._told(name, version)

    def _resolve(self, version: object, name: object) -> tuple[str, int] | None:
        """A pair of a payload that is not a short key's version: apply a trim's floor or a
        flush, and return None; return a long key named by its hash as ``(key, version)``
        (None, counted as received, if this instance neither holds nor has it in flight);
        ``_UNREADABLE`` for anything else."""
        if type(version) is not int:
            return _UNREADABLE
        if name is None:
            if version > 0:
                self.floor(version)
                return None
            return _UNREADABLE
        if not isinstance(name, str):
            return _UNREADABLE
        if version == FLUSH_ALL:
            self.flush()
            self._tell(None, None)
            return None
        if version > 0:  # a str subclass: as a short key
            return name, version
        key = self._local.key_for_digest(name) if self._local is not None else None
        if key is None:
            self._counters.invalidations_received += 1
            return None
        return key, -version

    def _told(self, key: str, version: int) -> None:
        """Wake get_or_set's waiter for ``key``, if any, and tell the callbacks."""
        if self._woken:
            event = self._woken.get(key)
            if event is not None:
                event.set()
        if self._callbacks:
            self._tell(key, version)

    def floor(self, version: int) -> None:
        """Every row written before ``version`` was trimmed from the table."""
        if self._local is not None:
            self._counters.local_evictions += self._local.floor(version)
        self._tell(None, version)

    def flush(self) -> None:
        if self._local is not None:
            self._local.flush()
            self._counters.local_flushes += 1

    def on_lost(self, reason: str) -> None:
        # Notifications may be lost from here on: stop trusting copies until LISTEN is back.
        if self._lease is not None:
            self._lease.suspend()
        self.flush()
        self._tell(None, None)

    def on_ready(self) -> None:
        if self._local is not None:
            self._local.flush()  # disowns operations that began while we were deaf
        if self._lease is not None:
            self._lease.resume()
