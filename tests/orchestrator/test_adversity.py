"""The command line under adversity, as a new user would meet it: hostile workload files,
servers that die mid-run, disks that cannot be written or fill up, secrets in addresses, the
results database in use, servers left behind, interrupts at any moment."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import duckdb
import pytest
import yaml
from support.commands import alive, cli, env_for, start, wait_for_ops, write_workload
from support.filesystems import resize, tmpfs
from support.repo import ROOT

from orchestrator.cli import main as main_in_process
from orchestrator.results import store
from orchestrator.services import EmbeddedPostgres, Services, free_port

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
        assert "most often 'CacheConnectionError: " in line
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


class TestSecrets:
    """No password reaches the console, the events, the runs table, the logs or the report."""

    def test_password_never_written(self, services: Services, tmp_path: Path) -> None:
        """A run against servers whose DSN has a password, with a secret URL in the workload:
        the password is in no output, no file, no table."""
        secret = "secret-in-the-workload"
        pg_password = urlsplit(services.postgres_dsn).password
        assert pg_password  # the session's DSN carries one: the test has something to find
        path = tmp_path / "input" / "w.yaml"  # the user's own file: not scanned
        path.parent.mkdir()
        path.write_text(f"# a comment naming redis://admin:{secret}@cache.example:6379/0\n"
                        + yaml.safe_dump({"processes": 1, "writers": 1, "readers": 1,
                                          "write_iterations": 20, "read_iterations": 20,
                                          "backends": ["postgres-cache", "valkey"]}))
        db = tmp_path / "r.duckdb"
        run = cli("run", str(path), "--results", str(db), env=env_for(services, tmp_path))
        assert run.returncode == 0, run.stderr[-2000:]
        html = tmp_path / "report.html"
        report = cli("report", "--html", "-o", str(html), "--results", str(db))
        assert report.returncode == 0, report.stderr
        outputs = run.stdout + run.stderr + report.stdout + report.stderr
        assert "postgresql://cache_user:***@" in run.stderr  # the DSN is shown, redacted
        files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".duckdb"
                 and not p.name.endswith(".wal") and p.parent.name != "input"]
        assert any(p.name.endswith(".spec.json") for p in files)
        assert any(p.name == "parent.events.jsonl" for p in files)
        with duckdb.connect(str(db), read_only=True) as con:
            tables = "\n".join(str(row) for query in (
                "SELECT * FROM runs", "SELECT * FROM events", "SELECT DISTINCT error FROM ops")
                for row in con.execute(query).fetchall())
        assert "cache.example" in tables  # the workload text is there, redacted
        for password in (pg_password, secret):
            assert password not in outputs
            assert password not in tables
            for file in files:
                assert password.encode() not in file.read_bytes(), file

    def test_unreachable_server_error_is_redacted(self, tmp_path: Path) -> None:
        """An error message naming a server's URL shows it without its password."""
        path = write_workload(tmp_path, {"processes": 1, "writers": 1, "readers": 1,
                                         "backends": ["valkey"]})
        url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
        env = {**_base_env(tmp_path), "VALKEY_URL": url}
        result = cli("run", str(path), "--results", str(tmp_path / "r.duckdb"), env=env)
        assert result.returncode == 1
        assert "could not flush Valkey at redis://:***@127.0.0.1:" in result.stderr
        assert "hunter2" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results database with one more table."""
    path = tmp_path_factory.mktemp("q") / "r.duckdb"
    con = store.connect(path)
    try:
        con.execute("CREATE TABLE t AS SELECT 42 AS answer")
    finally:
        con.close()
    return path


class TestQuery:
    """`query` reads the results database and nothing else, and says what to do when a run
    holds it."""

    @pytest.mark.parametrize("sql", [
        "COPY (SELECT 1) TO '{out}'", "COPY t TO '{out}' (FORMAT csv)",
        "EXPORT DATABASE '{dir}'", "ATTACH '{out}' AS other",
        "SET enable_external_access = true",
    ])
    def test_cannot_write_files(self, db: Path, tmp_path: Path, sql: str) -> None:
        """Statements that would write (or re-enable writing) files fail with exit 2."""
        out = tmp_path / "written.csv"
        result = cli("query", sql.format(out=out, dir=tmp_path / "export"), "--results",
                     str(db))
        assert result.returncode == 2, result.stdout
        assert result.stderr.startswith("error: query failed:")
        assert list(tmp_path.iterdir()) == []

    def test_cannot_read_files(self, db: Path) -> None:
        """Reading another file through the query is refused too; the database answers."""
        refused = cli("query", "SELECT * FROM read_csv('/etc/passwd')", "--results", str(db))
        assert refused.returncode == 2
        assert "root" not in refused.stdout
        ok = cli("query", "SELECT answer FROM t", "--results", str(db))
        assert ok.returncode == 0 and "42" in ok.stdout

    def test_while_a_run_holds_the_database(self, services: Services, tmp_path: Path) -> None:
        """During a run, query says the database is in use and how to query a copy; the copy
        answers with the passes ingested so far."""
        path = write_workload(tmp_path, {"processes": 1, "writers": 1, "readers": 1,
                                         "duration_s": 1, "repeat": 30, "backends": ["null"]})
        db = tmp_path / "r.duckdb"
        proc = start(["run", str(path), "--results", str(db)], env_for(services, tmp_path))
        try:
            deadline = time.monotonic() + 60
            while not list((tmp_path / "logs").glob("*/null.r2.p0.ops.csv")):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
            busy = cli("query", "SELECT count(*) FROM ops", "--results", str(db))
            busy_report = cli("report", "--results", str(db))
            copy = tmp_path / "copy.duckdb"
            shutil.copy(db, copy)
            answered = cli("query", "SELECT count(*) AS n FROM ops WHERE repetition = 1",
                           "--results", str(copy), "--format", "json")
            second = cli("run", str(path), "--results", str(db), env=env_for(services, tmp_path))
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            # How fast a run stops is test_interrupts' matter; here it only has to end. Its
            # end came later than 30 s after the signal under a load average of 20.
            proc.communicate(timeout=120)
        assert busy.returncode == 1
        (line,) = busy.stderr.splitlines()
        assert line.startswith(f"error: the results database {db} is in use by process "
                               f"{proc.pid} (a run still going?)")
        assert f"cp {db} /tmp/r-copy.duckdb && python -m orchestrator query" in line
        assert busy_report.returncode == 1 and busy_report.stderr == busy.stderr
        assert answered.returncode == 0, answered.stderr
        assert json.loads(answered.stdout)[0]["n"] > 0
        assert second.returncode == 1 and "is in use by process" in second.stderr


class TestUnwritableResults:
    """A results location that cannot be written is bad input (exit 2), found before any
    server starts, with nothing written."""

    def _refused(self, results: Path, tmp_path: Path) -> str:
        """Run a workload that needs PostgreSQL (none is named, so one would be started)."""
        path = tmp_path / "input" / "w.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump({"processes": 1, "writers": 1, "readers": 1,
                                        "backends": ["postgres-cache"]}))
        before = sorted(tmp_path.rglob("*"))
        started = time.monotonic()
        result = cli("run", str(path), "--results", str(results), env=_base_env(tmp_path))
        # Refused at once: no server started (the single line and the untouched folder below
        # show it), nothing waited for. The bound allows a loaded machine's slow start-up.
        assert time.monotonic() - started < 30
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: --results {results}: ")
        assert line.endswith("choose a location this user can write (--results PATH)")
        assert sorted(tmp_path.rglob("*")) == before  # no server's folder, no log, no database
        return line

    def test_parent_is_a_file(self, tmp_path: Path) -> None:
        """--results under a regular file: it is not a directory (deeper too)."""
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        assert f"{blocker} is not a directory" in self._refused(blocker / "r.duckdb",
                                                                tmp_path)
        assert "Not a directory" in self._refused(blocker / "sub" / "r.duckdb", tmp_path)

    def test_under_proc(self, tmp_path: Path) -> None:
        """--results under /proc: refused by the file system."""
        assert "No such file or directory" in self._refused(Path("/proc/nope/r.duckdb"),
                                                            tmp_path)

    def test_read_only_file_system(self, tmp_path: Path) -> None:
        """--results on a file system mounted read-only: 'Read-only file system'."""
        with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
            assert "Read-only file system" in self._refused(ro / "results" / "r.duckdb",
                                                            tmp_path)


class TestFullDisk:
    """The disk fills up mid-run: the run stops with exit 1 and says so; the CSV logs keep
    every whole line written; `ingest LOG_DIR` loads them once there is room.

    Two honest simulations of a small disk: a real 4 MiB tmpfs (the results, the database and
    the logs on it; ENOSPC), mounted when this machine allows it, and RLIMIT_FSIZE on the
    orchestrator and its workers (no file may grow past 2 MB; EFBIG). After the failure the
    tmpfs is remounted larger, or the limit is not applied, and the logs are ingested."""

    # Far longer than a run that stops at the full disk takes, even on a loaded machine.
    WORKLOAD: ClassVar[dict[str, Any]] = {"processes": 2, "writers": 2, "readers": 2,
                                          "duration_s": 180, "backends": ["null"]}

    @classmethod
    def _fill(cls, tmp_path: Path, results: Path, message: str,
              preexec: Callable[[], None] | None = None) -> Path:
        """Run until the disk is full; check the failure; return the run's log directory."""
        path = write_workload(tmp_path, cls.WORKLOAD)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(path),
                                 "--results", str(results)], cwd=ROOT, env=_base_env(tmp_path),
                                capture_output=True, text=True, timeout=300, check=False,
                                preexec_fn=preexec)
        assert time.monotonic() - started < 90  # it stopped at once, not after 180 s
        assert result.returncode == 1, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        assert f"could not write {results.parent / 'logs'}" in result.stderr
        assert message in result.stderr
        (log_dir,) = (results.parent / "logs").iterdir()
        assert (f"what was measured is kept in {log_dir}; once the results' file system can "
                f"be written again: python -m orchestrator ingest {log_dir} --results "
                f"{results}") in result.stderr
        return log_dir

    def _ingest(self, log_dir: Path, results: Path) -> None:
        """`ingest` loads every line the workers wrote; the run is marked failed."""
        lines = 0
        for csv in log_dir.glob("*.ops.csv"):
            text = csv.read_text()
            assert text.endswith("\n")  # only whole lines were kept
            lines += text.count("\n")
        assert lines > 0
        result = cli("ingest", str(log_dir), "--results", str(results))
        assert result.returncode == 0, result.stderr
        with duckdb.connect(str(results), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM ops").fetchone() == (lines,)
            assert con.execute("SELECT status FROM runs").fetchone() == ("failed",)
            assert con.execute("SELECT count(*) FROM events WHERE process = -1 AND "
                               "event = 'run_started'").fetchone() == (1,)

    def test_tmpfs_fills_up(self, tmp_path: Path) -> None:
        """A 4 MiB tmpfs: 'No space left on device'; ingested after it is made larger."""
        with tmpfs(tmp_path / "disk", "4m") as disk:
            results = disk / "r.duckdb"
            log_dir = self._fill(tmp_path, results, "No space left on device")
            resize(disk, "64m")
            self._ingest(log_dir, results)

    @pytest.fixture(scope="class")
    @classmethod
    def size_limited(cls, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
        """One run stopped by RLIMIT_FSIZE of 2 MB ('File too large'), for the tests that
        ingest its logs: (its results database, its log directory)."""
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))

        tmp_path = tmp_path_factory.mktemp("size-limited")
        results = tmp_path / "results" / "r.duckdb"
        return results, cls._fill(tmp_path, results, "File too large", preexec=limit)

    def test_file_size_limit(self, size_limited: tuple[Path, Path]) -> None:
        """RLIMIT_FSIZE of 2 MB: 'File too large'; ingested by a process without the limit."""
        results, log_dir = size_limited
        self._ingest(log_dir, results)

    def test_ingest_reproduces_a_run(self, services: Services, tmp_path: Path) -> None:
        """A completed run's logs, ingested into a fresh database, give the same rows: ops,
        worker and parent events, server cost, and the run's row."""
        path = write_workload(tmp_path, {"processes": 2, "writers": 1, "readers": 2,
                                         "duration_s": 0.5, "backends": ["valkey", "null"]})
        db, fresh = tmp_path / "r.duckdb", tmp_path / "fresh.duckdb"
        assert cli("run", str(path), "--results", str(db),
                   env=env_for(services, tmp_path)).returncode == 0
        (log_dir,) = (tmp_path / "logs").iterdir()
        assert cli("ingest", str(log_dir), "--results", str(fresh)).returncode == 0
        queries = ["SELECT run_id, workload, workload_yaml, seed, status, versions, network "
                   "FROM runs",
                   "SELECT backend, repetition, process, count(*), sum(latency_ns) FROM ops "
                   "GROUP BY ALL ORDER BY ALL",
                   "SELECT backend, process, event, count(*) FROM events "
                   "WHERE event NOT IN ('errors_judged') GROUP BY ALL ORDER BY ALL",
                   "SELECT backend, server, metric, count(*), sum(value) FROM server_cost "
                   "GROUP BY ALL ORDER BY ALL"]
        with duckdb.connect(str(db), read_only=True) as a, \
                duckdb.connect(str(fresh), read_only=True) as b:
            for query in queries:
                assert a.execute(query).fetchall() == b.execute(query).fetchall(), query
            assert b.execute("SELECT count(*) FROM server_cost").fetchone()[0] > 0

    def test_ingest_is_idempotent_and_rebuilds_the_run(
            self, size_limited: tuple[Path, Path], tmp_path: Path) -> None:
        """Ingesting the same logs twice, into a fresh database, gives one run and its ops."""
        _, log_dir = size_limited
        fresh = tmp_path / "fresh.duckdb"
        for _ in range(2):
            assert cli("ingest", str(log_dir), "--results", str(fresh)).returncode == 0
        with duckdb.connect(str(fresh), read_only=True) as con:
            assert con.execute("SELECT run_id, status FROM runs").fetchall() == [
                (log_dir.name, "failed")]
            ops = con.execute("SELECT count(*) FROM ops").fetchone()
        assert ops is not None and ops[0] == sum(
            p.read_text().count("\n") for p in log_dir.glob("*.ops.csv"))
        assert cli("ingest", str(tmp_path / "nope"), "--results", str(fresh)).returncode == 2


