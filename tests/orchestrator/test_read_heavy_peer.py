"""`workloads/read-heavy.yaml`, shortened, on postgres-cache and valkey-tracking: the fair peer
keeps a local cache as well as pgcache does (what the README claims of it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from support.repo import ROOT

from orchestrator.services import Services

SHORT = ["--set", "processes=2", "--set", "warmup_s=1", "--set", "duration_s=1.5",
         "--set", "repeat=2", "--backends", "postgres-cache", "valkey-tracking"]


@pytest.fixture(scope="module")
def read_heavy_db(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """read-heavy.yaml as shipped (keys, skew, tasks, prefill), with two 1.5 s passes each."""
    tmp = tmp_path_factory.mktemp("read-heavy")
    db = tmp / "rh.duckdb"
    env = dict(os.environ, POSTGRES_DSN=services.postgres_dsn, VALKEY_URL=services.valkey_url,
               PGCACHE_SERVICES_DIR=str(tmp / "svc"))
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "workloads/read-heavy.yaml", *SHORT,
         "--results", str(db)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return db


class TestFairPeer:
    """valkey-tracking against pgcache on the read-heavy workload."""

    def test_local_ratio_close_to_pgcache(self, read_heavy_db: Path) -> None:
        """Both serve nearly every read locally, and valkey-tracking's share is no more than a
        few points below pgcache's: the peer is not handicapped (in the full workload on a
        quiet machine the two are within 0.2 points)."""
        with duckdb.connect(str(read_heavy_db), read_only=True) as con:
            rates = dict(con.execute("SELECT backend, local_rate FROM summary "
                                     "WHERE op = 'get'").fetchall())
        # On a loaded machine pgcache's share drops first (its lease lapses while the
        # listener's proofs queue behind the load: seen at 0.93 against the peer's 0.98 at a
        # load average of 2, and 0.70-0.84 at a load average of 15-20), so the bound is
        # one-sided: it is the peer's fairness that this test guards. pgcache's own floor is
        # only that most reads stay local; the peer's is the full one.
        assert rates["valkey-tracking"] > 0.85, rates
        assert rates["postgres-cache"] > 0.5, rates
        assert rates["valkey-tracking"] > rates["postgres-cache"] - 0.03, rates

    def test_stale_reads_within_invalidation_lag(self, read_heavy_db: Path) -> None:
        """Every stale read of either backend happened before its invalidation arrived, and
        valkey-tracking's invalidation lag is recorded like pgcache's."""
        with duckdb.connect(str(read_heavy_db), read_only=True) as con:
            judged = dict(con.execute(
                "SELECT backend, count(*) FILTER (WHERE beyond_invalidation IS DISTINCT FROM "
                "false) FROM stale_reads GROUP BY ALL").fetchall())
            lag = {r[0]: r[1:] for r in con.execute(
                "SELECT backend, writes, count, p99_ms FROM invalidation_lag_summary"
            ).fetchall()}
        assert all(n == 0 for n in judged.values()), judged
        for backend in ("postgres-cache", "valkey-tracking"):
            writes, delivered, p99 = lag[backend]
            assert writes > 0 and delivered > 0 and p99 is not None, lag

    def test_repeat_summary(self, read_heavy_db: Path) -> None:
        """The interleaved passes are summarised per backend with their spread and CV."""
        with duckdb.connect(str(read_heavy_db), read_only=True) as con:
            rows = con.execute(
                "SELECT backend, passes, ops_per_s_min <= ops_per_s_median "
                "AND ops_per_s_median <= ops_per_s_max, ops_per_s_cv FROM repeat_summary "
                "WHERE op = 'get' ORDER BY backend").fetchall()
        assert [(b, n, ordered) for b, n, ordered, _ in rows] == [
            ("postgres-cache", 2, True), ("valkey-tracking", 2, True)]
        assert all(cv is not None and 0 <= cv < 1 for *_, cv in rows), rows
