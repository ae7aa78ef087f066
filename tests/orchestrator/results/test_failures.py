"""orchestrator.results.failures: a run's failed operations per backend, when, and the verdict."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest
from support.results_history import add_op, create_schema, parsed

from orchestrator.results.failures import error_report, judge


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    create_schema(c)
    # pg: 10 gets over 10 s, failing at 2.0, 2.5 and 3.0 s (one span) and at 8 s (another);
    # valkey: 4 clean gets; pg repetition 2: one failure at 1 s.
    for i in range(10):
        error = "CacheConnectionError: gone" if i in (2, 8) else None
        add_op(c, "get", "k", 1000 + i * 1000, 1, backend="pg", repetition=1, error=error)
    add_op(c, "get", "k", 3500, 1, backend="pg", repetition=1, error="TimeoutError: slow")
    add_op(c, "get", "k", 4000, 1, backend="pg", repetition=1, error="CacheConnectionError: gone")
    add_op(c, "get", "k", 0, 1, backend="pg", repetition=2)
    add_op(c, "get", "k", 1000, 1, backend="pg", repetition=2, error="CacheConnectionError: x")
    for i in range(4):
        add_op(c, "get", "k", i, 1, backend="valkey", repetition=1)
    yield c
    c.close()


class TestReport:
    """error_report counts each backend's failures and finds when they happened."""

    def test_counts_and_most_frequent(self, con: duckdb.DuckDBPyConnection) -> None:
        """Only backends with errors appear; the most frequent error text is named."""
        (pg,) = error_report(con, "r1")
        assert (pg.backend, pg.ops, pg.errors) == ("pg", 14, 5)
        assert pg.most_frequent == "CacheConnectionError: gone"
        assert pg.rate == pytest.approx(5 / 14)

    def test_spans(self, con: duckdb.DuckDBPyConnection) -> None:
        """Failures less than a second apart form one span, in seconds since the pass began."""
        (pg,) = error_report(con, "r1")
        assert [(s.repetition, s.start_s, s.end_s, s.errors) for s in pg.spans] == [
            (1, 2.0, 3.0, 3), (1, 8.0, 8.0, 1), (2, 1.0, 1.0, 1)]
        assert "rep 1 2.0-3.0 s (3), rep 1 8.0-8.0 s (1), rep 2 1.0-1.0 s (1)" in pg.describe()

    def test_clean_run(self) -> None:
        """A run without errors has an empty report."""
        c = duckdb.connect()
        create_schema(c)
        add_op(c, "get", "k", 0, 1)
        assert error_report(c, "r1") == []


class TestJudge:
    """judge allows errors within allowed_error_rate, or leaves them to thresholds on errors."""

    def test_none_allowed_by_default(self, con: duckdb.DuckDBPyConnection) -> None:
        """With allowed_error_rate 0 any error is not allowed, and the line says why."""
        (pg,) = judge(error_report(con, "r1"), 0.0, {})
        assert not pg.allowed
        assert pg.describe().startswith("pg: 5 of 14 operations failed (35.71%), at rep 1 2.0")
        assert pg.describe().endswith("the workload allows none (allowed_error_rate)")

    @pytest.mark.parametrize(("rate", "allowed"), [(0.35, False), (0.36, True), (1.0, True)])
    def test_rate(self, con: duckdb.DuckDBPyConnection, rate: float, allowed: bool) -> None:
        """Errors are allowed when their share is at most allowed_error_rate."""
        (pg,) = judge(error_report(con, "r1"), rate, {})
        assert pg.allowed is allowed

    @pytest.mark.parametrize("key", ["pg", "*"])
    def test_thresholds_on_errors_decide(self, con: duckdb.DuckDBPyConnection,
                                         key: str) -> None:
        """A threshold on errors for the backend (or '*') leaves the verdict to thresholds."""
        (pg,) = judge(error_report(con, "r1"), 0.0, parsed({key: ["get.errors < 100"]}))
        assert pg.allowed
        assert "thresholds on errors decide" in pg.reason
        (other,) = judge(error_report(con, "r1"), 0.0, parsed({"pg": ["get.p99_ms < 5"]}))
        assert not other.allowed
