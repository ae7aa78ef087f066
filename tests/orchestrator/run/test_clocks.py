"""orchestrator.run.clocks: NTP-style offsets, the lowest round trip kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from orchestrator.run.clocks import ClockServer, Exchange, estimate, measure, measure_direct


class FakeClock:
    """A parent clock that advances by a fixed step per reading."""

    def __init__(self, steps: Iterator[int]) -> None:
        self.now = 0
        self.steps = steps

    def __call__(self) -> int:
        self.now += next(self.steps)
        return self.now


class TestEstimate:
    """The exchange with the lowest round trip wins; the bound is half of it."""

    def test_lowest_round_trip(self) -> None:
        """Of three exchanges the 100 ns one gives the offset, within 50 ns."""
        exchanges = [Exchange(0, 500, 1000), Exchange(2000, 1940, 2100),
                     Exchange(3000, 3300, 3400)]
        offset = estimate(exchanges, "start")
        assert (offset.offset_ns, offset.uncertainty_ns, offset.round_trip_ns) == (110, 50, 100)
        assert (offset.worker_ns, offset.round_trips, offset.stage) == (1940, 3, "start")

    def test_no_exchange(self) -> None:
        """No exchange, no estimate."""
        with pytest.raises(ValueError, match="no clock exchange"):
            estimate([], "end")

    def test_true_offset_within_the_bound(self) -> None:
        """Wherever in the round trip the worker read its clock, the truth is within +/-
        the uncertainty of the estimate."""
        true_offset = -7_000
        for delay_out in range(0, 1001, 100):
            worker = 5_000 + delay_out - true_offset  # read at parent time 5000 + delay_out
            offset = estimate([Exchange(5_000, worker, 6_000)], "start")
            assert abs(offset.offset_ns - true_offset) <= offset.uncertainty_ns


class TestMeasure:
    """measure() asks the worker's clock once per round trip."""

    def test_round_trips(self) -> None:
        """Eight asks, each answered 1 s ahead of the parent: the offset is -1 s."""
        clock = FakeClock(iter([10, 30] * 8))
        asked = []

        async def worker_clock() -> int:
            asked.append(1)
            return clock.now + 15 + 1_000_000_000

        offset = asyncio.run(measure(worker_clock, "end", 8, clock))
        assert len(asked) == 8 and offset.round_trips == 8
        assert offset.offset_ns == -1_000_000_000 and offset.uncertainty_ns == 15


class TestClockServer:
    """The direct path: a TCP clock server in the worker, exchanges from the parent."""

    def test_direct_measurement(self) -> None:
        """A server 2 s ahead is measured at -2 s, within a loopback round trip."""
        server = ClockServer("127.0.0.1", lambda: time.perf_counter_ns() + 2_000_000_000)
        try:
            offset = measure_direct(server.address, "start", round_trips=16)
            again = measure_direct(server.address, "end", round_trips=4)
        finally:
            server.close()
        for measured in (offset, again):
            assert abs(measured.offset_ns + 2_000_000_000) <= measured.uncertainty_ns
            assert 0 < measured.uncertainty_ns < 5_000_000
        assert offset.round_trips == 16 and again.stage == "end"

    def test_unreachable(self) -> None:
        """A server that is gone is an OSError (the caller falls back to Ray calls)."""
        server = ClockServer("127.0.0.1", time.perf_counter_ns)
        server.close()
        with pytest.raises(OSError):
            measure_direct(server.address, "start")
