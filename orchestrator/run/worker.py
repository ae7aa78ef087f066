"""A worker: one process running its application instances' share of the tasks for one pass.

A worker is a function of (workload, backend, slot, seed) that writes a log stream:
:func:`run_worker` takes a :class:`~orchestrator.run.protocol.WorkerSpec` and a channel to the
parent (messages in, messages out) and returns an exit code. It runs ``instances_per_process``
application instances (one by default), each with its own backend client and its own
:class:`~orchestrator.run.load.Load` of the tasks that fall to it, through the phases of a
:class:`Worker` (:class:`Phase`): **connect** them (through in-process network emulation when
asked, one relay per route shared by its instances), say **ready**, wait for **go**, **run**
the loads, **drain** (keep the backends open and go on recording invalidation arrivals until
they have stopped coming), **close**. :class:`Stop`, the end of its input (the parent is gone),
SIGINT or SIGTERM stop it the same way: tasks finish their operation in flight, the files are
written, the backends are closed, :class:`Done` is sent. A phase that fails goes straight to
close, which closes what was opened, after :class:`Failed` says why.

Each instance's operations go to ``<stem>.ops.csv`` and its invalidation arrivals to
``<stem>.invalidations.csv``, ``<stem>`` naming the instance; the worker's events go to the
first instance's ``<stem>.events.jsonl`` (:mod:`orchestrator.results.logs`). Nothing here
knows how the worker was started: :func:`main` is the local executor's entry point,
``python -m orchestrator.run.worker SPEC.json``, with the protocol on stdin/stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from orchestrator.backends.base import Backend
from orchestrator.backends.registry import TYPES, create_backend
from orchestrator.results.logs import (
    BufferedStream,
    CsvRecorder,
    WorkerFiles,
    configure_events,
    csv_field,
    needs_quoting,
)
from orchestrator.run.load import Load, error_text, task_plan, worker_clock
from orchestrator.run.origin import Origin
from orchestrator.run.pacer import Clock
from orchestrator.run.protocol import (
    Done,
    Failed,
    Go,
    ParentMessage,
    Progress,
    Ready,
    Stop,
    WorkerMessage,
    WorkerProtocolError,
    WorkerSpec,
    decode,
    encode,
)
from orchestrator.workload.model import Workload
from orchestrator.workload.validation import parse_workload
from proxies import Endpoints, InProcessNetwork

_PROGRESS_INTERVAL_S = 0.25
_CLOSE_TIMEOUT_S = 2.0
# After its tasks finish, a worker keeps its backend open (and keeps recording invalidation
# arrivals) until none arrived for _QUIET_S, at most _DRAIN_MAX_S: the other workers may still
# be writing, and the last notifications arrive after the last write returned.
_QUIET_S = 0.25
_DRAIN_MAX_S = 10.0

Send = Callable[[WorkerMessage], None]


async def _close(what: Awaitable[Any], seconds: float) -> None:
    """Close a backend or relay, bounded in time. Its data is already written (the recorder is
    closed first), so whatever the close raises or however long it hangs loses nothing."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(what, seconds)


class _Instance:
    """One application instance of the worker: its own backend client, the load of its share
    of the tasks, and its own files (operations, invalidation arrivals)."""

    def __init__(self, number: int, files: WorkerFiles,
                 on_error: Callable[[OSError], None]) -> None:
        self.number = number
        self.recorder = CsvRecorder(files.ops, on_error=on_error)
        self.arrivals = CsvRecorder(files.invalidations, on_error=on_error)
        self.backend: Backend | None = None
        self.load: Load | None = None
        self.last_arrival_ns = 0

    def start(self, spec: WorkerSpec, workload: Workload, endpoints: Endpoints,
              origin: Origin | None, clock: Clock, log: Any) -> Load:
        """Create the instance's backend client (unconnected) and its load."""
        backend = self.backend = create_backend(spec.backend.name, spec.backend.type,
                                                spec.backend.options, endpoints)
        self.load = Load(workload, self.number, spec.instance_count, backend, self.recorder,
                         origin, clock)
        add_arrival = self.arrivals.rows.append
        quoted = needs_quoting(workload.key_prefix)
        wall_ns = time.time_ns
        number = self.number
        skew = spec.clock_skew_ns

        def on_invalidation(key: str | None, version: int | None, ts_ns: int) -> None:
            ts_ns += skew  # the backend stamps with perf_counter_ns: onto this worker's clock
            self.last_arrival_ns = ts_ns
            if key is None:
                log.info("local_flush", ts_ns=ts_ns, process=number)
            else:
                add_arrival(f"{csv_field(key) if quoted else key},"
                            f"{'' if version is None else version},{ts_ns},{wall_ns()}\n")

        backend.set_invalidation_hook(on_invalidation)
        return self.load

    @property
    def errors(self) -> int:
        return self.load.errors if self.load is not None else 0

    def flush(self) -> None:
        self.recorder.flush()
        self.arrivals.flush()


