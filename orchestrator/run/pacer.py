"""When a load task's operations start: closed loop, or open loop at a rate.

A :class:`Pacer` paces one task through one phase. Closed loop, an operation starts as soon as
the one before it ended, after the think time if there is one. Open loop, the task's
operations are due every ``interval_ns`` from its first; one that starts late (the operation
before it took longer than an interval) counts from when it was due, never from when it
actually began, so that a slow server cannot hide its queueing (no coordinated omission).

:meth:`Pacer.start` is synchronous and cheap, because a task calls it before every operation:
it returns the operation's start, :data:`STOP` when the phase is over, or :data:`WAIT` when the
operation is not due yet; the task then awaits :meth:`Pacer.wait` and asks again. Open-loop
waits go to a :class:`Waker`: the event loop's own timers round a wait up to a whole
millisecond, which an open loop would count as latency.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable

from proxies import DelayClock

Clock = Callable[[], int]
Wake = Callable[[int], Awaitable[None]]

STOP = -1  # Pacer.start: the phase is over
WAIT = -2  # Pacer.start: not yet: await Pacer.wait(), then call start() again
_NEVER = sys.maxsize


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Waker:
    """Wakes open-loop tasks at their intended start times, within tens of microseconds (a
    timerfd: proxies' :class:`~proxies.DelayClock`) rather than the loop's whole milliseconds.
    It may wake a task slightly early (it learns how late wake-ups are and arms that much
    sooner): :class:`Pacer` then counts the operation from its actual start, never from a
    later one."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._clock = DelayClock(self._loop)

    async def until(self, when_ns: int) -> None:
        """Return at ``when_ns`` on ``time.perf_counter_ns`` time (or a little before)."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._clock.call_at(when_ns, functools.partial(_release, waiter))
        await waiter

    def close(self) -> None:
        self._clock.close()


class Pacer:
    """The starts of one task's operations in one phase, on ``clock``.

    ``interval_ns`` 0 is a closed loop (``think_s`` between operations); otherwise the
    operations are due every ``interval_ns`` from ``first_ns``, and ``wake(when_ns)`` waits
    for one (it may return a little early). No operation starts at or after ``until_ns``.
    """

    __slots__ = (
        "_clock",
        "_due",
        "_interval",
        "_ready",
        "_think",
        "_until",
        "_wake",
        "start",
    )

    def __init__(self, clock: Clock, until_ns: int | None, *, interval_ns: int = 0,
                 first_ns: int = 0, think_s: float = 0.0, wake: Wake | None = None) -> None:
        if interval_ns < 0 or think_s < 0:
            raise ValueError(f"interval_ns and think_s must be >= 0, not {interval_ns} "
                             f"and {think_s}")
        if interval_ns and wake is None:
            raise ValueError("an open-loop pacer (interval_ns > 0) needs a wake function")
        self._clock = clock
        self._until = _NEVER if until_ns is None else until_ns
        self._interval = interval_ns
        self._due = first_ns
        self._think = think_s
        self._wake = wake
        # Open loop: the wait for the due operation is over. Thinking: the think time before
        # the next operation is over (nothing to wait for before the first).
        self._ready = bool(think_s)
        self.start: Callable[[], int] = (
            self._open if interval_ns else self._thinking if think_s else self._closed)

    @property
    def open_loop(self) -> bool:
        return bool(self._interval)

    def _closed(self) -> int:
        now = self._clock()
        return STOP if now >= self._until else now

    def _thinking(self) -> int:
        if not self._ready:
            return WAIT
        now = self._clock()
        if now >= self._until:
            return STOP
        self._ready = False
        return now

    def _open(self) -> int:
        due = self._due
        if due >= self._until:
            return STOP
        now = self._clock()
        if now < due and not self._ready:
            return WAIT
        self._ready = False
        self._due = due + self._interval
        # Woken a few microseconds early, the operation counts from its actual start: a start
        # recorded later than it was could make a read look as if it began after a write it
        # overlapped.
        return now if now < due else due

    async def wait(self) -> None:
        """Wait until :meth:`start` may start the next operation (after :data:`WAIT`)."""
        if self._interval:
            assert self._wake is not None
            await self._wake(self._due)
        else:
            await asyncio.sleep(self._think)
        self._ready = True
