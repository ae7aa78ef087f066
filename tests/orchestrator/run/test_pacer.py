"""orchestrator.run.pacer: when a task's operations start, closed and open loop.

Most tests drive a :class:`Pacer` on a clock of their own (a counter the test moves, and a wake
function that moves it to the deadline): the schedule is then exact, whatever the machine's
load. One test runs the real :class:`Waker` against ``perf_counter_ns``.
"""

from __future__ import annotations

import time

import pytest

from orchestrator.run.pacer import STOP, WAIT, Pacer, Waker

MS = 1_000_000


class FakeTime:
    """A clock that moves only when told: ``advance`` (an operation took this long) or
    ``wake`` (the pacer's wait, which returns at the deadline, or ``early_ns`` before it)."""

    def __init__(self, now_ns: int = 1_000 * MS, early_ns: int = 0) -> None:
        self.now_ns = now_ns
        self.early_ns = early_ns
        self.wakes: list[int] = []

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, ns: int) -> None:
        self.now_ns += ns

    async def wake(self, when_ns: int) -> None:
        self.wakes.append(when_ns)
        self.now_ns = max(self.now_ns, when_ns - self.early_ns)


async def next_start(pacer: Pacer) -> int:
    """What a task does before each operation: start, or wait and start."""
    t0 = pacer.start()
    if t0 == WAIT:
        await pacer.wait()
        t0 = pacer.start()
    return t0


class TestClosedLoop:
    """Without a rate, each operation starts when the one before it ended."""

    def test_starts_now_until_the_end(self) -> None:
        """Each start is the clock's time; the first at or after the phase's end is STOP."""
        clock = FakeTime()
        end = clock.now_ns + 10 * MS
        pacer = Pacer(clock, end)
        starts = []
        while (t0 := pacer.start()) != STOP:
            starts.append(t0)
            clock.advance(3 * MS)  # the operation took 3 ms
        first = end - 10 * MS
        assert starts == [first, first + 3 * MS, first + 6 * MS, first + 9 * MS]
        assert not pacer.open_loop

    def test_no_end(self) -> None:
        """A phase without an end (a fixed count of operations) never stops the task."""
        clock = FakeTime()
        pacer = Pacer(clock, None)
        for _ in range(1000):
            assert pacer.start() == clock.now_ns
            clock.advance(MS)

    async def test_think_time(self) -> None:
        """With think time, the first operation starts at once and each later one only after
        the wait, which sleeps the think time."""
        clock = time.perf_counter_ns
        pacer = Pacer(clock, None, think_s=0.02)
        assert pacer.start() >= 0
        assert pacer.start() == WAIT  # not before the think time
        before = clock()
        await pacer.wait()
        t0 = pacer.start()
        assert t0 - before >= 20 * MS  # a loaded machine only makes it longer
        assert pacer.start() == WAIT

    async def test_think_time_ends_at_the_phase_end(self) -> None:
        """An operation whose think time runs past the phase's end is not started."""
        clock = FakeTime()
        pacer = Pacer(clock, clock.now_ns + MS, think_s=0.001)
        assert pacer.start() == clock.now_ns
        clock.advance(2 * MS)
        assert pacer.start() == WAIT
        await pacer.wait()
        assert pacer.start() == STOP


class TestOpenLoop:
    """At a rate, operations are due every interval; latency counts from when they were due."""

    async def test_on_schedule(self) -> None:
        """Operations shorter than the interval start exactly when due, after a wait."""
        clock = FakeTime()
        first = clock.now_ns + 5 * MS
        pacer = Pacer(clock, first + 50 * MS, interval_ns=10 * MS, first_ns=first,
                      wake=clock.wake)
        starts = []
        while (t0 := await next_start(pacer)) != STOP:
            starts.append(t0)
            clock.advance(2 * MS)
        assert starts == [first + k * 10 * MS for k in range(5)]
        assert clock.wakes == starts
        assert pacer.open_loop

    async def test_no_coordinated_omission(self) -> None:
        """Operations slower than the interval: the next ones are due already, start without
        waiting, and count from when they were due, not from when they could begin."""
        clock = FakeTime()
        first = clock.now_ns
        pacer = Pacer(clock, None, interval_ns=10 * MS, first_ns=first, wake=clock.wake)
        starts = []
        for _ in range(4):
            starts.append(await next_start(pacer))
            clock.advance(25 * MS)  # each operation takes 2.5 intervals
        assert starts == [first, first + 10 * MS, first + 20 * MS, first + 30 * MS]
        assert clock.wakes == []  # it was behind all along: it never waited
        # Latencies from these starts grow as the backlog does: 25, 40, 55, 70 ms.
        ends = [first + 25 * MS * (k + 1) for k in range(4)]
        assert [e - s for e, s in zip(ends, starts, strict=True)] == [
            25 * MS, 40 * MS, 55 * MS, 70 * MS]

    async def test_woken_early_counts_from_the_actual_start(self) -> None:
        """A wake-up a little before the deadline starts the operation then, and records
        that start (never the later due time); the schedule itself does not drift."""
        clock = FakeTime(early_ns=30_000)
        first = clock.now_ns + MS
        pacer = Pacer(clock, None, interval_ns=MS, first_ns=first, wake=clock.wake)
        starts = [await next_start(pacer) for _ in range(3)]
        assert starts == [first - 30_000, first + MS - 30_000, first + 2 * MS - 30_000]
        assert clock.wakes == [first, first + MS, first + 2 * MS]

    def test_stops_at_the_phase_end(self) -> None:
        """No operation is due at or after the phase's end, however late the task is."""
        clock = FakeTime()
        first = clock.now_ns - 100 * MS  # far behind
        pacer = Pacer(clock, first + 3 * MS, interval_ns=MS, first_ns=first, wake=clock.wake)
        assert [pacer.start() for _ in range(4)] == [first, first + MS, first + 2 * MS, STOP]

    async def test_real_waker(self) -> None:
        """Against perf_counter_ns and the timerfd waker: every start is at most its due time
        (never later: latency counts from there) and at most the waker's largest head start
        (1 ms) before it; the schedule keeps its rate."""
        waker = Waker()
        try:
            clock = time.perf_counter_ns
            interval = 2 * MS
            first = clock() + 5 * MS
            pacer = Pacer(clock, None, interval_ns=interval, first_ns=first,
                          wake=waker.until)
            starts = [await next_start(pacer) for _ in range(20)]
        finally:
            waker.close()
        for k, t0 in enumerate(starts):
            due = first + k * interval
            assert due - MS - 100_000 <= t0 <= due, (k, t0 - due)
        assert clock() - first >= 19 * interval - MS


class TestArguments:
    """A pacer that cannot work is refused when made."""

    def test_open_loop_needs_a_wake_function(self) -> None:
        """An interval without a way to wait is an error, said so."""
        with pytest.raises(ValueError, match="needs a wake function"):
            Pacer(time.perf_counter_ns, None, interval_ns=MS)

    def test_negative(self) -> None:
        """A negative interval or think time is an error."""
        with pytest.raises(ValueError, match=">= 0"):
            Pacer(time.perf_counter_ns, None, think_s=-1.0)
