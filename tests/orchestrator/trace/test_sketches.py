"""The bounded counters: distinct counts and histograms."""

from __future__ import annotations

import pytest

from orchestrator.trace.sketches import HLL_STANDARD_ERROR, DistinctCounter, Histogram, HyperLogLog


class TestDistinct:
    def test_exact_up_to_the_limit(self) -> None:
        """At the limit the count is still exact."""
        counter = DistinctCounter(100)
        for i in range(300):
            counter.add(str(i % 100))
        assert counter.is_exact and counter.count() == 100

    def test_estimate_past_the_limit(self) -> None:
        """Past the limit, the set is dropped and the estimate is close."""
        counter = DistinctCounter(100)
        for i in range(20_000):
            counter.add(f"k{i}")
            counter.add(f"k{i // 2}")
        assert not counter.is_exact
        assert counter.count() == pytest.approx(20_000, rel=5 * HLL_STANDARD_ERROR)

    @pytest.mark.parametrize("n", [10, 1_000, 200_000])
    def test_hyperloglog_small_and_large(self, n: int) -> None:
        """Linear counting for few items, the raw estimate for many: both close."""
        sketch = HyperLogLog()
        for i in range(n):
            sketch.add(f"item:{i}")
        assert sketch.estimate() == pytest.approx(n, rel=max(5 * HLL_STANDARD_ERROR, 0.02))


class TestHistogram:
    def test_nearest_rank(self) -> None:
        """Percentiles by nearest rank over small values are exact."""
        h = Histogram()
        for v in range(1, 101):
            h.add(v)
        assert [h.percentile(q) for q in (1, 50, 90, 99, 100)] == [1, 50, 90, 99, 100]
        assert (h.min, h.max, h.mean) == (1, 100, 50.5)

    def test_large_values_within_a_tenth_of_a_percent(self) -> None:
        """A large value is reported within 0.1 %, and never beyond the extremes."""
        h = Histogram()
        for v in (1_000_003, 1_000_003, 5_000_000_017):
            h.add(v)
        assert h.percentile(50) == pytest.approx(1_000_003, rel=1e-3)
        assert h.percentile(50) <= 1_000_003  # type: ignore[operator]
        assert h.percentile(100) == pytest.approx(5_000_000_017, rel=1e-3)
        assert h.percentile(0.01) == 1_000_003  # clamped to the minimum

    def test_empty(self) -> None:
        """No values: no percentiles."""
        assert Histogram().percentile(50) is None and Histogram().mean is None
