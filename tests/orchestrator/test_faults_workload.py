"""`workloads/faults.yaml` end to end: the orchestrator drives Toxiproxy (here the test
stand-in) through the fault schedule, and the caches survive every fault."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from support.repo import ROOT
from support.toxiproxy_standin import ToxiproxyStandIn

from orchestrator.services import Services

SMALL = ["--set", "processes=1", "--set", "writers=2", "--set", "readers=2"]
BACKENDS = ("postgres-cache", "valkey", "valkey-tracking")


@pytest.fixture(scope="module")
def faults_run(services: Services, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[subprocess.CompletedProcess[str], Path]]:
    """workloads/faults.yaml as shipped (same faults, same offsets), with fewer tasks; run
    once for the module's tests."""
    tmp_path = tmp_path_factory.mktemp("faults")
    db = tmp_path / "faults.duckdb"
    env = dict(os.environ, POSTGRES_DSN=services.postgres_dsn, VALKEY_URL=services.valkey_url,
               PGCACHE_SERVICES_DIR=str(tmp_path / "svc"))
    with ToxiproxyStandIn() as toxiproxy:
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "run", "workloads/faults.yaml",
             "--set", f"network.toxiproxy_url={toxiproxy.url}", *SMALL, "--results", str(db)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
        yield result, db


class TestFaultsWorkload:
    """The fault schedule runs against every backend, and its impact is measured."""

    def test_faults_land_in_duckdb_and_caches_recover(
            self, faults_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
        """Each fault starts and ends as an event; errors fall in the faults; work resumes."""
        result, db = faults_run
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        # The faults cause errors, which the workload allows (allowed_error_rate) and says.
        assert "errors: valkey: " in result.stderr
        assert "within allowed_error_rate 0.3" in result.stderr
        with duckdb.connect(str(db), read_only=True) as con:
            (status, network), = con.execute("SELECT status, network FROM runs").fetchall()
            assert status == "completed"
            assert '"toxiproxy"' in network
            windows = con.execute("""
                SELECT s.backend, s.data->>'label' AS label, s.ts_ns AS start_ns,
                       e.ts_ns AS end_ns
                FROM events s JOIN events e
                  ON e.event = 'fault_end' AND s.backend = e.backend
                 AND s.data->>'fault' = e.data->>'fault'
                WHERE s.event = 'fault_start' ORDER BY s.backend, start_ns""").fetchall()
            labels = {(b, label) for b, label, _, _ in windows}
            assert labels == {(b, label) for b in BACKENDS
                              for label in ("listener reset", "postgres blackhole",
                                            "valkey down")}
            assert not con.execute(
                "SELECT count(*) FROM events WHERE event IN ('worker_failed', 'run_failed')"
            ).fetchone()[0]

            def errors_in(backend: str, label: str) -> int:
                (start, end), = [(s, e) for b, lab, s, e in windows
                                 if b == backend and lab == label]
                # An operation hit by the fault may only complete (with its error) a little
                # after the fault ended.
                return int(con.execute(
                    "SELECT count(*) FROM ops WHERE backend = ? AND error IS NOT NULL "
                    "AND start_ns + latency_ns BETWEEN ? AND ?",
                    [backend, start, end + 3_000_000_000]).fetchone()[0])

            assert errors_in("postgres-cache", "postgres blackhole") > 0
            assert errors_in("valkey", "valkey down") > 0
            assert errors_in("valkey-tracking", "valkey down") > 0
            # Recovery: the last second of each pass is error-free work.
            for backend in BACKENDS:
                ok, bad = con.execute(
                    "WITH last AS (SELECT max(start_ns) AS t FROM ops WHERE backend = ?) "
                    "SELECT count(*) FILTER (WHERE error IS NULL), count(error) FROM ops, last "
                    "WHERE backend = ? AND start_ns > last.t - 1_000_000_000",
                    [backend, backend]).fetchone()
                assert ok > 0 and bad == 0, (backend, ok, bad)
            # The listener reset flushed postgres-cache's local copies at least once, and
            # Valkey going down flushed valkey-tracking's.
            for backend in ("postgres-cache", "valkey-tracking"):
                assert con.execute(
                    "SELECT count(*) FROM events WHERE backend = ? AND event = 'local_flush'",
                    [backend]).fetchone()[0] >= 1

    def test_fault_impact(self, faults_run: tuple[subprocess.CompletedProcess[str], Path]
                          ) -> None:
        """fault_impact has a row per fault and backend; the faults that hit a backend show
        errors, and it recovered from each of them before the pass ended."""
        _, db = faults_run
        with duckdb.connect(str(db), read_only=True) as con:
            rows = {(r[0], r[1]): r[2:] for r in con.execute(
                "SELECT backend, label, errors_during + errors_after, recovery_ms, "
                "baseline_p99_ms FROM fault_impact").fetchall()}
        assert set(rows) == {(b, label) for b in BACKENDS
                             for label in ("listener reset", "postgres blackhole",
                                           "valkey down")}
        for backend, label in (("postgres-cache", "postgres blackhole"),
                               ("valkey", "valkey down"), ("valkey-tracking", "valkey down")):
            errors, recovery, baseline = rows[(backend, label)]
            assert errors > 0 and baseline > 0, (backend, label, rows[(backend, label)])
            assert recovery is not None and 0 <= recovery < 3000, (backend, label, recovery)
        # A fault on another server's route costs a backend nothing.
        assert rows[("valkey", "postgres blackhole")][0] == 0
        assert rows[("postgres-cache", "valkey down")][0] == 0
