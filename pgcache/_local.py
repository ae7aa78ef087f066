"""The per-instance local cache: a bounded LRU with TTL that knows the version of every copy.

Besides the copies themselves it tracks reads in flight, so that an invalidation arriving
while a read is on the wire stops that read from installing what it fetched (DESIGN 3, race
a), and it compares versions so that an invalidation for version v never evicts a copy of a
newer version (race b).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, NamedTuple

# Keys longer than this many characters travel in notifications as a digest (a key of up to
# 200 characters needs at most 2 400 bytes JSON-escaped, so several always fit a payload).
LONG_KEY_CHARS = 200


def encode_key(key: str) -> bytes:
    """The stored form of a key: UTF-8, lone surrogates kept (any ``str`` is a valid key)."""
    return key.encode("utf-8", "surrogatepass")


def key_digest(key: str) -> str:
    """The name a long key goes by in notifications."""
    return hashlib.blake2b(encode_key(key), digest_size=16).hexdigest()


class Entry(NamedTuple):
    value: bytes
    kind: int
    version: int
    expires: float  # time.monotonic() deadline


class LocalCache:
    """Bounded LRU of versioned copies plus the bookkeeping of reads in flight."""

    __slots__ = ("by_digest", "data", "epoch", "inflight", "max_entries", "ttl")

    def __init__(self, max_entries: int, ttl: float) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        # Read by PostgresCache.get() directly: a local hit must not pay for a method call.
        self.data: OrderedDict[str, Entry] = OrderedDict()
        # digest -> key, for long keys held or being fetched (notifications name them so).
        self.by_digest: dict[str, str] = {}
        # key -> [reads in flight, highest version invalidated while they were in flight,
        #         the fetch a new read of the key may share (None: none may be shared)]
        self.inflight: dict[str, list[Any]] = {}
        # Bumped by every flush: a read that began before a flush never installs.
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.data)

    def begin_fetch(self, key: str, shared: Any = None) -> int:
        """Note a read of ``key`` going to PostgreSQL; returns the epoch to hand to finish.

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
        it returns is then at least as new as anything this instance has been told about
        when the sharing read began, the same guarantee as a local copy.
        """
        slot = self.inflight.get(key)
        return None if slot is None else slot[2]

    def end_fetch(self, key: str, shared: Any = None) -> int:
        """The read of ``key`` is back; returns the highest version invalidated meanwhile."""
        slot = self.inflight[key]
        slot[0] -= 1
        if shared is not None and slot[2] is shared:
            slot[2] = None
        if slot[0] == 0:
            del self.inflight[key]
            if len(key) > LONG_KEY_CHARS and key not in self.data:
                self.by_digest.pop(key_digest(key), None)
        invalidated: int = slot[1]
        return invalidated

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
        """Apply "``key`` changed at ``version``": drop older copies, stop older reads in flight.

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

    def key_for_digest(self, digest: str) -> str | None:
        return self.by_digest.get(digest)

    def flush(self) -> int:
        """Drop every copy and disown every read in flight; returns how many copies went."""
        count = len(self.data)
        self.data.clear()
        for slot in self.inflight.values():
            slot[2] = None
        self.by_digest = {key_digest(k): k for k in self.inflight if len(k) > LONG_KEY_CHARS}
        self.epoch += 1
        return count
