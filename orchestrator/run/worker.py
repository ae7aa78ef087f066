"""A worker: one application instance running its share of the workload's tasks for one pass.

A worker is a function of (workload, backend, slot, seed) that writes a log stream:
:func:`run_worker` takes a :class:`~orchestrator.run.protocol.WorkerSpec` and a channel to the
parent (messages in, messages out) and returns an exit code. It connects its backend (through
in-process network emulation when asked), says :class:`Ready`, waits for :class:`Go`, runs its
:class:`~orchestrator.run.load.Load`, then drains: it keeps the backend open and goes on
recording invalidation arrivals until they have stopped coming. :class:`Stop`, the end of its
input (the parent is gone), SIGINT or SIGTERM stop it the same way: tasks finish their
operation in flight, the files are written, the backend is closed, :class:`Done` is sent.

Operations go to ``<stem>.ops.csv``, invalidation arrivals to ``<stem>.invalidations.csv`` and
events to ``<stem>.events.jsonl`` in the spec's log directory (:mod:`orchestrator.results.logs`).
Nothing here knows how the worker was started: :func:`main` is the local executor's entry
point, ``python -m orchestrator.run.worker SPEC.json``, with the protocol on stdin/stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
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
from orchestrator.workload.validation import parse_workload
from proxies import InProcessNetwork

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


async def run_worker(spec: WorkerSpec, inbox: AsyncIterator[ParentMessage],
                     send: Send, *, signals: bool = True) -> int:
    """Run one worker to completion; returns its exit code (0, or 1 when it failed).

    With ``signals``, SIGINT and SIGTERM stop it (the event loop must run in the main
    thread); an executor that runs it in another thread stops it with :class:`Stop`.
    """
    files = WorkerFiles.of(Path(spec.log_dir), spec.stem, spec.process)
    events = BufferedStream(files.events)
    clock = worker_clock(spec.clock_skew_ns)
    skew = spec.clock_skew_ns
    configure_events(events, {"run_id": spec.run_id, "backend": spec.backend.name,
                              "repetition": spec.repetition, "process": spec.process},
                     clock)
    log = structlog.get_logger()
    workload = parse_workload(spec.workload, source="(worker)")
    endpoints = spec.endpoints
    go: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    load: Load | None = None
    stop_requested = False
    storage_error: OSError | None = None

    def request_stop(reason: str) -> None:
        nonlocal stop_requested
        if not stop_requested:
            stop_requested = True
            log.info("stop_requested", reason=reason)
        if load is not None:
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
    backend: Backend | None = None
    origin: Origin | None = None
    recorder = CsvRecorder(files.ops, on_error=storage_failed)
    arrivals = CsvRecorder(files.invalidations, on_error=storage_failed)
    last_arrival_ns = 0
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
        backend = create_backend(spec.backend.name, spec.backend.type, spec.backend.options,
                                 endpoints)
        if workload.read_op == "get_or_set":
            # The origin is reached as the parent gave it, outside the in-process emulation.
            origin = Origin(workload.loader, spec.endpoints.postgres_dsn,
                            max_connections=sum(1 for kind, _ in task_plan(
                                workload, spec.process, spec.processes) if kind == "read"))
        load = Load(workload, spec.process, spec.processes, backend, recorder, origin, clock)
        if stop_requested:
            load.stop()

        add_arrival = arrivals.rows.append
        quoted = needs_quoting(workload.key_prefix)
        wall_ns = time.time_ns

        def on_invalidation(key: str | None, version: int | None, ts_ns: int) -> None:
            nonlocal last_arrival_ns
            ts_ns += skew  # the backend stamps with perf_counter_ns: onto this worker's clock
            last_arrival_ns = ts_ns
            if key is None:
                log.info("local_flush", ts_ns=ts_ns)
            else:
                add_arrival(f"{csv_field(key) if quoted else key},"
                            f"{'' if version is None else version},{ts_ns},{wall_ns()}\n")

        backend.set_invalidation_hook(on_invalidation)
        await backend.connect()
        log.info("ready", tasks=len(task_plan(workload, spec.process, spec.processes)))
        send(Ready())
        start_ns = await go
        if start_ns >= 0 and not load.stopping:
            progress = asyncio.create_task(_report_progress(load, events, arrivals, send))
            await load.run(start_ns)
            drain_start = clock()
            while not load.stopping:
                now = clock()
                if (now - max(last_arrival_ns, drain_start) >= _QUIET_S * 1e9
                        or now - drain_start >= _DRAIN_MAX_S * 1e9):
                    break
                await asyncio.sleep(0.05)
            log.info("drained", arrivals=arrivals.count,
                     seconds=round((clock() - drain_start) / 1e9, 3))
        log.info("stats", backend_stats=dict(backend.stats()))
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
        recorder.close()
        count = recorder.count
        errors = load.errors if load is not None else 0
        if backend is not None:
            await _close(backend.close(), _CLOSE_TIMEOUT_S)
        if origin is not None:
            await _close(origin.close(), _CLOSE_TIMEOUT_S)
        if network is not None:
            await _close(network.close(), _CLOSE_TIMEOUT_S)
        arrivals.close()
        if storage_error is not None:
            log.error("worker_failed", error=error_text(storage_error), lost_ops=recorder.lost)
            send(Failed(f"could not write {storage_error.filename}: "
                        f"{storage_error.strerror or storage_error}; the "
                        f"{recorder.flushed:,} operations written before are kept, "
                        f"{recorder.lost:,} measured after are lost"))
        times = os.times()
        log.info("worker_done", ops=count, errors=errors, stopped=stop_requested,
                 cpu_s=round(times.user + times.system, 3))
        send(Done(count, errors))
        listener.cancel()
        events.close()


async def _report_progress(load: Load, events: BufferedStream, arrivals: CsvRecorder,
                           send: Send) -> None:
    while True:
        await asyncio.sleep(_PROGRESS_INTERVAL_S)
        load.recorder.flush()
        arrivals.flush()
        events.sync()
        send(Progress(load.recorder.count, load.errors))


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
    try:
        import uvloop  # optional: the faster event loop where it is installed

        run = uvloop.run
    except ImportError:
        pass
    return run(run_worker(spec, _stdin_messages(), _send_stdout))


if __name__ == "__main__":
    sys.exit(main())
