"""Every view on a recorded history: the rows the views returned when their SQL lived in
Python strings (``orchestrator/results/schema.py`` before its ``.sql`` files), kept in
``recorded/``, against what the installed schema returns now.

``recorded/tables/`` holds the tables of a real results database, made by two small runs with
that code (``default.yaml`` and ``stampede.yaml`` shrunk by ``--set``, see
``recorded/README.md``); ``recorded/views/`` each view's rows. Regenerate both only on
purpose, when a view is meant to change: ``python tests/orchestrator/results/
test_recorded_history.py RESULTS.duckdb``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestrator.results import schema

RECORDED = Path(__file__).parent / "recorded"
# The tables a run fills (threshold_results is made when thresholds are judged).
TABLES = ("runs", "ops", "events", "clock_offsets", "server_cost", "suites", "suite_runs")


def _same(a: Any, b: Any) -> bool:
    """Equal, floats to 12 significant digits (a parallel sum may add in another order)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12,
                                                                 abs_tol=1e-12)
    return bool(a == b)


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    schema.install(c)
    for table in TABLES:
        c.execute(f"INSERT INTO {table} SELECT * FROM "
                  f"read_parquet('{RECORDED / 'tables' / table}.parquet')")
    return c


class TestRecordedHistory:
    def test_history_is_not_empty(self, con: duckdb.DuckDBPyConnection) -> None:
        """The recorded runs measured something on every backend they ran."""
        backends = con.execute("SELECT count(DISTINCT backend), count(*) FROM ops").fetchone()
        assert backends is not None and backends[0] >= 4 and backends[1] > 1000

    @pytest.mark.parametrize("view", schema.VIEW_NAMES)
    def test_view_returns_the_recorded_rows(self, con: duckdb.DuckDBPyConnection,
                                            view: str) -> None:
        """The view's rows (and column names) are the ones recorded before the SQL moved."""
        cur = con.execute(f"SELECT * FROM {view} ORDER BY ALL")
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
        expected = con.execute(f"SELECT * FROM read_parquet('{RECORDED / 'views' / view}"
                               ".parquet') ORDER BY ALL")
        assert columns == [d[0] for d in expected.description]
        want = expected.fetchall()
        assert len(rows) == len(want)
        for got, row in zip(rows, want, strict=True):
            assert all(_same(a, b) for a, b in zip(got, row, strict=True)), (got, row)

    def test_some_views_have_rows(self, con: duckdb.DuckDBPyConnection) -> None:
        """The history exercises the views it can: all but faults, clocks and suites."""
        empty = {v for v in schema.VIEW_NAMES
                 if con.execute(f"SELECT count(*) FROM {v}").fetchone() == (0,)}
        assert empty <= {"fault_impact", "clock_unjudged_reads", "clock_summary",
                         "suite_points", "suite_pass_metrics", "suite_metrics"}


def record(database: str) -> None:
    """Write ``recorded/``: the tables of ``database`` and every view's rows."""
    c = duckdb.connect(database, read_only=True)
    for folder in ("tables", "views"):
        (RECORDED / folder).mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        c.execute(f"COPY (SELECT * FROM {table} ORDER BY ALL) TO "
                  f"'{RECORDED / 'tables' / table}.parquet' (FORMAT parquet)")
    for view in schema.VIEW_NAMES:
        c.execute(f"COPY (SELECT * FROM {view} ORDER BY ALL) TO "
                  f"'{RECORDED / 'views' / view}.parquet' (FORMAT parquet)")


if __name__ == "__main__":
    record(sys.argv[1])
