"""The per-instance local cache: a bounded LRU with TTL that knows the version of every copy.

Besides the copies it tracks every operation in flight on a key (a read on the wire, a write
not yet returned) together with the highest version announced for the key while it was in
flight. That is the instance's high-water mark of recently announced versions: it lives
exactly as long as something it could contradict (a copy, through the copy's own version, or
an operation in flight, through its slot), so it is bounded by the local cache's size plus the
instance's concurrency, and it never forgets a version too early. With it:

- a fetch overtaken by an invalidation never installs what it fetched;
- an invalidation for version v never evicts a copy of a newer version;
- a write that returns version v after an invalidation for a version above v was received
  (another instance wrote the key meanwhile) never installs v.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, NamedTuple

from ._keys import LONG_KEY_CHARS, key_digest

_NEVER = 0.0
_monotonic = time.monotonic


class Entry(NamedTuple):
    value: bytes
    kind: int
    version: int
    expires: float  # time.monotonic() deadline


class LocalCache:
    """Bounded LRU of versioned copies plus the bookkeeping of operations in flight.

    Public because other clients can keep a local cache coherent the same way (the
    benchmark's Valkey client-tracking peer does): versions only need to increase per key in
    the order the invalidations are received, e.g. a counter of invalidations received.
    Single-threaded (one event loop); copies expire at ``Entry.expires`` (time.monotonic())
    and may be served only while ``time.monotonic() < trusted_until``.
    """

    __slots__ = ("by_digest", "data", "epoch", "inflight", "max_entries", "trusted_until")

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.data: OrderedDict[str, Entry] = OrderedDict()
        # Copies may be served, and installed, only while time.monotonic() is below this
        # (the lease, see ``_lease``); 0 while invalidations may be missed.
        self.trusted_until = _NEVER
        # digest -> key, for long keys held or in flight (notifications name them so).
        self.by_digest: dict[str, str] = {}
        # key -> [operations in flight, highest version announced while they were,
        #         the fetch a new read of the key may share (None: none may be shared)]
        self.inflight: dict[str, list[Any]] = {}
        # Bumped by every flush: an operation that began before a flush never installs.
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.data)

    def lookup(self, key: str, now: float) -> Entry | None:
        """The copy of ``key`` that may be served at ``now`` (time.monotonic()), or None:
        none held, expired (then dropped), or not trusted (the lease has lapsed). A hit
        becomes the most recently used. Raises TypeError for an unhashable key."""
        data = self.data
        entry = data.get(key)
        if entry is None:
            return None
        if now < entry.expires:
            if now >= self.trusted_until:
                return None
            data.move_to_end(key)
            return entry
        self.remove(key)
        return None

    def begin(self, key: str, shared: Any = None) -> int:
        """Note an operation on ``key`` going to PostgreSQL; returns the epoch to check later.

        ``shared`` (if not None) is what a read of ``key`` beginning while this one is in
        flight may wait for instead of fetching itself (see :meth:`joinable`).
        """
        slot = self.inflight.get(key)
        if slot is None:
            self.inflight[key] = [1, 0, shared]
            if len(key) > LONG_KEY_CHARS:
                self.by_digest[key_digest(key)] = key
        else:
            slot[0] += 1
            if shared is not None:
                slot[2] = shared
        return self.epoch

    def joinable(self, key: str) -> Any:
        """The fetch of ``key`` in flight that a read beginning now may share, or None.

        A fetch is shareable only until an invalidation of ``key`` (or a flush) arrives: what
        it returns is then at least as new as anything this instance had been told about
        when the sharing read began, the same guarantee as a local copy.
        """
        slot = self.inflight.get(key)
        return None if slot is None else slot[2]

    def end(self, key: str, shared: Any = None) -> int:
        """The operation on ``key`` is back; returns the highest version announced meanwhile."""
        slot = self.inflight[key]
        slot[0] -= 1
        if shared is not None and slot[2] is shared:
            slot[2] = None
        if slot[0] == 0:
            del self.inflight[key]
            if len(key) > LONG_KEY_CHARS and key not in self.data:
                self.by_digest.pop(key_digest(key), None)
        announced: int = slot[1]
        return announced

    def written(self, key: str, version: int, value: bytes | None, kind: int,
                lifetime: float, epoch: int) -> None:
        """This instance's write of ``key`` returned ``version`` (``value``; None: a delete):
        end its operation (begun in ``epoch``), and keep ``value`` for ``lifetime`` seconds
        unless a newer version was announced meanwhile, a flush happened or the lease has
        lapsed; otherwise drop older copies. Operations of ``key`` still in flight learn of
        ``version``. (``end`` and ``install``/``invalidate`` in one call: every ``set``
        runs this.)"""
        slot = self.inflight[key]
        announced: int = slot[1]
        if slot[0] == 1:
            del self.inflight[key]
            if len(key) > LONG_KEY_CHARS and key not in self.data:
                self.by_digest.pop(key_digest(key), None)
        else:
            slot[0] -= 1
            slot[2] = None  # reads beginning from now on fetch for themselves
            if announced < version:
                slot[1] = version
        now = _monotonic()
        if value is not None and version >= announced and epoch == self.epoch \
                and now < self.trusted_until:
            self.install(key, value, kind, version, now + lifetime)  # replaces older
            return
        entry = self.data.get(key)
        if entry is not None and entry.version < version:
            self.remove(key)

    def install(self, key: str, value: bytes, kind: int, version: int, expires: float) -> None:
        """Keep a copy unless one of the same or a newer version is already held."""
        data = self.data
        old = data.get(key)
        if old is not None:
            if old.version >= version:
                return
            data.move_to_end(key)
        else:
            if len(key) > LONG_KEY_CHARS:
                self.by_digest[key_digest(key)] = key
            if len(data) >= self.max_entries:
                self._evict_lru()
        data[key] = Entry(value, kind, version, expires)

    def _evict_lru(self) -> None:
        key, _ = self.data.popitem(last=False)
        if len(key) > LONG_KEY_CHARS and key not in self.inflight:
            self.by_digest.pop(key_digest(key), None)

    def invalidate(self, key: str, version: int) -> bool:
        """Apply "``key`` changed at ``version``": drop older copies, tell operations in flight.

        Returns whether a copy was dropped.
        """
        slot = self.inflight.get(key)
        if slot is not None:
            slot[2] = None  # reads beginning from now on fetch for themselves
            if slot[1] < version:
                slot[1] = version
        entry = self.data.get(key)
        if entry is not None and entry.version < version:
            self.remove(key)
            return True
        return False

    def remove(self, key: str) -> None:
        """Drop the copy of ``key`` if any, whatever its version."""
        if self.data.pop(key, None) is not None and len(key) > LONG_KEY_CHARS \
                and key not in self.inflight:
            self.by_digest.pop(key_digest(key), None)

    def floor(self, version: int) -> int:
        """Apply "every key changed at ``version``" (rows written before it were trimmed):
        drop older copies, tell every operation in flight; returns how many copies went."""
        older = [key for key, entry in self.data.items() if entry.version < version]
        for key in older:
            self.remove(key)
        for slot in self.inflight.values():
            slot[2] = None
            if slot[1] < version:
                slot[1] = version
        return len(older)

    def key_for_digest(self, digest: str) -> str | None:
        return self.by_digest.get(digest)

    def flush(self) -> int:
        """Drop every copy and disown every operation in flight; returns how many copies went."""
        count = len(self.data)
        self.data.clear()
        for slot in self.inflight.values():
            slot[2] = None
        self.by_digest = {key_digest(k): k for k in self.inflight if len(k) > LONG_KEY_CHARS}
        self.epoch += 1
        return count
