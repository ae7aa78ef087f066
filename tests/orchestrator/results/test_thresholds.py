"""orchestrator.results.thresholds: each parsed threshold measured and judged per backend."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest
from support.results_history import add_invalidation, add_op, create_schema, parsed

from orchestrator.results.thresholds import (
    ThresholdResult,
    all_passed,
    evaluate,
    store_results,
)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    create_schema(c)
    # valkey: gets of 1 and 3 ms (p99 2.98 ms, interpolated), one hit of two; pg: gets of
    # 1 ms, one stale read.
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


class TestEvaluate:
    """evaluate measures each threshold per backend against the views."""

    def test_star_and_named(self, con: duckdb.DuckDBPyConnection) -> None:
        """'*' applies to each backend; named rules to theirs; values come from the views."""
        results = evaluate(con, "r1", parsed({
            "*": ["get.p99_ms < 2", "get.hit_rate >= 0.9", "invalidation_lag.p99_ms < 5"],
            "pg": ["stale_rate == 0"],
        }))
        got = {(r.backend, r.expression): (r.measured, r.passed) for r in results}
        assert got == {
            ("pg", "get.p99_ms < 2"): (1.0, True),
            ("pg", "get.hit_rate >= 0.9"): (1.0, True),
            ("pg", "invalidation_lag.p99_ms < 5"): (0.5, True),
            ("pg", "stale_rate == 0"): (0.5, False),
            ("valkey", "get.p99_ms < 2"): (2.98, False),
            ("valkey", "get.hit_rate >= 0.9"): (0.5, False),
            ("valkey", "invalidation_lag.p99_ms < 5"): (None, None),
        }
        assert not all_passed(results)

    def test_missing_invalidations(self, con: duckdb.DuckDBPyConnection) -> None:
        """A worker that received no invalidations makes 'missing == 0' fail."""
        add_op(con, "get", "k", 30, 1, backend="pg", process=2)
        results = evaluate(con, "r1", parsed({"pg": ["invalidation_lag.missing == 0",
                                              "invalidation_lag.max_ms <= 0.5"]}))
        assert [(r.measured, r.passed) for r in results] == [(0.5, True), (2.0, False)]

    def test_named_but_unmeasured_fails(self, con: duckdb.DuckDBPyConnection) -> None:
        """A metric missing for an explicitly named backend is a failure, with a note."""
        results = evaluate(con, "r1", parsed({"valkey": ["delete.p99_ms < 5"]}))
        assert results == [
            ThresholdResult("valkey", "delete.p99_ms < 5", None, False, "not measured")]
        assert not all_passed(results)

    def test_backend_that_did_not_run(self, con: duckdb.DuckDBPyConnection) -> None:
        """Rules for a backend absent from the run are reported as not applicable."""
        results = evaluate(con, "r1", parsed({"ghost": ["get.p99_ms < 5"]}))
        assert results == [
            ThresholdResult("ghost", "get.p99_ms < 5", None, None, "backend did not run")]
        assert all_passed(results)

    def test_store_results_replaces_rows(self, con: duckdb.DuckDBPyConnection) -> None:
        """Stored results for a run replace earlier ones (idempotent)."""
        results = evaluate(con, "r1", parsed({"*": ["get.p99_ms < 2"]}))
        store_results(con, "r1", results)
        store_results(con, "r1", results)
        rows = con.execute(
            "SELECT backend, measured, passed FROM threshold_results ORDER BY backend"
        ).fetchall()
        assert rows == [("pg", 1.0, True), ("valkey", 2.98, False)]
