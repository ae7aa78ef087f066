"""A worker process: one application instance running its share of the workload's tasks.

A worker is a function of (workload, backend, slot, seed) that writes a log stream: it is
started as ``python -m orchestrator.worker SPEC.json`` and talks to the parent over its standard
streams, one JSON object per line:

  worker -> parent (stdout): {"type": "ready"}, {"type": "progress", "ops", "errors"},
                             {"type": "done", "ops", "errors"}
  parent -> worker (stdin):  {"type": "go", "start_ns": N}  (the start barrier), {"type": "stop"}

End of input (the parent died), SIGINT or SIGTERM stop the worker the same way as "stop":
tasks finish their operation in flight, the buffers are written, the backend is closed.
Operations go to ``<log_dir>/<stem>.ops.csv``, invalidation arrivals to
``<log_dir>/<stem>.invalidations.csv`` and events to ``<log_dir>/<stem>.events.jsonl`` (see
:mod:`orchestrator.recorder`). After its tasks finish, the worker drains: it keeps the backend
open and goes on recording invalidation arrivals until they have stopped coming. Nothing here
knows how it was spawned, so another executor (e.g. a distributed one) can run the same
function.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from orchestrator.backends import Backend, Endpoints, create_backend
from orchestrator.keys import key_picker, task_rng, value_maker, zipf_cdf
from orchestrator.recorder import (
    BufferedStream,
    OpRecorder,
    configure_events,
    csv_field,
    csv_row,
    invalidations_path,
    needs_quoting,
)
from orchestrator.validation import parse_workload
from orchestrator.workload import Workload

_PROGRESS_INTERVAL_S = 0.25
_DRAIN_TIMEOUT_S = 2.0
# After its tasks finish, a worker keeps its backend open (and keeps recording invalidation
# arrivals) until none arrived for _QUIET_S, at most _DRAIN_MAX_S: the other workers may still
# be writing, and the last notifications arrive after the last write returned.
_QUIET_S = 0.25
_DRAIN_MAX_S = 10.0
_ERROR_PAUSE_S = 0.001
# A task that has not suspended for this long yields to the others (operations that complete
# without I/O, such as local-cache hits, never suspend by themselves): this bounds how long
# other tasks, timers and incoming notifications wait for the event loop.
_SLICE_NS = 50_000
# The network routes each backend type uses (others get no relay).
_ALL_ROUTES = ("postgres", "postgres-listener", "valkey")
_ROUTES = {"pgcache": ("postgres", "postgres-listener"), "valkey": ("valkey",),
           "valkey-client-cache": ("valkey",), "null": ()}


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything one worker needs; JSON-serialisable."""

    run_id: str
    backend: str
    backend_type: str
    backend_options: dict[str, Any]
    repetition: int
    process: int
    processes: int
    workload: dict[str, Any]
    endpoints: dict[str, str]
    network_mode: str  # what the worker itself does: "none" or "inprocess"
    log_dir: str

    @property
    def stem(self) -> str:
        return f"{self.backend}.r{self.repetition}.p{self.process}"

    def to_json(self) -> str:
        from dataclasses import asdict

        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        return cls(**json.loads(text))


def task_plan(workload: Workload, process: int, processes: int) -> list[tuple[str, int]]:
    """This process's tasks: ("write"|"read", global task id). Writers first, then readers."""
    plan = [("write", t) for t in range(workload.writers) if t % processes == process]
    plan += [("read", workload.writers + r) for r in range(workload.readers)
             if r % processes == process]
    return plan


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:300]


class _Phase:
    """One phase (warm-up or measurement) shared by every task of the worker."""

    def __init__(self, start_ns: int, until_ns: int | None, record: bool, purpose: str) -> None:
        self.start_ns = start_ns
        self.until_ns = until_ns
        self.record = record
        self.purpose = purpose


