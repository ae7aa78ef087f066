"""The command line, run as a subprocess with tiny workloads against the session's servers."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from support.commands import (
    alive,
    cli,
    env_for,
    start,
    wait_for_ops,
    worker_pids,
    write_workload,
)
from support.repo import ROOT, WORKLOADS

from orchestrator.backends.registry import PRESETS
from orchestrator.cli import main
from orchestrator.errors import ExitCode, OrchestratorError
from orchestrator.services import Services, free_port

TINY = ["--set", "processes=1", "--set", "writers=1", "--set", "readers=1",
        "--set", "write_iterations=5", "--set", "read_iterations=5", "--set", "keyspace=8",
        "--set", "warmup_s=0", "--set", "duration_s=null", "--set", "prefill=false",
        "--set", "repeat=1"]


class TestHelp:
    """Every command answers --help."""

    @pytest.mark.parametrize("command", ["run", "validate", "report", "query", "services"])
    def test_help(self, command: str) -> None:
        """`COMMAND --help` exits 0 and describes the command."""
        result = cli(command, "--help")
        assert result.returncode == 0
        assert "usage:" in result.stdout

    def test_seed_flags_exist(self) -> None:
        """The seed harness's flags are accepted by run."""
        text = cli("run", "--help").stdout
        for flag in ("--backends", "--writers", "--readers", "--ttl", "--write-iterations",
                     "--read-iterations", "--keyspace", "--network-latency-ms",
                     "--network-jitter-ms", "--results", "--set", "--executor",
                     "--ray-address"):
            assert flag in text


class TestValidate:
    """`validate` accepts good workloads and lists every problem of bad ones."""

    def test_ok(self) -> None:
        """A shipped workload validates with exit 0."""
        result = cli("validate", "workloads/default.yaml")
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout

    def test_bad_workload(self, tmp_path: Path) -> None:
        """Problems are all listed with their path; exit 2; no results database appears."""
        path = write_workload(tmp_path, {"writers": "x", "keyspace": -1, "backends": ["memcached"],
                                 "colour": 1})
        result = cli("validate", str(path))
        assert result.returncode == 2
        for where in ("writers:", "keyspace:", "backends[0]:", "colour:"):
            assert where in result.stderr
        run = cli("run", str(path), "--results", str(tmp_path / "r.duckdb"))
        assert run.returncode == 2
        assert not (tmp_path / "r.duckdb").exists()

    def test_executor_flags(self) -> None:
        """--ray-address implies executor ray; --executor ray alone connects to auto; an
        unknown executor is exit 2."""
        result = cli("validate", "workloads/default.yaml", "--ray-address", "ray://head:10001")
        assert result.returncode == 0, result.stderr
        assert "on Ray at ray://head:10001 (SPREAD)" in result.stdout
        result = cli("validate", "workloads/default.yaml", "--executor", "ray",
                     "--set", "placement.strategy=STRICT_SPREAD")
        assert "on Ray at auto (STRICT_SPREAD)" in result.stdout
        assert "on Ray" not in cli("validate", "workloads/default.yaml").stdout
        assert cli("validate", "workloads/default.yaml", "--executor", "k8s").returncode == 2

    def test_impossible_sizes_refused(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
        """processes: 512 is refused by validate, run and suite (exit 2, the limit and --force
        named, nothing written); validate --force lets it through."""
        # Were the run not refused, it would fail at once on a dead Valkey, before a worker.
        monkeypatch.setenv("VALKEY_URL", f"redis://127.0.0.1:{free_port()}/0")
        monkeypatch.setenv("PGCACHE_SERVICES_DIR", str(tmp_path / "services"))
        path = write_workload(tmp_path, {"processes": 512, "backends": ["valkey"]})
        db = tmp_path / "r.duckdb"
        result = cli("validate", str(path))
        assert result.returncode == 2, result.stdout
        assert (f"error: {path}: 2 problems:\n  - processes: expected at most "
                f"{8 * len(os.sched_getaffinity(0))} worker processes on this machine (8 per "
                "CPU") in result.stderr
        assert "--force" in result.stderr
        # The same command line in this process (cheaper than more processes; each refuses
        # before it starts anything).
        assert main(["validate", str(path), "--force"]) == 0
        assert main(["run", str(path), "--results", str(db)]) == 2
        assert "processes: expected at most" in capsys.readouterr().err
        suite = tmp_path / "s.yaml"
        suite.write_text(yaml.safe_dump({
            "workload": {"processes": 2, "writers": 2, "readers": 2, "duration_s": 1,
                         "backends": ["valkey"]},
            "axes": {"processes": [1, 512]}, "base": {"processes": 1},
            "target": "get.p99_ms < 1"}))
        assert main(["suite", str(suite), "--results", str(db)]) == 2
        assert "point processes=512: processes: expected at most" in capsys.readouterr().err
        assert not db.exists() and not (tmp_path / "logs").exists()

    def test_bad_set_and_backend(self) -> None:
        """A malformed --set or an unknown --backends name is exit 2."""
        assert cli("validate", "workloads/default.yaml", "--set", "writers").returncode == 2
        result = cli("validate", "workloads/default.yaml", "--backends", "memcached")
        assert result.returncode == 2
        assert "memcached" in result.stderr


class TestErrors:
    """Every error ends the command with its exit code and a message, never a traceback."""

    def test_server_that_cannot_start_is_one_line_exit_1(self, tmp_path: Path) -> None:
        """`services up` where no directory can be made: one `error:` line, exit 1."""
        blocker = tmp_path / "a-file"
        blocker.write_text("not a directory")
        env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_DSN", "VALKEY_URL")}
        env["PGCACHE_SERVICES_DIR"] = str(blocker / "services")
        result = cli("services", "up", env=env)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"error: cannot create the servers' directory {blocker / 'services'}: "
            "Not a directory"]

    def test_network_error_fails_the_run_exit_1(self, tmp_path: Path) -> None:
        """Toxiproxy unreachable in mode toxiproxy: the run is failed and said so, exit 1."""
        path = write_workload(tmp_path, {"processes": 1, "writers": 1, "readers": 1,
                                 "backends": ["null"], "network": {
                                     "mode": "toxiproxy",
                                     "toxiproxy_url": f"http://127.0.0.1:{free_port()}"}})
        db = tmp_path / "r.duckdb"
        result = cli("run", str(path), "--results", str(db))
        assert result.returncode == 1, result.stderr
        assert "failed: Toxiproxy set-up failed: Toxiproxy is unreachable" in result.stderr
        assert "Traceback" not in result.stderr
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT status FROM runs").fetchone() == ("failed",)

    def test_unreachable_server_fails_the_run_exit_1(self, tmp_path: Path) -> None:
        """A backend whose server does not answer fails the run with its address, exit 1."""
        path = write_workload(tmp_path, {"processes": 1, "writers": 1, "readers": 1,
                                 "backends": ["valkey"]})
        url = f"redis://127.0.0.1:{free_port()}/0"
        env = dict(os.environ, VALKEY_URL=url, PGCACHE_SERVICES_DIR=str(tmp_path / "svc"))
        result = cli("run", str(path), "--results", str(tmp_path / "r.duckdb"), env=env)
        assert result.returncode == 1, result.stderr
        assert f"valkey: could not flush Valkey at {url}" in result.stderr
        assert "Traceback" not in result.stderr

    def test_every_error_has_an_exit_code(self) -> None:
        """Each error class carries one of the documented exit codes."""
        classes = [OrchestratorError, *_subclasses(OrchestratorError)]
        assert len(classes) >= 10
        assert {cls.exit_code for cls in classes} <= {ExitCode.FAILED, ExitCode.BAD_INPUT,
                                                      ExitCode.INTERRUPTED}


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


