"""A worker: one process running its application instances' share of the tasks for one pass.

A worker is a function of (workload, backend, slot, seed) that writes a log stream:
:func:`run_worker` takes a :class:`~orchestrator.run.protocol.WorkerSpec` and a channel to the
parent (messages in, messages out) and returns an exit code. It runs ``instances_per_process``
application instances (one by default), each with its own backend client and its own
:class:`~orchestrator.run.load.Load` of the tasks that fall to it. It connects them (through
in-process network emulation when asked, one relay per route shared by its instances), says
:class:`Ready`, waits for :class:`Go`, runs the loads, then drains: it keeps the backends open
and goes on recording invalidation arrivals until they have stopped coming. :class:`Stop`, the
end of its input (the parent is gone), SIGINT or SIGTERM stop it the same way: tasks finish
their operation in flight, the files are written, the backends are closed, :class:`Done` is
sent.

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
    ProtocolError,
    Ready,
    Stop,
    WorkerMessage,
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


async def run_worker(spec: WorkerSpec, inbox: AsyncIterator[ParentMessage],
                     send: Send, *, signals: bool = True) -> int:
    """Run one worker to completion; returns its exit code (0, or 1 when it failed).

    With ``signals``, SIGINT and SIGTERM stop it (the event loop must run in the main
    thread); an executor that runs it in another thread stops it with :class:`Stop`.
    """
    files = spec.files()
    events = BufferedStream(files[0].events)
    clock = worker_clock(spec.clock_skew_ns)
    configure_events(events, {"run_id": spec.run_id, "backend": spec.backend.name,
                              "repetition": spec.repetition, "process": spec.instances[0]},
                     clock)
    log = structlog.get_logger()
    workload = parse_workload(spec.workload, source="(worker)")
    endpoints = spec.endpoints
    go: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    loads: list[Load] = []
    stop_requested = False
    storage_error: OSError | None = None

    def request_stop(reason: str) -> None:
        nonlocal stop_requested
        if not stop_requested:
            stop_requested = True
            log.info("stop_requested", reason=reason)
        for load in loads:
            load.stop()
        if not go.done():
            go.set_result(-1)

    def storage_failed(exc: OSError) -> None:
        """A file of this worker cannot be written (e.g. the disk is full): what it measured
        from now on would be lost, so it stops; what is in its files stays."""
        nonlocal storage_error
        if storage_error is None:
            storage_error = exc
        request_stop("storage")

    async def listen() -> None:
        async for message in inbox:
            if isinstance(message, Go) and not go.done():
                go.set_result(message.start_ns)
            elif isinstance(message, Stop):
                request_stop("stop")
        request_stop("eof")

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM) if signals else ():
        loop.add_signal_handler(sig, request_stop, signal.Signals(sig).name)
    listener = asyncio.create_task(listen())
    network: InProcessNetwork | None = None
    origin: Origin | None = None
    instances = [_Instance(number, f, storage_failed)
                 for number, f in zip(spec.instances, files, strict=True)]
    progress: asyncio.Task[None] | None = None
    try:
        if spec.network_mode == "inprocess":
            net = workload.network
            network = InProcessNetwork(endpoints, latency_ms=net.latency_ms,
                                       jitter_ms=net.jitter_ms,
                                       seed=workload.seed * 1000 + spec.process,
                                       routes=TYPES[spec.backend.type].routes)
            await network.__aenter__()
            endpoints = network.endpoints
            log.info("network", **network.describe())
        plans = [task_plan(workload, number, spec.instance_count) for number in spec.instances]
        if workload.read_op == "get_or_set":
            # The origin is reached as the parent gave it, outside the in-process emulation;
            # it stands for the database behind the cache, shared by the worker's instances.
            origin = Origin(workload.loader, spec.endpoints.postgres_dsn,
                            max_connections=sum(1 for plan in plans for kind, _ in plan
                                                if kind == "read"))
        for instance in instances:
            loads.append(instance.start(spec, workload, endpoints, origin, clock, log))
        if stop_requested:
            request_stop("stop")
        for instance in instances:
            assert instance.backend is not None
            await instance.backend.connect()
        log.info("ready", tasks=sum(len(plan) for plan in plans),
                 instances=list(spec.instances), event_loop=type(loop).__module__)
        send(Ready())
        start_ns = await go
        if start_ns >= 0 and not stop_requested:
            progress = asyncio.create_task(_report_progress(instances, events, send))
            await asyncio.gather(*(load.run(start_ns) for load in loads))
            drain_start = clock()
            while not stop_requested:
                now = clock()
                last_arrival_ns = max(instance.last_arrival_ns for instance in instances)
                if (now - max(last_arrival_ns, drain_start) >= _QUIET_S * 1e9
                        or now - drain_start >= _DRAIN_MAX_S * 1e9):
                    break
                await asyncio.sleep(0.05)
            log.info("drained", arrivals=sum(i.arrivals.count for i in instances),
                     seconds=round((clock() - drain_start) / 1e9, 3))
        for instance in instances:
            if instance.backend is not None:
                log.info("stats", process=instance.number,
                         backend_stats=dict(instance.backend.stats()))
        events.sync()
        storage_error = storage_error or events.error
        return 0 if storage_error is None else 1
    except Exception as exc:
        log.error("worker_failed", error=error_text(exc), exc_info=True)
        send(Failed(error_text(exc)))
        with contextlib.suppress(OSError):  # the message above said it already
            sys.stderr.write(f"worker {spec.process}: {error_text(exc)}\n")
        return 1
    finally:
        if progress is not None:
            progress.cancel()
        for instance in instances:
            instance.recorder.close()
        count = sum(instance.recorder.count for instance in instances)
        errors = sum(instance.errors for instance in instances)
        await asyncio.gather(*(_close(instance.backend.close(), _CLOSE_TIMEOUT_S)
                               for instance in instances if instance.backend is not None))
        if origin is not None:
            await _close(origin.close(), _CLOSE_TIMEOUT_S)
        if network is not None:
            await _close(network.close(), _CLOSE_TIMEOUT_S)
        for instance in instances:
            instance.arrivals.close()
        if storage_error is not None:
            flushed = sum(instance.recorder.flushed for instance in instances)
            lost = sum(instance.recorder.lost for instance in instances)
            log.error("worker_failed", error=error_text(storage_error), lost_ops=lost)
            send(Failed(f"could not write {storage_error.filename}: "
                        f"{storage_error.strerror or storage_error}; the "
                        f"{flushed:,} operations written before are kept, "
                        f"{lost:,} measured after are lost"))
        times = os.times()
        log.info("worker_done", ops=count, errors=errors, stopped=stop_requested,
                 cpu_s=round(times.user + times.system, 3))
        send(Done(count, errors))
        listener.cancel()
        events.close()


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
        except ProtocolError:
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
