"""orchestrator.run.local_executor (with the executor seam's placement checks) and .worker:
workers started, talked to, stopped and reaped.

The null backend needs no server, so these tests run real workers without any.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from orchestrator.results.logs import WorkerFiles
from orchestrator.run.executor import (
    Placement,
    Slot,
    WorkerHandle,
    local_only,
    loopback_problem,
)
from orchestrator.run.local_executor import LocalProcessExecutor
from orchestrator.run.protocol import (
    Done,
    Go,
    ParentMessage,
    Ready,
    Stop,
    WorkerMessage,
    WorkerSpec,
)
from orchestrator.run.worker import run_worker
from orchestrator.workload.model import BackendSpec
from proxies import Endpoints

WORKLOAD = {"writers": 2, "readers": 2, "write_iterations": 50, "read_iterations": 50,
            "keyspace": 8, "backends": ["null"]}


def null_spec(tmp_path: Path, process: int = 0, processes: int = 1) -> WorkerSpec:
    return WorkerSpec(run_id="r", backend=BackendSpec("null", "null"), repetition=1,
                      process=process, processes=processes, workload=WORKLOAD,
                      endpoints=Endpoints("", "", ""), network_mode="none",
                      log_dir=str(tmp_path))


async def next_message(handle: WorkerHandle, messages: AsyncIterator[WorkerMessage],
                       kind: type[WorkerMessage]) -> WorkerMessage:
    """The first message of ``kind`` (progress reports may come before it)."""
    async with asyncio.timeout(30):
        async for message in messages:
            if isinstance(message, kind):
                return message
    raise AssertionError(f"worker {handle.process} ended without {kind.__name__}")


class TestLocalProcessExecutor:
    """Child processes speak the protocol and never outlive the block."""

    async def test_ready_go_done(self, tmp_path: Path) -> None:
        """Two workers get ready, run after Go, report Done with their counts, exit 0."""
        specs = [null_spec(tmp_path, p, 2) for p in range(2)]
        async with LocalProcessExecutor().workers(specs) as handles:
            streams = [h.messages() for h in handles]
            for handle, stream in zip(handles, streams, strict=True):
                await next_message(handle, stream, Ready)
            start = time.perf_counter_ns() + 50_000_000
            for handle in handles:
                handle.send(Go(start))
            done = [await next_message(h, s, Done) for h, s in zip(handles, streams,
                                                                     strict=True)]
        assert [h.exit_code for h in handles] == [0, 0]
        assert all(isinstance(d, Done) and d.ops == 100 for d in done)
        for spec in specs:
            files = WorkerFiles.of(tmp_path, spec.stem, spec.process)
            assert len(files.ops.read_text().splitlines()) == 100

    async def test_leaving_the_block_stops_waiting_workers(self, tmp_path: Path) -> None:
        """A worker still waiting for Go when the block ends is stopped and reaped cleanly."""
        async with LocalProcessExecutor().workers([null_spec(tmp_path)]) as handles:
            await next_message(handles[0], handles[0].messages(), Ready)
        assert handles[0].exit_code == 0

    async def test_kill_and_failure_detail(self, tmp_path: Path) -> None:
        """A killed worker ends at once with a signal's exit code; the block still reaps it."""
        async with LocalProcessExecutor().workers([null_spec(tmp_path)]) as handles:
            await next_message(handles[0], handles[0].messages(), Ready)
            assert "pid" in handles[0].describe()
            handles[0].kill()
        assert handles[0].exit_code == -9
        assert handles[0].failure_detail() == ""


class TestRunWorker:
    """The worker is a function of its spec and a channel: no process needed."""

    async def test_in_process_channel(self, tmp_path: Path) -> None:
        """Messages in and out through plain callables; Stop after the run is harmless."""
        inbox: asyncio.Queue[ParentMessage | None] = asyncio.Queue()
        sent: list[WorkerMessage] = []

        async def messages() -> AsyncIterator[ParentMessage]:
            while (message := await inbox.get()) is not None:
                yield message

        def send(message: WorkerMessage) -> None:
            sent.append(message)
            if isinstance(message, Ready):
                inbox.put_nowait(Go(time.perf_counter_ns()))
            elif isinstance(message, Done):
                inbox.put_nowait(Stop())
                inbox.put_nowait(None)

        try:
            code = await run_worker(null_spec(tmp_path), messages(), send)
        finally:
            structlog.reset_defaults()  # run_worker configured this process's logging
        assert code == 0
        assert isinstance(sent[0], Ready) and sent[-1] == Done(200, 0)


class TestPlacement:
    """Where workers run, and which server addresses they can reach from there."""

    def test_local_reserve(self) -> None:
        """The local executor places every slot on this host."""
        async def reserve() -> Placement:
            async with LocalProcessExecutor().reserve(3) as placement:
                return placement

        placement = asyncio.run(reserve())
        assert placement.hosts == (socket.gethostname(),) and placement.nodes == ("local",)
        assert len(placement.slots) == 3

    @pytest.mark.parametrize(("url", "local"), [
        ("postgresql://u:p@127.0.0.1:5432/db", True),
        ("postgresql://u@127.0.0.2/db", True),
        ("redis://localhost:6379/0", True),
        ("redis://[::1]:6379/0", True),
        ("postgresql:///db?host=/var/run/postgresql", True),
        ("dbname=cache", True),
        ("unix:///tmp/valkey.sock", True),
        ("postgresql://u:p@db.example.internal:5432/db", False),
        ("rediss://cache.example.com:6379/0", False),
        ("host=10.1.2.3 dbname=cache", False),
    ])
    def test_local_only(self, url: str, local: bool) -> None:
        """Loopback addresses, localhost and Unix sockets are reachable from their host only."""
        assert local_only(url) is local

    def test_loopback_refused_across_hosts(self) -> None:
        """Workers on two hosts and a loopback DSN: refused, the variable named and why."""
        placement = Placement((Slot("n1", "here"), Slot("n2", "there")))
        endpoints = Endpoints("postgresql://u:secret@127.0.0.1:5432/db",
                              "redis://cache.example.com:6379/0",
                              "postgresql://u:secret@127.0.0.1:5432/db")
        problem = loopback_problem(endpoints, placement, parent_host="here")
        assert problem is not None
        assert "2 node(s) of 2 host(s) (here, there; this is here)" in problem
        assert "POSTGRES_DSN" in problem and "VALKEY_URL" not in problem.split("names")[0]

    def test_loopback_accepted_on_one_host(self) -> None:
        """Two nodes on the parent's own host (a local cluster) reach its loopback."""
        placement = Placement((Slot("n1", "here"), Slot("n2", "here")))
        endpoints = Endpoints("postgresql://u@127.0.0.1/db", "redis://127.0.0.1:1/0", "")
        assert loopback_problem(endpoints, placement, parent_host="here") is None

    def test_one_other_host_is_refused(self) -> None:
        """A single node on another host (a remote cluster) cannot reach this loopback."""
        placement = Placement((Slot("n1", "there"),))
        endpoints = Endpoints("", "redis://localhost:6379/0", "")
        problem = loopback_problem(endpoints, placement, parent_host="here")
        assert problem is not None and "VALKEY_URL" in problem

    def test_reachable_servers_accepted(self) -> None:
        """Servers every node can reach are fine anywhere."""
        placement = Placement((Slot("n1", "a"), Slot("n2", "b")))
        endpoints = Endpoints("postgresql://u@db.internal/db", "redis://vk.internal:6379/0",
                              "postgresql://u@db.internal/db")
        assert loopback_problem(endpoints, placement, parent_host="here") is None
