"""The command line under adversity, as a new user would meet it: hostile workload files,
servers that die mid-run, disks that cannot be written or fill up, secrets in addresses, the
results database in use, servers left behind, interrupts at any moment."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import pytest
from support.commands import cli, start, wait_for_ops, write_workload

from orchestrator.cli import main as main_in_process
from orchestrator.services import EmbeddedPostgres

HOSTILE = {
    "binary garbage": bytes(range(256)) * 8,
    "alias bomb": ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n"
        for i in range(8))).encode(),
    "17 MB of unknown keys": "".join(f"unknown_{i}: {i}\n" for i in range(900_000)).encode(),
    "empty file": b"",
    "duplicate key": b"writers: 1\nreaders: 2\nwriters: 3\n",
    "duration and iterations": b"duration_s: 5\nwrite_iterations: 10\n",
    "ttl NaN": b"ttl_s: .nan\n",
    "duration inf, think time NaN": b"duration_s: .inf\nthink_time_ms: .nan\n",
    "warm-up inf": b"warmup_s: .inf\n",
    "pgcache options": b"backends:\n  - {name: pg, type: pgcache, options: "
                       b"{max_pool_size: -1, local_ttl_seconds: soon}}\n",
}
HOSTILE_PATHS = {
    "binary garbage": ["(file)"], "alias bomb": ["b[0]"], "17 MB of unknown keys": ["(file)"],
    "empty file": ["(document)"], "duplicate key": ["writers"],
    "duration and iterations": ["duration_s"], "ttl NaN": ["ttl_s"],
    "duration inf, think time NaN": ["duration_s", "think_time_ms"],
    "warm-up inf": ["warmup_s"],
    "pgcache options": ["backends[0].options.max_pool_size",
                        "backends[0].options.local_ttl_seconds"],
}


class TestHostileWorkloads:
    """Each hostile workload file gets exit 2, a message naming the file and the YAML path, and
    nothing is written."""

    @pytest.mark.parametrize("case", sorted(HOSTILE))
    @pytest.mark.parametrize("command", ["validate", "run"])
    def test_refused(self, case: str, command: str, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
        """`validate` and `run`: exit 2, `error: FILE: N problem(s)`, each path with what was
        expected and found; no results database, no logs."""
        workload = tmp_path / "hostile.yaml"
        workload.write_bytes(HOSTILE[case])
        extra = ["--results", str(tmp_path / "out" / "r.duckdb")] if command == "run" else []
        started = time.monotonic()
        code = main_in_process([command, str(workload), *extra])
        assert time.monotonic() - started < 5
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith(f"error: {workload}: ")
        for where in HOSTILE_PATHS[case]:
            assert f"\n  - {where}: expected " in err
        assert ", found " in err
        assert len(err) < 5000
        assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.yaml"]

    def test_subprocess_has_no_traceback(self, tmp_path: Path) -> None:
        """As a command: the alias bomb is one error message, exit 2, no traceback."""
        workload = tmp_path / "bomb.yaml"
        workload.write_bytes(HOSTILE["alias bomb"])
        result = cli("validate", str(workload))
        assert result.returncode == 2
        assert result.stderr.startswith(f"error: {workload}: 1 problem:")
        assert "Traceback" not in result.stderr


class TestServerDies:
    """A run whose server died is not a success."""

    def test_postgres_stopped_mid_run(self, tmp_path: Path) -> None:
        """PostgreSQL stopped (immediate) during the measurement: `completed_with_errors`,
        exit 1, and the console names the backend and when its operations failed."""
        pg = EmbeddedPostgres(tmp_path / "pg")
        dsn = pg.start()
        path = write_workload(tmp_path, {"processes": 1, "writers": 1, "readers": 2,
                                         "duration_s": 3, "think_time_ms": 1,
                                         "backends": ["postgres-cache"]})
        db = tmp_path / "r.duckdb"
        env = {**_base_env(tmp_path), "POSTGRES_DSN": dsn}
        proc = start(["run", str(path), "--results", str(db)], env)
        try:
            wait_for_ops(tmp_path / "logs")
            time.sleep(1.0)
            pg.stop("immediate")
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
            pg.stop()
        assert proc.returncode == 1, err[-2000:]
        assert "Traceback" not in err
        line = next(x for x in err.splitlines() if x.startswith("errors: postgres-cache: "))
        assert "operations failed" in line and "into the pass" in line
        assert "the workload allows none (allowed_error_rate)" in line
        assert "completed_with_errors" in out
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT status FROM runs").fetchone() == (
                "completed_with_errors",)
            judged = con.execute("SELECT data->'backends'->'postgres-cache'->>'allowed' "
                                 "FROM events WHERE event = 'errors_judged'").fetchall()
            assert judged == [("false",)]
            ok, failed = con.execute("SELECT count(*) FILTER (WHERE error IS NULL), "
                                     "count(error) FROM ops").fetchone() or (0, 0)
        assert ok > 0 and failed > 0


def _base_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no servers named, state and temporary files in tmp."""
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_DSN", "VALKEY_URL")}
    env.update(PGCACHE_SERVICES_DIR=str(tmp_path / "services"), TMPDIR=str(tmp_path),
               PYTHONUNBUFFERED="1")
    return env
