"""`workloads/stampede.yaml` end to end, smaller: the three stampede backends against the
session's PostgreSQL and Valkey, every loader execution recorded, the stampede view per
backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from support.repo import ROOT

from orchestrator.services import Services

SMALL = ["--set", "processes=2", "--set", "readers=8", "--set", "warmup_s=0.5",
         "--set", "duration_s=2", "--set", "repeat=1", "--set", "think_time_ms.writes=200"]


@pytest.fixture(scope="module")
def stampede_db(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """workloads/stampede.yaml as shipped (origin query, deletes of the hot key), smaller."""
    tmp = tmp_path_factory.mktemp("stampede")
    db = tmp / "stampede.duckdb"
    env = dict(os.environ, POSTGRES_DSN=services.postgres_dsn, VALKEY_URL=services.valkey_url,
               PGCACHE_SERVICES_DIR=str(tmp / "svc"))
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "workloads/stampede.yaml", *SMALL,
         "--results", str(db)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return db


class TestStampedeWorkload:
    """Loader executions per miss event: one for pgcache and the lock recipe, many naively."""

    def test_loads_per_miss(self, stampede_db: Path) -> None:
        """pgcache's get_or_set and the SET NX PX lock run one loader per miss event; the
        naive recipe runs more; every miss is refilled and nobody failed."""
        with duckdb.connect(str(stampede_db), read_only=True) as con:
            rows = {r[0]: r[1:] for r in con.execute(
                "SELECT backend, miss_events, loads_per_miss, max_loads_per_miss, errors, "
                "wait_p50_ms FROM stampede").fetchall()}
            assert set(rows) == {"postgres-cache", "valkey", "valkey-lock"}
            for backend in ("postgres-cache", "valkey-lock"):
                events, _, most, errors, _ = rows[backend]
                assert events >= 4 and most == 1 and errors == 0, (backend, rows[backend])
            events, per_miss, _, errors, _ = rows["valkey"]
            assert events >= 4 and per_miss > 1.5 and errors == 0, rows["valkey"]
            # Readers that miss wait for the loader: its 20 ms on the origin, at least.
            assert all(row[4] >= 20 for row in rows.values()), rows
            unrefilled = con.execute(
                "SELECT count(*) FROM stampede_events WHERE loads > 0 AND refilled_ns IS NULL"
            ).fetchone()
            assert unrefilled == (0,)

    def test_every_loader_execution_is_recorded(self, stampede_db: Path) -> None:
        """Each value a reader got from a loader names a recorded load of the same pass (once
        the warm-up's values are gone: after the pass's second delete)."""
        with duckdb.connect(str(stampede_db), read_only=True) as con:
            orphans = con.execute("""
                WITH second AS (
                    SELECT backend, repetition,
                           list_sort(list(start_ns + latency_ns))[2] AS after_ns
                    FROM ops WHERE op = 'delete' GROUP BY ALL)
                SELECT count(*) FROM ops AS c JOIN second USING (backend, repetition)
                WHERE c.op = 'get_or_set' AND c.start_ns > second.after_ns
                  AND NOT EXISTS (SELECT 1 FROM ops AS l
                                  WHERE l.op = 'load' AND l.backend = c.backend
                                    AND l.repetition = c.repetition AND l.version = c.version)
            """).fetchone()
            assert orphans == (0,)
            loads = con.execute("SELECT count(*) FROM ops WHERE op = 'load'").fetchone()
            assert loads is not None and loads[0] > 0