class Phase(StrEnum):
    """A worker's phases, in order; a worker that stops or fails skips to :attr:`CLOSE`."""

    CONNECT = "connect"  # emulated network, origin, backend clients: created and connected
    READY = "ready"  # Ready sent to the parent
    GO = "go"  # waiting for Go (or Stop)
    RUN = "run"  # the loads: warm-up, then measurement
    DRAIN = "drain"  # invalidation arrivals recorded until they stop coming
    CLOSE = "close"  # files written, everything opened closed, Done sent


class Worker:
    """One worker through its phases (:class:`Phase`): :meth:`work` runs :meth:`connect`,
    :meth:`ready`, :meth:`go`, then, unless a stop came first, :meth:`run` and :meth:`drain`,
    and always :meth:`close`, which closes whatever the phases before it opened. A phase that
    fails is reported to the parent (:class:`Failed`, then :class:`Done`) and the exit code
    is 1. Messages from the parent, signals and a storage failure may come in any phase: they
    stop the loads (or the wait for Go) where they are.
    """

    def __init__(self, spec: WorkerSpec, inbox: AsyncIterator[ParentMessage], send: Send, *,
                 signals: bool = True) -> None:
        self.spec = spec
        self.files = spec.files()
        self.events = BufferedStream(self.files[0].events)
        self.clock = worker_clock(spec.clock_skew_ns)
        configure_events(self.events, {"run_id": spec.run_id, "backend": spec.backend.name,
                                       "repetition": spec.repetition,
                                       "process": spec.instances[0]}, self.clock)
        self.log = structlog.get_logger()
        self.workload = parse_workload(spec.workload, source="(worker)")
        self.phase: Phase | None = None
        self.phases: list[Phase] = []  # every phase entered, in order
        self.stop_requested = False
        self.storage_error: OSError | None = None
        self.instances: list[_Instance] = []
        self.loads: list[Load] = []
        self.network: InProcessNetwork | None = None
        self.origin: Origin | None = None
        self._inbox = inbox
        self._send = send
        self._signals = signals
        self._loop = asyncio.get_running_loop()
        self._go: asyncio.Future[int] = self._loop.create_future()
        self._plans: list[list[tuple[str, int]]] = []
        self._listener: asyncio.Task[None] | None = None
        self._progress: asyncio.Task[None] | None = None

    async def work(self) -> int:
        """Run every phase; the exit code (0, or 1 when the worker failed)."""
        for sig in (signal.SIGINT, signal.SIGTERM) if self._signals else ():
            self._loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        self._listener = asyncio.create_task(self._listen())
        self.instances = [_Instance(number, f, self._storage_failed)
                          for number, f in zip(self.spec.instances, self.files, strict=True)]
        try:
            await self.connect()
            self.ready()
            start_ns = await self.go()
            if start_ns is not None:
                await self.run(start_ns)
                await self.drain()
            return self._finish()
        except Exception as exc:
            self._fail(exc)
            return 1
        finally:
            await self.close()

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self.phases.append(phase)

    # -- what may come at any time -------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Stop: the loads finish their operations in flight; a wait for Go ends."""
        if not self.stop_requested:
            self.stop_requested = True
            self.log.info("stop_requested", reason=reason)
        for load in self.loads:
            load.stop()
        if not self._go.done():
            self._go.set_result(-1)

    def _storage_failed(self, exc: OSError) -> None:
        """A file of this worker cannot be written (e.g. the disk is full): what it measured
        from now on would be lost, so it stops; what is in its files stays."""
        if self.storage_error is None:
            self.storage_error = exc
        self.request_stop("storage")

    async def _listen(self) -> None:
        try:
            async for message in self._inbox:
                if isinstance(message, Go) and not self._go.done():
                    self._go.set_result(message.start_ns)
                elif isinstance(message, Stop):
                    self.request_stop("stop")
        except Exception as exc:
            # The parent can no longer be heard: a worker waiting for Go fails with why (it
            # would wait for ever); a running one stops, as when the parent is gone.
            if not self._go.done():
                self._go.set_exception(exc)
            self.request_stop("channel")
            return
        self.request_stop("eof")

    # -- the phases ------------------------------------------------------------------------------
    async def connect(self) -> None:
        """The emulated network (when the worker emulates it), the origin (``get_or_set``),
        each instance's backend client and load; the clients connected."""
        self._enter(Phase.CONNECT)
        spec, workload = self.spec, self.workload
        endpoints = spec.endpoints
        if spec.network_mode == "inprocess":
            net = workload.network
            network = self.network = InProcessNetwork(
                endpoints, latency_ms=net.latency_ms, jitter_ms=net.jitter_ms,
                seed=workload.seed * 1000 + spec.process,
                routes=TYPES[spec.backend.type].routes)
            await network.__aenter__()
            endpoints = network.endpoints
            self.log.info("network", **network.describe())
        plans = self._plans = [task_plan(workload, number, spec.instance_count)
                               for number in spec.instances]
        if workload.read_op == "get_or_set":
            # The origin is reached as the parent gave it, outside the in-process emulation;
            # it stands for the database behind the cache, shared by the worker's instances.
            self.origin = Origin(workload.loader, spec.endpoints.postgres_dsn,
                                 max_connections=sum(1 for plan in plans for kind, _ in plan
                                                     if kind == "read"))
        for instance in self.instances:
            self.loads.append(instance.start(spec, workload, endpoints, self.origin,
                                             self.clock, self.log))
        if self.stop_requested:  # before the loads existed: stop them too
            self.request_stop("stop")
        for instance in self.instances:
            assert instance.backend is not None
            await instance.backend.connect()

    def ready(self) -> None:
        """Tell the parent the worker is connected."""
        self._enter(Phase.READY)
        self.log.info("ready", tasks=sum(len(plan) for plan in self._plans),
                      instances=list(self.spec.instances),
                      event_loop=type(self._loop).__module__)
        self._send(Ready())

    async def go(self) -> int | None:
        """Wait for Go: its start time, or None when a stop came first."""
        self._enter(Phase.GO)
        start_ns = await self._go
        return start_ns if start_ns >= 0 and not self.stop_requested else None

    async def run(self, start_ns: int) -> None:
        """Run every instance's load from ``start_ns``, reporting progress meanwhile."""
        self._enter(Phase.RUN)
        self._progress = asyncio.create_task(
            _report_progress(self.instances, self.events, self._send))
        await asyncio.gather(*(load.run(start_ns) for load in self.loads))

    async def drain(self) -> None:
        """Keep the backends open, recording invalidation arrivals, until none came for
        ``_QUIET_S`` (at most ``_DRAIN_MAX_S``, or until a stop)."""
        self._enter(Phase.DRAIN)
        clock, instances = self.clock, self.instances
        drain_start = clock()
        while not self.stop_requested:
            now = clock()
            last_arrival_ns = max(instance.last_arrival_ns for instance in instances)
            if (now - max(last_arrival_ns, drain_start) >= _QUIET_S * 1e9
                    or now - drain_start >= _DRAIN_MAX_S * 1e9):
                break
            await asyncio.sleep(0.05)
        self.log.info("drained", arrivals=sum(i.arrivals.count for i in instances),
                      seconds=round((clock() - drain_start) / 1e9, 3))

    def _finish(self) -> int:
        """After the last phase before closing: the clients' stats; the exit code."""
        for instance in self.instances:
            if instance.backend is not None:
                self.log.info("stats", process=instance.number,
                              backend_stats=dict(instance.backend.stats()))
        self.events.sync()
        self.storage_error = self.storage_error or self.events.error
        return 0 if self.storage_error is None else 1

    def _fail(self, exc: Exception) -> None:
        self.log.error("worker_failed", error=error_text(exc), phase=str(self.phase),
                       exc_info=True)
        self._send(Failed(error_text(exc)))
        with contextlib.suppress(OSError):  # the message above said it already
            sys.stderr.write(f"worker {self.spec.process}: {error_text(exc)}\n")

    async def close(self) -> None:
        """Write the files and close what the phases opened (each close bounded in time),
        say why the storage failed if it did, then :class:`Done`."""
        self._enter(Phase.CLOSE)
        instances, log = self.instances, self.log
        if self._progress is not None:
            self._progress.cancel()
        for instance in instances:
            instance.recorder.close()
        count = sum(instance.recorder.count for instance in instances)
        errors = sum(instance.errors for instance in instances)
        await asyncio.gather(*(_close(instance.backend.close(), _CLOSE_TIMEOUT_S)
                               for instance in instances if instance.backend is not None))
        if self.origin is not None:
            await _close(self.origin.close(), _CLOSE_TIMEOUT_S)
        if self.network is not None:
            await _close(self.network.close(), _CLOSE_TIMEOUT_S)
        for instance in instances:
            instance.arrivals.close()
        storage_error = self.storage_error
        if storage_error is not None:
            flushed = sum(instance.recorder.flushed for instance in instances)
            lost = sum(instance.recorder.lost for instance in instances)
            log.error("worker_failed", error=error_text(storage_error), lost_ops=lost)
            self._send(Failed(f"could not write {storage_error.filename}: "
                              f"{storage_error.strerror or storage_error}; the "
                              f"{flushed:,} operations written before are kept, "
                              f"{lost:,} measured after are lost"))
        times = os.times()
        log.info("worker_done", ops=count, errors=errors, stopped=self.stop_requested,
                 cpu_s=round(times.user + times.system, 3))
        self._send(Done(count, errors))
        if self._listener is not None:
            self._listener.cancel()
        if self._go.done() and not self._go.cancelled():
            self._go.exception()  # a channel error no phase awaited: it was logged as a stop
        self.events.close()


