"""orchestrator.results.suites: a suite's records, which run stands for each point, and
which points its report shows, on hand-made databases."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import duckdb
import pytest
from support.repo import ROOT
from support.results_history import add_op, create_schema

from orchestrator.errors import UsageError
from orchestrator.results import suites

AXES: list[dict[str, Any]] = [
    {"name": "latency_ms", "values": [0, 1.5], "base": 1.5},
    {"name": "instances", "values": [2, 8], "base": 2}]


def _record(con: duckdb.DuckDBPyConnection, axes: list[dict[str, Any]] = AXES,
            sweep: str = "axes") -> None:
    suites.record_suite(con, "s", name="s", text="name: s", target="get.p99_ms < 2",
                        axes=axes, sweep=sweep, compare=[("pg", "vk")])


def _run(con: duckdb.DuckDBPyConnection, run_id: str, status: str, minute: int,
         values: dict[str, float], fingerprint: str = "f") -> None:
    con.execute("INSERT INTO runs (run_id, status, started_at) VALUES (?, ?, ?)",
                [run_id, status, dt.datetime(2026, 1, 1, 0, minute)])
    key = " ".join(f"{k}={v:g}" for k, v in values.items())
    suites.record_point(con, "s", run_id, point=key, fingerprint=fingerprint,
                        values=values, on_axes=[])
    add_op(con, "get", "k", 0.0, 1.0, version="1:0:1", run_id=run_id, backend="pg",
           repetition=1)


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    create_schema(con)
    _record(con)
    return con


class TestMeasured:
    """Which points a suite has measured, so that running it again skips them."""

    def test_only_completed_runs_count(self, con: duckdb.DuckDBPyConnection) -> None:
        """A point whose run failed or was interrupted is not measured; a completed one, or
        one completed with errors, is (with its workload's fingerprint)."""
        _run(con, "a", "failed", 0, {"latency_ms": 1.5, "instances": 2}, "f1")
        _run(con, "b", "interrupted", 1, {"latency_ms": 0, "instances": 2}, "f2")
        _run(con, "c", "completed_with_errors", 2, {"latency_ms": 1.5, "instances": 8}, "f3")
        assert suites.measured_points(con, "s") == {"latency_ms=1.5 instances=8": {"f3"}}

    def test_latest_completed_run_stands_for_the_point(
            self, con: duckdb.DuckDBPyConnection) -> None:
        """Of a point's runs, the latest completed one stands for it, even if a later run
        of it failed."""
        values = {"latency_ms": 1.5, "instances": 2}
        _run(con, "old", "completed", 0, values)
        _run(con, "new", "completed", 1, values)
        _run(con, "broken", "failed", 2, values)
        (point,) = suites.read_suite(con, "s").points
        assert (point.run_id, point.status) == ("new", "completed")


class TestReadSuite:
    """The report shows the suite as its file now is."""

    def test_points_and_their_axes(self, con: duckdb.DuckDBPyConnection) -> None:
        """Every point of the sweep, ordered by its values; the base lies on every axis."""
        _run(con, "r1", "completed", 0, {"latency_ms": 1.5, "instances": 8})
        _run(con, "r2", "completed", 1, {"latency_ms": 0, "instances": 2})
        _run(con, "r3", "completed", 2, {"latency_ms": 1.5, "instances": 2})
        data = suites.read_suite(con, "s")
        assert [(p.run_id, p.on_axes) for p in data.points] == [
            ("r2", ("latency_ms",)), ("r3", ("latency_ms", "instances")),
            ("r1", ("instances",))]
        assert data.target == "get.p99_ms < 2"
        assert data.compare == (("pg", "vk"),)

    def test_points_of_an_earlier_version_are_left_out(
            self, con: duckdb.DuckDBPyConnection) -> None:
        """A value removed from an axis, or a point off a base that has moved, is no point of
        the suite any more; the axes a point lies on follow the new base."""
        _run(con, "r1", "completed", 0, {"latency_ms": 1.5, "instances": 8})
        _run(con, "r2", "completed", 1, {"latency_ms": 0, "instances": 2})
        _run(con, "r3", "completed", 2, {"latency_ms": 1.5, "instances": 2})
        _record(con, axes=[{"name": "latency_ms", "values": [0, 1.5], "base": 0},
                           {"name": "instances", "values": [2, 4], "base": 2}])
        data = suites.read_suite(con, "s")
        assert [(p.run_id, p.on_axes) for p in data.points] == [
            ("r2", ("latency_ms", "instances")), ("r3", ("latency_ms",))]
        assert {row["run_id"] for row in data.metrics} == {"r2", "r3"}

    def test_grid_keeps_every_combination(self, con: duckdb.DuckDBPyConnection) -> None:
        """In a grid every combination is a point; those off the base lie on no axis."""
        _record(con, sweep="grid")
        _run(con, "r1", "completed", 0, {"latency_ms": 0, "instances": 8})
        (point,) = suites.read_suite(con, "s").points
        assert point.on_axes == ()


class TestResolve:
    """Which suite `report --suite` means."""

    def test_latest_and_unknown(self, con: duckdb.DuckDBPyConnection) -> None:
        """'latest' is the suite recorded last; an unknown id lists the known ones."""
        suites.record_suite(con, "t", name="t", text="", target="", axes=AXES, sweep="axes",
                            compare=[])
        assert suites.resolve_suite_id(con, "latest") == "t"
        assert suites.resolve_suite_id(con, "s") == "s"
        with pytest.raises(UsageError, match=r"no suite 'u' .*suites: t, s"):
            suites.resolve_suite_id(con, "u")

    def test_no_suite_yet(self) -> None:
        """A database without suites says how to run one."""
        con = duckdb.connect()
        create_schema(con)
        with pytest.raises(UsageError, match="holds no suite yet"):
            suites.resolve_suite_id(con, "latest")


class TestDocumented:
    """results/README.md lists the suite tables' and views' columns as they are."""

    @pytest.mark.parametrize("name", ["suites", "suite_runs", "suite_points",
                                      "suite_pass_metrics", "suite_metrics"])
    def test_columns(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        """The README's row for the table or view names its columns, in order."""
        readme = (ROOT / "results" / "README.md").read_text()
        row = re.search(rf"^\| `{name}` \| [^|]+ \| ([^|]+) \|$", readme, re.M)
        assert row is not None, name
        columns = [d[0] for d in con.execute(f"SELECT * FROM {name} LIMIT 0").description]
        assert row.group(1).strip().split(", ") == columns