class Worker:
    """Runs the tasks of one process against one backend instance."""

    def __init__(self, spec: WorkerSpec, workload: Workload, backend: Backend,
                 recorder: OpRecorder) -> None:
        self.spec = spec
        self.workload = workload
        self.backend = backend
        self.recorder = recorder
        self.stopping = False
        self.errors = 0
        self.log = structlog.get_logger()
        self._cdf = (zipf_cdf(workload.keyspace, workload.key_distribution.theta)
                     if workload.key_distribution.kind == "zipfian" else None)
        self._seq: dict[int, int] = {}
        # Generated keys are prefix + digits: only the prefix can need CSV quoting.
        self._quoted = needs_quoting(workload.key_prefix)

    def stop(self) -> None:
        self.stopping = True

    def _picker(self, task: int, purpose: str) -> Callable[[], str]:
        w = self.workload
        return key_picker(w.key_distribution, w.keyspace, w.key_prefix,
                          task_rng(w.seed, task, f"keys:{purpose}"), self._cdf)

    def _interval_ns(self, kind: str) -> int:
        w = self.workload
        rate = w.target_rate.writes if kind == "write" else w.target_rate.reads
        tasks = w.writers if kind == "write" else w.readers
        return int(tasks / rate * 1e9) if rate else 0

    def _think_s(self, kind: str) -> float:
        think = (self.workload.think_time_ms.writes if kind == "write"
                 else self.workload.think_time_ms.reads)
        return (think or 0.0) / 1000.0

    async def run_task(self, kind: str, task: int, phase: _Phase, count: int | None) -> None:
        if kind == "read":
            await self._reader(task, phase, count)
        else:
            await self._writer(task, phase, count)

    async def _reader(self, task: int, phase: _Phase, count: int | None) -> None:
        get = self.backend.get
        pick = self._picker(task, phase.purpose)
        quoted, quote = self._quoted, csv_field
        clock = time.perf_counter_ns
        recorder = self.recorder
        rows = recorder.rows
        append = rows.append
        flush_at = recorder.flush_at
        record = phase.record
        until = phase.until_ns
        interval = self._interval_ns("read")
        think = self._think_s("read")
        sleep = asyncio.sleep
        intended = phase.start_ns
        last_yield = clock()
        i = 0
        while not self.stopping and (count is None or i < count):
            key = pick()
            if interval:
                now = clock()
                if now < intended:
                    await sleep((intended - now) / 1e9)
                t0 = intended
                intended += interval
            else:
                t0 = clock()
            if until is not None and t0 >= until:
                break
            try:
                result = await get(key)
            except Exception as exc:  # recorded, the task goes on
                t1 = clock()
                self.errors += 1
                if record:
                    append(csv_row(task, "get", key, t0, t1 - t0, error=_error_text(exc)))
                await sleep(_ERROR_PAUSE_S)
            else:
                t1 = clock()
                if record:
                    field = quote(key) if quoted else key
                    value = result.value
                    if value is None:
                        append(f"{task},get,{field},{t0},{t1 - t0},0,0,,,\n")
                    else:
                        append(f"{task},get,{field},{t0},{t1 - t0},1,"
                               f"{1 if result.local else 0},"
                               f"{value[:value.find(b'|')].decode()},,\n")
                    if len(rows) >= flush_at:
                        recorder.flush()
            i += 1
            if think:
                await sleep(think)
            elif t1 - last_yield > _SLICE_NS:
                await sleep(0)
                last_yield = t1

    async def _writer(self, task: int, phase: _Phase, count: int | None) -> None:
        w = self.workload
        backend = self.backend
        set_, delete = backend.set, backend.delete
        pick = self._picker(task, phase.purpose)
        quoted, quote = self._quoted, csv_field
        value_rng = task_rng(w.seed, task, f"values:{phase.purpose}")
        make_value = value_maker(w.value_size_min, w.value_size_max, value_rng)
        delete_ratio = w.delete_ratio
        rand = value_rng.random
        ttl = w.ttl_s
        prefix = f"{self.spec.process}:{task}:"
        seq = self._seq.get(task, 0)
        clock = time.perf_counter_ns
        recorder = self.recorder
        rows = recorder.rows
        append = rows.append
        flush_at = recorder.flush_at
        record = phase.record
        until = phase.until_ns
        interval = self._interval_ns("write")
        think = self._think_s("write")
        sleep = asyncio.sleep
        intended = phase.start_ns
        last_yield = clock()
        i = 0
        try:
            while not self.stopping and (count is None or i < count):
                key = pick()
                seq += 1
                write_id = f"{prefix}{seq}"
                is_delete = delete_ratio and rand() < delete_ratio
                value = b"" if is_delete else make_value(write_id)
                if interval:
                    now = clock()
                    if now < intended:
                        await sleep((intended - now) / 1e9)
                    t0 = intended
                    intended += interval
                else:
                    t0 = clock()
                if until is not None and t0 >= until:
                    break
                op = "delete" if is_delete else "set"
                try:
                    if is_delete:
                        await delete(key)
                        version = None
                    else:
                        version = await set_(key, value, ttl)
                except Exception as exc:  # recorded, the task goes on
                    t1 = clock()
                    self.errors += 1
                    if record:
                        append(csv_row(task, op, key, t0, t1 - t0, version=write_id,
                                       error=_error_text(exc)))
                    await sleep(_ERROR_PAUSE_S)
                else:
                    t1 = clock()
                    if record:
                        field = quote(key) if quoted else key
                        append(f"{task},{op},{field},{t0},{t1 - t0},,,{write_id},"
                               f"{'' if version is None else version},\n")
                        if len(rows) >= flush_at:
                            recorder.flush()
                i += 1
                if think:
                    await sleep(think)
                elif t1 - last_yield > _SLICE_NS:
                    await sleep(0)
                    last_yield = t1
        finally:
            self._seq[task] = seq

    async def run(self, start_ns: int) -> None:
        """Warm up (unrecorded), then measure, every task of this process concurrently."""
        w = self.workload
        plan = task_plan(w, self.spec.process, self.spec.processes)
        measure_start = start_ns + int(w.warmup_s * 1e9)
        await _sleep_until(start_ns)
        if w.warmup_s > 0 and not self.stopping:
            self.log.info("phase", phase="warmup", start_ns=start_ns, until_ns=measure_start)
            warm = _Phase(start_ns, measure_start, False, "warmup")
            await asyncio.gather(*(self.run_task(k, t, warm, None) for k, t in plan))
            await _sleep_until(measure_start)
        if self.stopping:
            return
        until = measure_start + int(w.duration_s * 1e9) if w.duration_s else None
        self.log.info("phase", phase="measure", start_ns=measure_start, until_ns=until,
                      tasks=len(plan))
        phase = _Phase(measure_start, until, True, "measure")
        await asyncio.gather(*(
            self.run_task(kind, task, phase, None if w.duration_s else
                          (w.write_iterations if kind == "write" else w.read_iterations))
            for kind, task in plan))
        self.log.info("phase", phase="drain", ops=self.recorder.count, errors=self.errors)


