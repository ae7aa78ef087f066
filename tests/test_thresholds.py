"""Tests for orchestrator.thresholds: parsing, validation and evaluation per backend."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest
from test_analysis import add_invalidation, add_op, create_schema

from orchestrator.analysis import install_views
from orchestrator.thresholds import (
    ThresholdError,
    ThresholdResult,
    all_passed,
    evaluate,
    parse_threshold,
    store_results,
    validate_thresholds,
)

# A stand-in for the orchestrator's ``summary`` view, same columns, enough for the tests.
SUMMARY = """
CREATE OR REPLACE VIEW summary AS
SELECT run_id, backend, op, count(*) AS ops, count(error) AS errors,
       count(*) / ((max(start_ns + latency_ns) - min(start_ns)) / 1e9) AS ops_per_s,
       avg(latency_ns) / 1e6 AS mean_ms,
       quantile_disc(latency_ns, 0.5) / 1e6 AS p50_ms,
       quantile_disc(latency_ns, 0.95) / 1e6 AS p95_ms,
       quantile_disc(latency_ns, 0.99) / 1e6 AS p99_ms,
       quantile_disc(latency_ns, 0.999) / 1e6 AS p999_ms,
       CASE WHEN op = 'get' THEN avg(hit::INTEGER) END AS hit_rate
FROM ops GROUP BY run_id, backend, op
"""


def install_summary(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(SUMMARY)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    create_schema(c)
    install_views(c)
    install_summary(c)
    # valkey: gets of 1 and 3 ms, one hit of two; pg: gets of 1 ms, one stale read.
    add_op(c, "set", "k", 0, 2, version="1", backend="valkey")
    add_op(c, "get", "k", 10, 1, version="1", backend="valkey")
    add_op(c, "get", "j", 20, 3, backend="valkey")
    add_op(c, "set", "k", 0, 2, version="1", backend="pg", process=0, server_version=1)
    add_op(c, "set", "k", 5, 1, version="2", backend="pg", process=0, server_version=2)
    add_op(c, "get", "k", 10, 1, version="1", backend="pg", process=1, local=True)
    add_op(c, "get", "k", 12, 1, version="2", backend="pg", process=1)
    add_invalidation(c, 1, "k", 1, 2.5)
    add_invalidation(c, 1, "k", 2, 6.5)
    yield c
    c.close()


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
        ("expr", "fragment"),
        [
            ("get.p99_ms", "cannot be parsed"),
            ("get.p99_ms < five", "cannot be parsed"),
            ("get.p99_ms =< 5", "cannot be parsed"),
            ("get.p98_ms < 5", "unknown metric 'p98_ms' for 'get'"),
            ("p99_ms < 5", "latency metrics need an op, e.g. 'get.p99_ms'"),
            ("put.p99_ms < 5", "unknown metric scope 'put'"),
            ("invalidation_lag.p98_ms < 5", "unknown invalidation_lag metric 'p98_ms'"),
        ],
    )
    def test_invalid(self, expr: str, fragment: str) -> None:
        """A bad expression raises ThresholdError naming it and what was expected."""
        with pytest.raises(ThresholdError) as info:
            parse_threshold(expr)
        assert repr(expr) in str(info.value)
        assert fragment in str(info.value)


class TestValidate:
    """validate_thresholds reports every problem at once with its YAML path."""

    def test_all_problems(self) -> None:
        """Wrong shapes, unknown backends and bad expressions are each reported."""
        errors = validate_thresholds(
            {"*": ["get.p99_ms < 5", "nope"], "pg": "stale_rate == 0", "ghost": []},
            backends=["pg", "valkey"],
        )
        assert len(errors) == 3
        assert errors[0].startswith("thresholds.*[1]: threshold 'nope' cannot be parsed")
        assert errors[1].startswith("thresholds.pg: expected a list of expressions")
        assert errors[2].startswith("thresholds.ghost: backend 'ghost' is not in this workload")

    def test_not_a_mapping(self) -> None:
        """A list instead of a mapping is named."""
        assert validate_thresholds(["get.p99_ms < 5"]) == [
            "thresholds: expected a mapping of backend name (or '*') to a list of "
            "expressions, found list"
        ]

    def test_valid(self) -> None:
        """A good mapping has no problems."""
        assert validate_thresholds({"*": ["get.p99_ms < 5"], "pg": ["stale_rate == 0"]}) == []


class TestEvaluate:
    """evaluate measures each threshold per backend against the views."""

    def test_star_and_named(self, con: duckdb.DuckDBPyConnection) -> None:
        """'*' applies to each backend; named rules to theirs; values come from the views."""
        results = evaluate(con, "r1", {
            "*": ["get.p99_ms < 2", "get.hit_rate >= 0.9", "invalidation_lag.p99_ms < 5"],
            "pg": ["stale_rate == 0"],
        })
        got = {(r.backend, r.expression): (r.measured, r.passed) for r in results}
        assert got == {
            ("pg", "get.p99_ms < 2"): (1.0, True),
            ("pg", "get.hit_rate >= 0.9"): (1.0, True),
            ("pg", "invalidation_lag.p99_ms < 5"): (0.5, True),
            ("pg", "stale_rate == 0"): (0.5, False),
            ("valkey", "get.p99_ms < 2"): (3.0, False),
            ("valkey", "get.hit_rate >= 0.9"): (0.5, False),
            ("valkey", "invalidation_lag.p99_ms < 5"): (None, None),
        }
        assert not all_passed(results)

    def test_missing_invalidations(self, con: duckdb.DuckDBPyConnection) -> None:
        """A worker that received no invalidations makes 'missing == 0' fail."""
        add_op(con, "get", "k", 30, 1, backend="pg", process=2)
        results = evaluate(con, "r1", {"pg": ["invalidation_lag.missing == 0",
                                              "invalidation_lag.max_ms <= 0.5"]})
        assert [(r.measured, r.passed) for r in results] == [(0.5, True), (2.0, False)]

    def test_named_but_unmeasured_fails(self, con: duckdb.DuckDBPyConnection) -> None:
        """A metric missing for an explicitly named backend is a failure, with a note."""
        results = evaluate(con, "r1", {"valkey": ["delete.p99_ms < 5"]})
        assert results == [
            ThresholdResult("valkey", "delete.p99_ms < 5", None, False, "not measured")]
        assert not all_passed(results)

    def test_backend_that_did_not_run(self, con: duckdb.DuckDBPyConnection) -> None:
        """Rules for a backend absent from the run are reported as not applicable."""
        results = evaluate(con, "r1", {"ghost": ["get.p99_ms < 5"]})
        assert results == [
            ThresholdResult("ghost", "get.p99_ms < 5", None, None, "backend did not run")]
        assert all_passed(results)

    def test_store_results_replaces_rows(self, con: duckdb.DuckDBPyConnection) -> None:
        """Stored results for a run replace earlier ones (idempotent)."""
        results = evaluate(con, "r1", {"*": ["get.p99_ms < 2"]})
        store_results(con, "r1", results)
        store_results(con, "r1", results)
        rows = con.execute(
            "SELECT backend, measured, passed FROM threshold_results ORDER BY backend"
        ).fetchall()
        assert rows == [("pg", 1.0, True), ("valkey", 3.0, False)]
