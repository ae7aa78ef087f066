"""The summary views on hand-made histories: summary, summary_by_pass, repeat_summary."""

from __future__ import annotations

import duckdb
import pytest
from support.results_history import (
    add_op,
)


class TestRepeatSummary:
    """repeat_summary puts repeated passes side by side, with their spread."""

    def test_median_spread_and_cv(self, con: duckdb.DuckDBPyConnection) -> None:
        """Per-pass ops/s (ops over the pass's span) give the median, min, max and the
        coefficient of variation (sample standard deviation / mean)."""
        for rep, gap in ((1, 10), (2, 20), (3, 40)):  # 5 gets over 4 gaps: 4 x gap ms
            for i in range(5):
                add_op(con, "get", "k", i * gap, 0, version="v", repetition=rep,
                       local=i < 4)
        (passes, median, low, high, cv, local), = con.execute(
            "SELECT passes, ops_per_s_median, ops_per_s_min, ops_per_s_max, ops_per_s_cv, "
            "local_rate_median FROM repeat_summary").fetchall()
        rates = [5 / (4 * gap / 1000) for gap in (10, 20, 40)]
        mean = sum(rates) / 3
        sd = (sum((r - mean) ** 2 for r in rates) / 2) ** 0.5
        assert (passes, local) == (3, 0.8)
        assert (median, low, high) == pytest.approx((rates[1], rates[2], rates[0]))
        assert cv == pytest.approx(sd / mean)