@pytest.fixture(scope="module")
def tiny_run(services: Services, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny run of every backend (2 processes), its output and database."""
    tmp = tmp_path_factory.mktemp("run")
    backends = sorted(PRESETS)
    workload = {"processes": 2, "writers": 2, "readers": 3, "write_iterations": 20,
                "read_iterations": 30, "keyspace": 8, "backends": backends}
    path = write_workload(tmp, workload)
    db = tmp / "results.duckdb"
    result = cli("run", str(path), "--results", str(db), env=env_for(services, tmp))
    return {"result": result, "db": db, "backends": backends, "workload": workload,
            "env": env_for(services, tmp)}


class TestRun:
    """A tiny run of every backend records exactly what the workload asked for."""

    def test_exit_and_summary(self, tiny_run: dict[str, Any]) -> None:
        """The run exits 0 and prints, per backend and op, ops/s, p50, p99, mean, the local
        share, the stale rate, stale reads beyond invalidation and errors, then the next
        commands."""
        result = tiny_run["result"]
        assert result.returncode == 0, result.stderr
        header = next(line for line in result.stdout.splitlines() if line.startswith("backend"))
        assert header.split() == ["backend", "op", "ops/s", "p50", "ms", "p99", "ms", "mean",
                                  "ms", "local", "stale", "stale>inv", "errors"]
        for backend in tiny_run["backends"]:
            assert f"{backend} " in result.stdout
        assert "next:\n  python -m orchestrator report " in result.stdout

    def test_op_counts(self, tiny_run: dict[str, Any]) -> None:
        """Each backend has writers x write_iterations sets and readers x read_iterations gets."""
        with duckdb.connect(str(tiny_run["db"]), read_only=True) as con:
            rows = con.execute("SELECT backend, op, count(*), count(error) FROM ops "
                               "GROUP BY ALL").fetchall()
        counts = {(b, op): n for b, op, n, _ in rows}
        for backend in tiny_run["backends"]:
            assert counts[(backend, "set")] == 2 * 20
            assert counts[(backend, "get")] == 3 * 30
        assert all(errors == 0 for *_, errors in rows)

    def test_summary_matches_ops(self, tiny_run: dict[str, Any]) -> None:
        """The summary view's counts and percentiles are those of all the run's ops."""
        with duckdb.connect(str(tiny_run["db"]), read_only=True) as con:
            summary = con.execute("SELECT backend, op, ops, p50_ms, p99_ms, hit_rate "
                                  "FROM summary").fetchall()
            for backend, op, ops, p50, p99, hit_rate in summary:
                lat = sorted(r[0] for r in con.execute(
                    "SELECT latency_ns FROM ops WHERE backend = ? AND op = ?",
                    [backend, op]).fetchall())
                assert ops == len(lat)
                assert p50 == pytest.approx(_quantile(lat, 0.5) / 1e6)
                assert p99 == pytest.approx(_quantile(lat, 0.99) / 1e6)
                if op == "get":
                    hits = con.execute("SELECT avg(hit::INT) FROM ops WHERE backend = ? "
                                       "AND op = 'get'", [backend]).fetchone()
                    assert hits is not None
                    assert hit_rate == pytest.approx(hits[0])

    def test_run_metadata(self, tiny_run: dict[str, Any]) -> None:
        """The runs row carries status, workload text, seed, versions and host."""
        with duckdb.connect(str(tiny_run["db"]), read_only=True) as con:
            status, text, seed, versions, host, network = con.execute(
                "SELECT status, workload_yaml, seed, versions, host, network FROM runs"
            ).fetchone() or (None,) * 6
        assert status == "completed"
        assert "write_iterations: 20" in text
        assert seed == 42
        info = json.loads(versions)
        assert info["python"] and info["postgresql"] and info["valkey"]
        assert "duckdb" in info["packages"]
        assert host
        assert json.loads(network)["mode"] == "none"

    def test_values_name_their_writes(self, tiny_run: dict[str, Any]) -> None:
        """Every hit names a write id; every set records the write id it wrote."""
        with duckdb.connect(str(tiny_run["db"]), read_only=True) as con:
            bad = con.execute(
                "SELECT count(*) FROM ops WHERE (op = 'set' AND NOT regexp_matches(version, "
                "'^\\d+:\\d+:\\d+$')) OR (op = 'get' AND hit AND version IS NULL) "
                "OR (op = 'get' AND NOT hit AND version IS NOT NULL)").fetchone()
            pg = con.execute("SELECT count(*) FROM ops WHERE backend = 'postgres-cache' AND "
                             "op = 'set' AND server_version IS NULL").fetchone()
        assert bad == (0,)
        assert pg == (0,)

    def test_events(self, tiny_run: dict[str, Any]) -> None:
        """Worker and parent events are in the events table."""
        with duckdb.connect(str(tiny_run["db"]), read_only=True) as con:
            events = {(p >= 0, e) for p, e in con.execute(
                "SELECT DISTINCT process, event FROM events").fetchall()}
        assert {(True, "ready"), (True, "phase"), (True, "worker_done"),
                (False, "run_started"), (False, "pass_started")} <= events

    def test_report_and_query(self, tiny_run: dict[str, Any]) -> None:
        """report prints the latest run in every format; query runs SQL."""
        db = str(tiny_run["db"])
        table = cli("report", "--results", db)
        assert table.returncode == 0 and "completed" in table.stdout
        data = json.loads(cli("report", "latest", "--format", "json", "--results", db).stdout)
        assert {b["backend"] for b in data["backends"]} == set(tiny_run["backends"])
        markdown = cli("report", "--format", "markdown", "--results", db).stdout
        assert "| backend |" in markdown
        query = cli("query", "SELECT count(*) AS n FROM ops", "--results", db)
        assert query.returncode == 0
        assert str(len(tiny_run["backends"]) * (40 + 90)) in query.stdout
        assert cli("report", "no-such-run", "--results", db).returncode == 2
        assert cli("query", "SELECT * FROM nope", "--results", db).returncode == 2

    def test_server_cost_sampled(self, tiny_run: dict[str, Any]) -> None:
        """Server cost is sampled during the Postgres and Valkey passes."""
        with duckdb.connect(str(tiny_run["db"]), read_only=True) as con:
            sampled = {r[0] for r in con.execute(
                "SELECT DISTINCT backend FROM server_cost").fetchall()}
        assert {"postgres-cache", "valkey"} <= sampled

    def test_html_report(self, tiny_run: dict[str, Any], tmp_path: Path) -> None:
        """report --html writes one self-contained HTML file."""
        out = tmp_path / "report.html"
        result = cli("report", "--html", "-o", str(out), "--results", str(tiny_run["db"]))
        assert result.returncode == 0, result.stderr
        assert "<html" in out.read_text()[:500].lower()

    def test_queries_run(self, tiny_run: dict[str, Any]) -> None:
        """Every results/queries/*.sql runs against a real run's database."""
        queries = sorted((ROOT / "results" / "queries").glob("*.sql"))
        assert len(queries) >= 5
        with duckdb.connect(str(tiny_run["db"]), read_only=True) as con:
            for query in queries:
                assert con.execute(query.read_text()).fetchall() is not None, query.name


def _quantile(values: list[int], q: float) -> float:
    position = (len(values) - 1) * q
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


class TestThresholds:
    """Thresholds decide the exit code and are recorded with the run."""

    @pytest.mark.parametrize(("condition", "code", "passed"),
                             [("get.p99_ms < 100000", 0, True), ("get.p99_ms < 0", 99, False)])
    def test_verdict(self, condition: str, code: int, passed: bool, services: Services,
                     tmp_path: Path) -> None:
        """A passing threshold exits 0, a failing one exits 99 (the run itself worked);
        runs.thresholds_passed says so."""
        path = write_workload(tmp_path, {"processes": 1, "writers": 1, "readers": 1,
                                 "write_iterations": 5, "read_iterations": 5,
                                 "backends": ["null"], "thresholds": {"*": [condition]}})
        db = tmp_path / "r.duckdb"
        result = cli("run", str(path), "--results", str(db), env=env_for(services, tmp_path))
        assert result.returncode == code, result.stderr
        assert f"null: {condition}" in result.stderr
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT thresholds_passed FROM runs").fetchone() == (passed,)


class TestWorkloadsRun:
    """Every shipped workload runs with tiny overrides."""

    @pytest.mark.parametrize("path", WORKLOADS, ids=[p.name for p in WORKLOADS])
    def test_runs(self, path: Path, services: Services, tmp_path: Path) -> None:
        """The workload completes on its own backends and records 10 ops per backend (its
        loader executions, for get_or_set, aside)."""
        db = tmp_path / "r.duckdb"
        result = cli("run", str(path), *TINY, "--results", str(db),
                     env=env_for(services, tmp_path))
        assert result.returncode == 0, result.stderr[-2000:]
        with duckdb.connect(str(db), read_only=True) as con:
            counts = con.execute("SELECT backend, count(*) FROM ops WHERE op <> 'load' "
                                 "GROUP BY ALL").fetchall()
        assert counts and all(n == 10 for _, n in counts)


class TestStopping:
    """Interrupts and dead workers end the run cleanly, with data ingested."""

    def test_sigint(self, services: Services, tmp_path: Path) -> None:
        """Ctrl-C (SIGINT to the process group) stops the 60 s run within 20 s (a few on a
        quiet host; the margin is for a loaded one); the run is interrupted."""
        path = write_workload(tmp_path, {"processes": 2, "writers": 1, "readers": 2,
                                 "duration_s": 60, "backends": ["valkey"]})
        db = tmp_path / "r.duckdb"
        proc = start(["run", str(path), "--results", str(db)], env_for(services, tmp_path))
        try:
            wait_for_ops(tmp_path / "logs")
            pids = worker_pids(tmp_path / "logs")
            started = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(40)
            assert time.monotonic() - started < 20
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 130
        assert pids and not any(alive(pid) for pid in pids)
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT status FROM runs").fetchone() == ("interrupted",)
            ops = con.execute("SELECT count(*) FROM ops").fetchone()
        assert ops is not None and ops[0] > 0

    def test_killed_worker(self, services: Services, tmp_path: Path) -> None:
        """A worker killed mid-run fails the run (exit 1); the others stop; data is kept."""
        path = write_workload(tmp_path, {"processes": 2, "writers": 2, "readers": 2,
                                 "duration_s": 60, "backends": ["valkey", "null"]})
        db = tmp_path / "r.duckdb"
        proc = start(["run", str(path), "--results", str(db)], env_for(services, tmp_path))
        try:
            wait_for_ops(tmp_path / "logs")
            pids = worker_pids(tmp_path / "logs")
            os.kill(pids[0], signal.SIGKILL)
            proc.wait(15)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 1
        assert "exited with code -9" in (proc.stderr.read() if proc.stderr else "")
        assert not any(alive(pid) for pid in pids)
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT status FROM runs").fetchone() == ("failed",)
            by_process = dict(con.execute("SELECT process, count(*) FROM ops "
                                          "GROUP BY ALL").fetchall())
            backends = con.execute("SELECT DISTINCT backend FROM ops").fetchall()
        assert by_process.get(1, 0) > 0
        assert backends == [("valkey",)]  # the run stopped before the next backend


