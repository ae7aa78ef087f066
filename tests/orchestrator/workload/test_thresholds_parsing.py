"""orchestrator.workload.thresholds: the one parser of threshold expressions."""

from __future__ import annotations

import pytest

from orchestrator.errors import ThresholdError
from orchestrator.workload.thresholds import parse_threshold


class TestParse:
    """parse_threshold accepts the documented forms and explains the rest."""

    @pytest.mark.parametrize(
        ("expr", "source", "op_filter", "column", "comparison", "limit"),
        [
            ("get.p99_ms < 5", "summary", "get", "p99_ms", "<", 5.0),
            ("set.mean_ms<=2", "summary", "set", "mean_ms", "<=", 2.0),
            ("stale_rate == 0", "consistency", None, "stale_rate", "==", 0.0),
            ("consistency.max_staleness_ms < 1e3", "consistency", None, "max_staleness_ms",
             "<", 1000.0),
            ("get.hit_rate >= 0.9", "summary", "get", "hit_rate", ">=", 0.9),
            ("invalidation_lag.p99_ms < 5", "invalidation_lag_summary", None, "p99_ms", "<",
             5.0),
            ("  delete.errors != -1  ", "summary", "delete", "errors", "!=", -1.0),
        ],
    )
    def test_valid(self, expr: str, source: str, op_filter: str | None, column: str,
                   comparison: str, limit: float) -> None:
        """Each documented form parses into its source, column, comparison and limit."""
        t = parse_threshold(expr)
        assert (t.source, t.op_filter, t.column, t.comparison, t.limit) == (
            source, op_filter, column, comparison, limit)

    @pytest.mark.parametrize(
        ("expr", "expected", "found"),
        [
            ("get.p99_ms", "a condition '[op.]metric", "'get.p99_ms'"),
            ("get.p99_ms < five", "a condition '[op.]metric", "'get.p99_ms < five'"),
            ("get.p99_ms =< 5", "a condition '[op.]metric", "'get.p99_ms =< 5'"),
            ("get.p98_ms < 5", "a metric of get (ops, errors", "'p98_ms'"),
            ("p99_ms < 5", "a consistency metric (", "'p99_ms' (latency metrics need an op, "
             "e.g. 'get.p99_ms')"),
            ("put.p99_ms < 5", "a metric scope get, set, delete", "'put'"),
            ("invalidation_lag.p98_ms < 5", "an invalidation_lag metric (", "'p98_ms'"),
        ],
    )
    def test_invalid(self, expr: str, expected: str, found: str) -> None:
        """A bad expression raises ThresholdError naming it, what was expected and found."""
        with pytest.raises(ThresholdError) as info:
            parse_threshold(expr)
        assert repr(expr) in str(info.value)
        assert info.value.expected.startswith(expected)
        assert info.value.found == found
        assert info.value.exit_code == 2

    def test_not_a_string(self) -> None:
        """A number where an expression belongs is named by its type."""
        with pytest.raises(ThresholdError) as info:
            parse_threshold(5)
        assert info.value.found == "int"