async def _sleep_until(when_ns: int) -> None:
    delay = (when_ns - time.perf_counter_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _messages(on_message: Callable[[dict[str, Any]], None]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        with contextlib.suppress(ValueError):
            on_message(json.loads(line))
    on_message({"type": "eof"})


async def _with_timeout(what: Awaitable[Any], seconds: float) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(what, seconds)


async def run_worker(spec: WorkerSpec) -> int:
    """Run one worker to completion; returns the process exit code."""
    log_dir = Path(spec.log_dir)
    events = BufferedStream(log_dir / f"{spec.stem}.events.jsonl")
    configure_events(events, {"run_id": spec.run_id, "backend": spec.backend,
                              "repetition": spec.repetition, "process": spec.process})
    log = structlog.get_logger()
    workload = parse_workload(spec.workload, source="(worker)")
    endpoints = Endpoints(**spec.endpoints)
    go: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    worker: Worker | None = None
    stop_requested = False

    def request_stop(reason: str) -> None:
        nonlocal stop_requested
        if not stop_requested:
            stop_requested = True
            log.info("stop_requested", reason=reason)
        if worker is not None:
            worker.stop()
        if not go.done():
            go.set_result(-1)

    def on_message(message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "go" and not go.done():
            go.set_result(int(message["start_ns"]))
        elif kind in ("stop", "eof"):
            request_stop(str(kind))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop, signal.Signals(sig).name)
    listener = asyncio.create_task(_messages(on_message))
    network: Any = None
    backend: Backend | None = None
    recorder = OpRecorder(log_dir / f"{spec.stem}.ops.csv")
    arrivals = OpRecorder(invalidations_path(log_dir / f"{spec.stem}.events.jsonl"))
    last_arrival_ns = 0
    progress: asyncio.Task[None] | None = None
    try:
        if spec.network_mode == "inprocess":
            from proxies.inprocess import InProcessNetwork

            net = workload.network
            network = InProcessNetwork(endpoints, latency_ms=net.latency_ms,
                                       jitter_ms=net.jitter_ms,
                                       seed=workload.seed * 1000 + spec.process,
                                       routes=_ROUTES.get(spec.backend_type, _ALL_ROUTES))
            await network.__aenter__()
            endpoints = network.endpoints
            log.info("network", **network.describe())
        backend = create_backend(spec.backend, spec.backend_type, spec.backend_options,
                                 endpoints)
        worker = Worker(spec, workload, backend, recorder)
        if stop_requested:
            worker.stop()

        add_arrival = arrivals.rows.append
        quoted = needs_quoting(workload.key_prefix)
        wall_ns = time.time_ns

        def on_invalidation(key: str | None, version: int | None, ts_ns: int) -> None:
            nonlocal last_arrival_ns
            last_arrival_ns = ts_ns
            if key is None:
                log.info("local_flush", ts_ns=ts_ns)
            else:
                add_arrival(f"{csv_field(key) if quoted else key},"
                            f"{'' if version is None else version},{ts_ns},{wall_ns()}\n")

        backend.set_invalidation_hook(on_invalidation)
        await backend.connect()
        log.info("ready", tasks=len(task_plan(workload, spec.process, spec.processes)))
        _send({"type": "ready"})
        start_ns = await go
        if start_ns >= 0 and not worker.stopping:
            progress = asyncio.create_task(_report_progress(worker, events, arrivals))
            await worker.run(start_ns)
            drain_start = time.perf_counter_ns()
            while not worker.stopping:
                now = time.perf_counter_ns()
                if (now - max(last_arrival_ns, drain_start) >= _QUIET_S * 1e9
                        or now - drain_start >= _DRAIN_MAX_S * 1e9):
                    break
                await asyncio.sleep(0.05)
            log.info("drained", arrivals=arrivals.count,
                     seconds=round((time.perf_counter_ns() - drain_start) / 1e9, 3))
        log.info("stats", backend_stats=dict(backend.stats()))
        return 0
    except Exception as exc:
        log.error("worker_failed", error=_error_text(exc), exc_info=True)
        sys.stderr.write(f"worker {spec.process}: {_error_text(exc)}\n")
        return 1
    finally:
        if progress is not None:
            progress.cancel()
        recorder.close()
        count = recorder.count
        errors = worker.errors if worker is not None else 0
        if backend is not None:
            await _with_timeout(backend.close(), _DRAIN_TIMEOUT_S)
        if network is not None:
            await _with_timeout(network.close(), _DRAIN_TIMEOUT_S)
        arrivals.close()
        times = os.times()
        log.info("worker_done", ops=count, errors=errors, stopped=stop_requested,
                 cpu_s=round(times.user + times.system, 3))
        _send({"type": "done", "ops": count, "errors": errors})
        listener.cancel()
        events.close()


async def _report_progress(worker: Worker, events: BufferedStream,
                           arrivals: OpRecorder) -> None:
    while True:
        await asyncio.sleep(_PROGRESS_INTERVAL_S)
        worker.recorder.flush()
        arrivals.flush()
        events.sync()
        _send({"type": "progress", "ops": worker.recorder.count, "errors": worker.errors})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m orchestrator.worker SPEC.json\n")
        return 2
    spec = WorkerSpec.from_json(Path(args[0]).read_text())
    try:
        import uvloop

        runner: Callable[[Any], int] = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(run_worker(spec))


if __name__ == "__main__":
    sys.exit(main())