def _claim(tmp_path: Path, timeout: float = 30) -> tuple[Path, dict[str, Any]]:
    """The servers' folder of the run under ``tmp_path`` (its $TMPDIR) and its claim, once
    both servers are recorded in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for root in tmp_path.glob("pgcache-services-*"):
            with contextlib.suppress(OSError, ValueError):
                claim = json.loads((root / "owner.json").read_text())
                if len(claim["servers"]) == 2:
                    return root, claim
        time.sleep(0.05)
    raise AssertionError("no embedded servers were started in time")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path: embedded PostgreSQL puts its Unix socket in
    its data folder, and a socket path may not exceed 107 bytes (pytest's tmp_path can)."""
    path = Path(tempfile.mkdtemp(prefix="pgc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


EMBEDDED_RUN = {"processes": 1, "writers": 1, "readers": 1, "duration_s": 30,
                "backends": ["postgres-cache", "valkey"]}


class TestLeftBehindServers:
    """Embedded servers never outlive their run for long, however it ends."""

    def test_sigkilled_run_takes_its_servers_along(self, short_tmp: Path) -> None:
        """The orchestrator SIGKILLed mid-run: its watchdog stops both servers and deletes
        their folder; `services status` then lists no stray."""
        path = write_workload(short_tmp, EMBEDDED_RUN)
        env = _base_env(short_tmp)
        proc = start(["run", str(path), "--results", str(short_tmp / "r.duckdb")], env)
        try:
            root, claim = _claim(short_tmp)
            wait_for_ops(short_tmp / "logs")
            assert "stray" not in cli("services", "status", env=env).stdout  # owner alive
            proc.kill()  # SIGKILL to the orchestrator alone: nothing of it runs any more
            proc.communicate(timeout=30)
            servers = [(s["pid"], s["binary"]) for s in claim["servers"].values()]
            deadline = time.monotonic() + 20
            while (any(alive(pid) for pid, _ in servers) or root.exists()) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert not [pid for pid, _ in servers if alive(pid)]
        assert not root.exists()
        status = cli("services", "status", env=env)
        assert status.returncode == 0 and "stray" not in status.stdout
        # The killed run recorded no end: its logs are ingested as a failed run.
        (log_dir,) = (short_tmp / "logs").iterdir()
        fresh = short_tmp / "fresh.duckdb"
        assert cli("ingest", str(log_dir), "--results", str(fresh)).returncode == 0
        with duckdb.connect(str(fresh), read_only=True) as con:
            assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
            assert con.execute("SELECT count(*) FROM ops").fetchone()[0] > 0

    def test_strays_listed_and_removed_by_benchmark_cleanup(self, short_tmp: Path) -> None:
        """Owner and watchdog both SIGKILLed: `services status` lists the strays, and
        `make benchmark-cleanup` stops them and deletes their data."""
        path = write_workload(short_tmp, EMBEDDED_RUN)
        env = _base_env(short_tmp)
        proc = start(["run", str(path), "--results", str(short_tmp / "r.duckdb")], env)
        root, claim = _claim(short_tmp)
        servers = {name: s["pid"] for name, s in claim["servers"].items()}
        try:
            wait_for_ops(short_tmp / "logs")
            os.kill(claim["watchdog"]["pid"], signal.SIGKILL)
            proc.kill()
            proc.communicate(timeout=30)
            time.sleep(1)
            assert all(alive(pid) for pid in servers.values())  # left behind
            status = cli("services", "status", env=env)
            assert status.returncode == 0, status.stderr
            (line,) = [x for x in status.stdout.splitlines() if x.startswith("stray: ")]
            assert line == (f"stray: postgres (pid {servers['postgres']}), valkey (pid "
                            f"{servers['valkey']}), left by process {proc.pid} (gone), data "
                            f"in {root}")
            assert "make benchmark-cleanup" in status.stdout
            no_docker = short_tmp / "bin"
            no_docker.mkdir()
            (no_docker / "docker").write_text("#!/bin/sh\nexit 1\n")  # this test's Docker: none
            (no_docker / "docker").chmod(0o755)
            cleanup = subprocess.run(["make", "-s", "benchmark-cleanup"], cwd=ROOT,
                                     env={**env, "PATH": f"{no_docker}:{env['PATH']}"},
                                     capture_output=True, text=True, timeout=120, check=False)
            assert cleanup.returncode == 0, cleanup.stderr
            assert f"removed postgres (pid {servers['postgres']})" in cleanup.stdout
        finally:
            for pid in servers.values():
                with contextlib.suppress(ProcessLookupError):
                    if alive(pid):
                        os.kill(pid, signal.SIGKILL)
        assert not any(alive(pid) for pid in servers.values())
        assert not root.exists()
        assert "stray" not in cli("services", "status", env=env).stdout


class TestInterrupts:
    """Ctrl-C at any moment of a run: exit 130, one line about it, no traceback."""

    @pytest.mark.parametrize("delay", [0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3, 1.7])
    def test_sigint_at_every_moment(self, delay: float, services: Services, tmp_path: Path,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
        """SIGINT to the process group `delay` s after the interpreter started (imports,
        validation, the results database, servers, workers starting, measuring, ingesting)."""
        path = write_workload(tmp_path, {"processes": 2, "writers": 1, "readers": 1,
                                         "duration_s": 0.4, "backends": ["valkey", "null"]})
        # A SIGINT during CPython's own start-up, before any line of the orchestrator runs,
        # ends it with "Fatal Python error: init_import_site" and a traceback, whatever the
        # program does; a loaded machine can still be there 0.1 s in. So the delay counts
        # from the end of that start-up, which the last step of `site` (sitecustomize) marks.
        site = tmp_path_factory.mktemp("site")
        started = site / "started"
        (site / "sitecustomize.py").write_text(f"open({str(started)!r}, 'a').close()\n")
        paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
        proc = start(["run", str(path), "--results", str(tmp_path / "r.duckdb")],
                     env_for(services, tmp_path, PYTHONPATH=os.pathsep.join(paths)))
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.005)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err
        said = [line for line in err.splitlines()
                if "interrupted" in line.lower() or "SIGINT" in line]
        if proc.returncode == 0:  # the run was over before the signal came
            assert said == []
            return
        assert proc.returncode == 130, err
        assert len(said) == 1, err
        if err == "interrupted\n":  # before the run began: nothing was written
            assert [p.name for p in tmp_path.iterdir()] == ["w.yaml"]

    def test_sigint_while_embedded_servers_start(self, short_tmp: Path) -> None:
        """SIGINT while the run's own servers start: exit 130, one line, servers stopped and
        their folder deleted."""
        path = write_workload(short_tmp, EMBEDDED_RUN)
        proc = start(["run", str(path), "--results", str(short_tmp / "r.duckdb")],
                     _base_env(short_tmp))
        deadline = time.monotonic() + 30
        while not list(short_tmp.glob("pgcache-services-*")):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        said = [x for x in err.splitlines() if "SIGINT" in x or "interrupted" in x]
        assert len(said) == 1 and said[0].startswith("SIGINT: "), err
        assert not list(short_tmp.glob("pgcache-services-*"))
        with duckdb.connect(str(short_tmp / "r.duckdb"), read_only=True) as con:
            assert con.execute("SELECT status FROM runs").fetchall() in ([], [("interrupted",)])
