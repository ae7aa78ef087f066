"""orchestrator.run.runner: the executor a workload asks for, and servers it cannot reach."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest
import structlog

from orchestrator.errors import ExitCode
from orchestrator.run.executor import Placement, Slot
from orchestrator.run.local_executor import LocalProcessExecutor
from orchestrator.run.protocol import WorkerSpec
from orchestrator.run.ray_executor import RayExecutor
from orchestrator.run.runner import RunOptions, executor_for, run_workload
from orchestrator.services import Services
from orchestrator.workload.model import BackendSpec
from orchestrator.workload.validation import parse_workload


class TwoHosts:
    """An executor whose workers would run on two other hosts; it starts none."""

    @contextlib.asynccontextmanager
    async def reserve(self, processes: int) -> AsyncIterator[Placement]:
        yield Placement((Slot("node-1", "far-1"), Slot("node-2", "far-2")))

    def workers(self, specs: Sequence[WorkerSpec]) -> Any:
        raise AssertionError("no worker may start")


class TestExecutorFor:
    """The workload's executor key picks the executor."""

    def test_local(self) -> None:
        """executor: local (the default) runs local processes."""
        assert isinstance(executor_for(parse_workload({})), LocalProcessExecutor)

    def test_ray(self) -> None:
        """executor: ray runs Ray actors, with the workload's address and placement."""
        executor = executor_for(parse_workload({
            "executor": "ray", "ray_address": "ray://head:10001",
            "placement": {"strategy": "STRICT_SPREAD", "workers_per_node": 3,
                          "cpus_per_worker": 0.5}}))
        assert isinstance(executor, RayExecutor)
        assert (executor.address, executor.strategy, executor.workers_per_node,
                executor.cpus_per_worker) == ("ray://head:10001", "STRICT_SPREAD", 3, 0.5)


class TestLoopbackRefused:
    """Workers on other hosts cannot reach loopback servers: the run refuses, and says why."""

    def test_refused_before_any_pass(self, services: Services, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """Loopback POSTGRES_DSN, workers on two hosts: failed, exit 1, no worker started,
        and the console names the variable and what to do."""
        monkeypatch.setenv("POSTGRES_DSN", services.postgres_dsn)
        monkeypatch.setenv("VALKEY_URL", services.valkey_url)
        console = io.StringIO()
        db = tmp_path / "r.duckdb"
        try:
            outcome = run_workload(
                parse_workload({"processes": 2, "backends": ["postgres-cache"]}),
                RunOptions(results_path=db, console=console, out=io.StringIO(),
                           executor=TwoHosts()))
        finally:
            structlog.reset_defaults()
        text = console.getvalue()
        assert outcome.exit_code == ExitCode.FAILED
        assert "refusing loopback server addresses" in text
        assert "POSTGRES_DSN" in text and "far-1, far-2" in text
        assert "servers every node can reach" in text
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
            assert con.execute("SELECT count(*) FROM ops").fetchone() == (0,)


class TestBackendsFromTheCaller:
    """The caller resolves the backends once (the CLI, from --backends) and the runner runs
    exactly those, without resolving any name again."""

    def test_runs_the_specs_it_is_given(self, tmp_path: Path) -> None:
        """A backend spec that is neither in the workload nor a preset is run as given, and
        the workload's own backend is not."""
        db = tmp_path / "r.duckdb"
        workload = parse_workload({"processes": 1, "writers": 1, "readers": 1,
                                   "write_iterations": 20, "read_iterations": 20,
                                   "keyspace": 4, "backends": ["null"]})
        try:
            outcome = run_workload(workload, RunOptions(
                results_path=db, console=io.StringIO(), out=io.StringIO(), quiet=True,
                backends=(BackendSpec("only-given", "null"),)))
        finally:
            structlog.reset_defaults()
        assert outcome.exit_code == ExitCode.OK
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT DISTINCT backend FROM ops").fetchall() == [
                ("only-given",)]