async def run_worker(spec: WorkerSpec, inbox: AsyncIterator[ParentMessage],
                     send: Send, *, signals: bool = True) -> int:
    """Run one worker to completion (:class:`Worker`); returns its exit code (0, or 1 when it
    failed).

    With ``signals``, SIGINT and SIGTERM stop it (the event loop must run in the main
    thread); an executor that runs it in another thread stops it with :class:`Stop`.
    """
    return await Worker(spec, inbox, send, signals=signals).work()


async def _report_progress(instances: Sequence[_Instance], events: BufferedStream,
                           send: Send) -> None:
    while True:
        await asyncio.sleep(_PROGRESS_INTERVAL_S)
        for instance in instances:
            instance.flush()
        events.sync()
        send(Progress(sum(i.recorder.count for i in instances),
                      sum(i.errors for i in instances)))


# -- the local executor's entry point: the protocol on stdin/stdout ---------------------------

def _send_stdout(message: WorkerMessage) -> None:
    sys.stdout.buffer.write(encode(message))
    sys.stdout.buffer.flush()


async def _stdin_messages() -> AsyncIterator[ParentMessage]:
    """The parent's messages from stdin, until it closes (the parent stopped or died)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        try:
            message = decode(line)
        except WorkerProtocolError:
            continue
        if isinstance(message, Go | Stop):
            yield message


def _first_line(fd: int) -> bytes:
    """One line of ``fd``, read a byte at a time: nothing after it is consumed, so the
    protocol's messages stay for the event loop's reader."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return bytes(line)


def main(argv: list[str] | None = None) -> int:
    """``python -m orchestrator.run.worker SPEC.json``, or ``-``: the spec is the first line of
    stdin (how the local executor passes it, so that passwords never touch the disk)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m orchestrator.run.worker SPEC.json|-\n")
        return 2
    text = _first_line(sys.stdin.fileno()).decode() if args[0] == "-" else \
        Path(args[0]).read_text()
    spec = WorkerSpec.from_json(text)
    run: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    if not needs_standard_loop(spec):
        try:
            import uvloop  # optional: the faster event loop where it is installed

            run = uvloop.run
        except ImportError:
            pass
    return run(run_worker(spec, _stdin_messages(), _send_stdout))


def needs_standard_loop(spec: WorkerSpec) -> bool:
    """Whether the worker must run on asyncio's own event loop rather than uvloop: pgcache's
    shared listener connects to its relay's abstract Unix socket with
    ``asyncio.open_unix_connection(path)``, which uvloop (0.23) refuses with EINVAL."""
    return spec.backend.type == "pgcache" and bool(spec.backend.options.get("shared_listener"))


if __name__ == "__main__":
    sys.exit(main())
