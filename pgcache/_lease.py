"""The lease: how long this instance may trust its local copies without hearing from anyone.

A listener that goes silent (a blackholed route: bytes dropped, connection not closed) cannot
be told from a quiet one. So local copies are served only within a lease, renewed by proof
that the notification path works end to end: a notification this instance sent at time ``t``
coming back through its own listener. PostgreSQL delivers notifications to a listener in
commit order, so when that echo arrives, every write committed before ``t`` has been
announced to this instance already; a copy served before ``t + duration`` is therefore stale
by at most ``duration``. That is pgcache's staleness bound under silent faults.

Every notification carries a sequence number (see ``_payload``), so the writes' own
notifications renew the lease as they come back; a heartbeat (an empty notification on
the notifier's connection, see ``_notifier``) is sent only when nothing else was sent for a
quarter of the lease. When the lease
lapses, reads bypass the local cache and install nothing until an echo proves the path again.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from ._local import LocalCache

_monotonic = time.monotonic


class Lease:
    """Sequence numbers for outgoing notifications, and the lease their echoes renew."""

    __slots__ = ("_active", "_local", "_proof", "_sent", "_seq", "duration", "kick", "lapses")

    def __init__(self, local: LocalCache, duration: float) -> None:
        self._local = local
        self.duration = duration
        self._sent: dict[int, float] = {}  # seq -> when it was sent (monotonic)
        self._seq = 0
        self._active = False  # the listener is up: echoes mean something
        self._proof = asyncio.Event()
        # Asks for a heartbeat now (the notifier's kick, set once it exists).
        self.kick: Callable[[], None] = lambda: None
        self.lapses = 0

    @property
    def valid(self) -> bool:
        return _monotonic() < self._local.trusted_until

    def next_seq(self) -> int:
        """The number of a notification about to be sent (its send time is noted now)."""
        seq = self._seq = self._seq + 1
        sent = self._sent
        sent[seq] = _monotonic()
        if len(sent) > 1024:
            # Echoes that never came (a failed write): the oldest renew least; drop them.
            for old in list(itertools.islice(sent, 512)):
                del sent[old]
        return seq

    def echoed(self, seq: int) -> None:
        """Our notification ``seq`` came back: renew the lease from its send time."""
        sent = self._sent
        at = sent.pop(seq, None)
        if at is None or not self._active:
            return
        # Echoes arrive in commit order, which is nearly the order sent: anything sent
        # before this one would renew less. (The dict keeps insertion order: seq order.)
        while sent:
            oldest = next(iter(sent))
            if oldest > seq:
                break
            del sent[oldest]
        self.proven(at)

    def proven(self, at: float) -> None:
        """Everything committed before ``at`` (monotonic) has reached us: renew from it."""
        if not self._active:
            return
        local = self._local
        until = at + self.duration
        trusted = local.trusted_until
        if until > trusted:
            local.trusted_until = until
            if trusted < _monotonic():  # not held (lapsed, or never): this is a new proof
                if trusted:
                    self.lapses += 1
                self._proof.set()

    def suspend(self) -> None:
        """The listener is lost: trust nothing until it is back and proven."""
        self._active = False
        self._local.trusted_until = 0.0
        self._proof.clear()

    def resume(self) -> None:
        """The listener is back (LISTEN in place): the next echo renews the lease."""
        self._active = True
        self._sent.clear()  # sent before LISTEN: their echoes cannot arrive
        self.kick()

    async def wait_proven(self, within_seconds: float) -> bool:
        """Wait for the first renewal; False if none came within that time."""
        try:
            async with asyncio.timeout(within_seconds):
                await self._proof.wait()
        except TimeoutError:
            return False
        return True
