"""orchestrator.run.worker: a worker's phases, in order, and what a failure in each leaves.

The worker runs in this process against the session's real Valkey, through its in-process
network emulation, with the parent's side of the protocol played by a :class:`Channel`. What
"closed" means is checked from outside: the Valkey server no longer lists the worker's
client (it is named, so it can be told apart), the relay no longer accepts connections, and
this process holds no file of the worker open.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import structlog

from orchestrator.run.protocol import (
    Done,
    Failed,
    Go,
    ParentMessage,
    Ready,
    Stop,
    WorkerMessage,
    WorkerSpec,
)
from orchestrator.run.worker import Phase, Worker, run_worker
from orchestrator.workload.model import BackendSpec
from proxies import Endpoints

ALL = [Phase.CONNECT, Phase.READY, Phase.GO, Phase.RUN, Phase.DRAIN, Phase.CLOSE]


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # a worker configures this process's logging


class Channel:
    """The parent's side: what the worker sent, and what it is told. ``go`` answers Ready
    with Go at once; otherwise with Stop. ``broken`` is an error the channel raises at the
    first message the worker sends of that type (the parent's pipe is gone)."""

    def __init__(self, *, go: bool = True, broken: type[WorkerMessage] | None = None,
                 inbox_error: BaseException | None = None) -> None:
        self.sent: list[WorkerMessage] = []
        self.go = go
        self.broken = broken
        self.inbox_error = inbox_error
        self._inbox: asyncio.Queue[ParentMessage | None] = asyncio.Queue()

    async def messages(self) -> AsyncIterator[ParentMessage]:
        while (message := await self._inbox.get()) is not None:
            yield message
        if self.inbox_error is not None:
            raise self.inbox_error

    def send(self, message: WorkerMessage) -> None:
        if self.broken is not None and isinstance(message, self.broken):
            raise BrokenPipeError(32, "Broken pipe")
        self.sent.append(message)
        if isinstance(message, Ready):
            if self.inbox_error is not None:
                self._inbox.put_nowait(None)
            else:
                self._inbox.put_nowait(Go(time.perf_counter_ns()) if self.go else Stop())


def valkey_spec(tmp_path: Path, valkey_url: str, client_name: str, *,
                inprocess: bool = True, url: str | None = None) -> WorkerSpec:
    workload: dict[str, Any] = {
        "writers": 1, "readers": 1, "write_iterations": 20, "read_iterations": 20,
        "keyspace": 8, "backends": ["valkey"]}
    if inprocess:
        workload["network"] = {"mode": "inprocess", "latency_ms": 0.1}
    return WorkerSpec(run_id="r", backend=BackendSpec("valkey", "valkey",
                                                      {"client_name": client_name}),
                      repetition=1, process=0, processes=1, workload=workload,
                      endpoints=Endpoints("", url or valkey_url, ""),
                      network_mode="inprocess" if inprocess else "none",
                      log_dir=str(tmp_path))


def clients_named(valkey_url: str, name: str) -> int:
    """How many connections the Valkey server has from clients called ``name``."""
    with redis.Redis.from_url(valkey_url) as admin:
        return sum(1 for client in admin.client_list() if client.get("name") == name)


def open_files_under(path: Path) -> list[str]:
    """The files under ``path`` this process holds open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listdir's own descriptor)
        if target.startswith(str(path)):
            found.append(target)
    return found


def refuses(url: str) -> bool:
    """Whether nothing accepts connections at the URL's address any more."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=2):
            return False
    except OSError:
        return True


class FailingWorker(Worker):
    """A worker whose phase ``fail_in`` raises once it has done its work, so that everything
    that phase and the ones before opened is open; it checks that they are, first."""

    def __init__(self, *args: Any, fail_in: Phase, valkey_url: str, name: str,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_in = fail_in
        self.valkey_url = valkey_url
        self.name = name

    def _after(self, phase: Phase) -> None:
        if phase is self.fail_in:
            assert clients_named(self.valkey_url, self.name) >= 1  # connected, for real
            assert self.network is not None and not refuses(self.network.endpoints.valkey_url)
            raise RuntimeError(f"injected failure in {phase}")

    async def connect(self) -> None:
        await super().connect()
        self._after(Phase.CONNECT)

    def ready(self) -> None:
        super().ready()
        self._after(Phase.READY)

    async def go(self) -> int | None:
        start_ns = await super().go()
        self._after(Phase.GO)
        return start_ns

    async def run(self, start_ns: int) -> None:
        await super().run(start_ns)
        self._after(Phase.RUN)

    async def drain(self) -> None:
        await super().drain()
        self._after(Phase.DRAIN)


def assert_closed(worker: Worker, valkey_url: str, name: str, tmp_path: Path) -> None:
    assert clients_named(valkey_url, name) == 0
    if worker.network is not None:
        assert refuses(worker.network.endpoints.valkey_url)
    assert open_files_under(tmp_path) == []


def assert_reported(sent: list[WorkerMessage], error: str) -> None:
    """As the parent hears of a failure: Failed with the error's text, then Done, last."""
    failed = [m for m in sent if isinstance(m, Failed)]
    assert len(failed) == 1 and error in failed[0].error, sent
    assert isinstance(sent[-1], Done) and sent.index(failed[0]) < len(sent) - 1


class TestPhases:
    """connect, ready, go, run, drain, close: in this order, close always."""

    async def test_a_whole_run(self, tmp_path: Path, valkey_url: str) -> None:
        """Every phase in order; Ready first and Done last; the operations recorded; then
        nothing left open."""
        name = f"w-{uuid.uuid4().hex[:8]}"
        channel = Channel()
        worker = Worker(valkey_spec(tmp_path, valkey_url, name), channel.messages(),
                        channel.send)
        assert await worker.work() == 0
        assert worker.phases == ALL
        assert isinstance(channel.sent[0], Ready) and channel.sent[-1] == Done(40, 0)
        assert not any(isinstance(m, Failed) for m in channel.sent)
        assert len(worker.files[0].ops.read_text().splitlines()) == 40
        assert_closed(worker, valkey_url, name, tmp_path)

    async def test_stop_before_go(self, tmp_path: Path, valkey_url: str) -> None:
        """A Stop instead of Go skips run and drain: nothing measured, exit 0, closed."""
        name = f"w-{uuid.uuid4().hex[:8]}"
        channel = Channel(go=False)
        worker = Worker(valkey_spec(tmp_path, valkey_url, name), channel.messages(),
                        channel.send)
        assert await worker.work() == 0
        assert worker.phases == [Phase.CONNECT, Phase.READY, Phase.GO, Phase.CLOSE]
        assert channel.sent == [Ready(), Done(0, 0)]
        assert_closed(worker, valkey_url, name, tmp_path)

    @pytest.mark.parametrize("phase", ALL[:-1], ids=str)
    async def test_failure_in_each_phase(self, tmp_path: Path, valkey_url: str,
                                         phase: Phase) -> None:
        """A phase that fails ends the phases there: close runs next and closes the client,
        the relay and the files; the parent hears Failed, then Done; exit 1."""
        name = f"w-{uuid.uuid4().hex[:8]}"
        channel = Channel()
        worker = FailingWorker(valkey_spec(tmp_path, valkey_url, name), channel.messages(),
                               channel.send, fail_in=phase, valkey_url=valkey_url, name=name)
        assert await worker.work() == 1
        assert worker.phases == [*ALL[:ALL.index(phase) + 1], Phase.CLOSE]
        assert_reported(channel.sent, f"RuntimeError: injected failure in {phase}")
        assert_closed(worker, valkey_url, name, tmp_path)
        assert "worker_done" in worker.files[0].events.read_text()


class TestRealFailures:
    """Failures as they happen, each in its phase."""

    async def test_connect_refused(self, tmp_path: Path, valkey_url: str) -> None:
        """No server at the address: connect fails, the relay opened for it is closed, the
        parent hears why."""
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        name = f"w-{uuid.uuid4().hex[:8]}"
        channel = Channel()
        worker = Worker(valkey_spec(tmp_path, valkey_url, name,
                                    url=f"redis://127.0.0.1:{port}/0"),
                        channel.messages(), channel.send)
        assert await worker.work() == 1
        assert worker.phases == [Phase.CONNECT, Phase.CLOSE]
        assert_reported(channel.sent, "could not connect to Valkey")
        assert worker.network is not None
        assert_closed(worker, valkey_url, name, tmp_path)

    async def test_parent_gone_at_ready(self, tmp_path: Path, valkey_url: str) -> None:
        """Ready cannot be sent (the parent's pipe is broken): the worker fails in ready and
        closes its connected client."""
        name = f"w-{uuid.uuid4().hex[:8]}"
        channel = Channel(broken=Ready)
        worker = Worker(valkey_spec(tmp_path, valkey_url, name), channel.messages(),
                        channel.send)
        assert await worker.work() == 1
        assert worker.phases == [Phase.CONNECT, Phase.READY, Phase.CLOSE]
        assert_reported(channel.sent, "BrokenPipeError")
        assert_closed(worker, valkey_url, name, tmp_path)

    async def test_channel_breaks_while_waiting_for_go(self, tmp_path: Path,
                                                        valkey_url: str) -> None:
        """The parent's messages can no longer be read while the worker waits for Go: it
        fails in go, with the channel's error, instead of waiting for ever."""
        name = f"w-{uuid.uuid4().hex[:8]}"
        channel = Channel(inbox_error=ConnectionResetError(104, "Connection reset by peer"))
        worker = Worker(valkey_spec(tmp_path, valkey_url, name), channel.messages(),
                        channel.send)
        async with asyncio.timeout(30):
            assert await worker.work() == 1
        assert worker.phases == [Phase.CONNECT, Phase.READY, Phase.GO, Phase.CLOSE]
        assert_reported(channel.sent, "ConnectionResetError")
        assert_closed(worker, valkey_url, name, tmp_path)

    async def test_run_worker_is_the_worker(self, tmp_path: Path, valkey_url: str) -> None:
        """run_worker runs the same phases (what the executors call)."""
        name = f"w-{uuid.uuid4().hex[:8]}"
        channel = Channel()
        code = await run_worker(valkey_spec(tmp_path, valkey_url, name, inprocess=False),
                                channel.messages(), channel.send)
        assert code == 0 and channel.sent[-1] == Done(40, 0)
        assert clients_named(valkey_url, name) == 0
