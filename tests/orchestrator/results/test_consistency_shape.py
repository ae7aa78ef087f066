"""The expected shape of the answer on a small real run of every cache backend."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from support.repo import ROOT
from support.results_history import parsed

from orchestrator.reports.html import render_html
from orchestrator.results.thresholds import all_passed, evaluate
from orchestrator.services import Services

BACKENDS = ("postgres-cache", "postgres-no-local-cache", "postgres-no-notify", "valkey",
            "valkey-client-cache")


@pytest.fixture(scope="module")
def run(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        duckdb.DuckDBPyConnection]:
    results = tmp_path_factory.mktemp("shape") / "results.duckdb"
    env = {**os.environ, "POSTGRES_DSN": services.postgres_dsn,
           "VALKEY_URL": services.valkey_url}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "workloads/default.yaml",
         "--backends", *BACKENDS, "--processes", "2", "--write-iterations", "100",
         "--read-iterations", "200", "--results", str(results)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    con = duckdb.connect(str(results))
    yield con
    con.close()


def consistency(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    cur = con.execute("SELECT * FROM consistency")
    names = [d[0] for d in cur.description]
    return {row[1]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


class TestExpectedShape:
    """Stale reads appear exactly where local copies can lag, and only within the lag."""

    def test_no_local_copies_no_stale_reads(self, run: duckdb.DuckDBPyConnection) -> None:
        """valkey and postgres-no-local-cache never return a superseded value."""
        c = consistency(run)
        assert c["valkey"]["stale_reads"] == 0
        assert c["postgres-no-local-cache"]["stale_reads"] == 0
        assert c["valkey"]["reads"] == c["postgres-no-local-cache"]["reads"] == 32 * 200

    def test_postgres_cache_stale_only_within_invalidation_lag(
        self, run: duckdb.DuckDBPyConnection
    ) -> None:
        """postgres-cache: no stale read after its instance received the invalidation."""
        c = consistency(run)["postgres-cache"]
        assert c["local_reads"] > 0
        assert c["stale_beyond_invalidation"] == 0
        lag = run.execute("SELECT max_ms, count FROM invalidation_lag_summary "
                          "WHERE backend = 'postgres-cache'").fetchone()
        assert lag is not None and lag[1] > 0
        if c["stale_reads"]:
            # Every stale read names an invalidation that had not yet arrived.
            unexplained = run.execute(
                "SELECT count(*) FROM stale_reads WHERE backend = 'postgres-cache' "
                "AND beyond_invalidation IS DISTINCT FROM false "
                "AND superseding_op = 'set'").fetchone()
            assert unexplained == (0,)

    def test_no_notify_is_stale(self, run: duckdb.DuckDBPyConnection) -> None:
        """postgres-no-notify serves superseded values, bounded by its local TTL (60 s)."""
        c = consistency(run)["postgres-no-notify"]
        assert c["stale_reads"] > 0
        assert c["max_staleness_ms"] < 60_000

    def test_valkey_client_cache_is_served_locally(
        self, run: duckdb.DuckDBPyConnection
    ) -> None:
        """valkey-client-cache answers reads locally; stale reads are rare (push not yet read)."""
        c = consistency(run)["valkey-client-cache"]
        assert c["local_reads"] > 0
        assert c["stale_rate"] < 0.05

    def test_thresholds_and_report(self, run: duckdb.DuckDBPyConnection) -> None:
        """The consistency thresholds the README shows hold, and the HTML report renders."""
        run_id = run.execute("SELECT run_id FROM runs").fetchone()
        assert run_id is not None
        results = evaluate(run, run_id[0], parsed({
            "postgres-cache": ["stale_beyond_invalidation == 0"],
            "valkey": ["stale_rate == 0"],
            "postgres-no-local-cache": ["stale_rate == 0"],
        }))
        assert all_passed(results), results
        page = render_html(run, run_id[0])
        for backend in BACKENDS:
            assert backend in page
