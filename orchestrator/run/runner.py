"""The parent process: runs every backend pass of a workload and records the run.

A state machine per pass: prepare (fresh server state) -> start one worker per process through
the executor -> wait until every worker is connected (:class:`Ready`) -> start barrier
(:class:`Go` with a common start time) -> warm-up + measurement in the workers -> drain (each
worker finishes its operations in flight and writes its files) -> ingest into DuckDB. Passes
run one after another, repetitions interleaved (A B C, A B C, ...), all with the same seeds.

Before any server starts, the results database is opened and the run's log directory
written (a location that cannot be written is bad input). The executor stops and reaps the
workers of a pass whatever ends it (no orphans). SIGINT/SIGTERM, from the run's first moment
to its last (:mod:`orchestrator.run.signals`, installed by :func:`run_workload`): the workers
are told to stop, are killed if they have not exited within the grace
period, what was measured is ingested and the run is marked ``interrupted``. A worker that
exits without finishing (it died, or its files could not be written) marks the run ``failed``;
the other workers are stopped and their data ingested. When the database cannot take what was
measured, the console says where the logs are and how to ``ingest`` them later. At the end,
failed operations beyond the workload's ``allowed_error_rate`` make the run
``completed_with_errors`` (:mod:`orchestrator.results.failures`). What the run says, progress
and summary, goes through its :class:`~orchestrator.run.console.Console`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import duckdb
import structlog

from orchestrator.backends.registry import TYPES, create_backend
from orchestrator.errors import (
    BackendError,
    ExitCode,
    InterruptedRun,
    NotResults,
    OrchestratorError,
    ResultsError,
    ResultsInUse,
    UsageError,
    WorkerError,
)
from orchestrator.redaction import (
    check_environment,
    learn_environment,
    learn_secrets,
)
from orchestrator.results import failures, schema, servercost, store, thresholds
from orchestrator.results.logs import (
    PARENT_EVENTS,
    RUN_RECORD,
    BufferedStream,
    configure_events,
)
from orchestrator.results.store import RunStatus
from orchestrator.run.console import Console
from orchestrator.run.executor import (
    STOP_GRACE_S,
    Executor,
    Placement,
    WorkerHandle,
    loopback_problem,
)
from orchestrator.run.keys import task_rng, value_maker
from orchestrator.run.local_executor import LocalProcessExecutor
from orchestrator.run.network import ParentRoute, open_route
from orchestrator.run.origin import prepare_origin
from orchestrator.run.protocol import Done, Failed, Go, Progress, Ready, Stop, WorkerSpec
from orchestrator.run.provenance import git_commit, versions
from orchestrator.run.ray_executor import RayExecutor
from orchestrator.run.signals import RunSignals
from orchestrator.services import services_for_run
from orchestrator.workload.model import BackendSpec, ExecutorKind, ReadOp, Workload
from proxies import Endpoints

_READY_TIMEOUT_S = 60.0
_BARRIER_DELAY_NS = 100_000_000
_PREPARE_TIMEOUT_S = 60.0


@dataclass
class RunOptions:
    """How to run: where results go, which backends, where output goes, how workers start."""

    results_path: Path = store.DEFAULT_RESULTS
    # The backends to run, resolved by the caller (the CLI's --backends); None: the workload's.
    backends: tuple[BackendSpec, ...] | None = None
    console: IO[str] = field(default_factory=lambda: sys.stderr)
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    executor: Executor | None = None  # None: as the workload says (executor_for)
    quiet: bool = False  # the console keeps failures, cautions and the summary only
    in_suite: bool = False  # a point of a suite: its summary names no next command


class PlacementRefused(OrchestratorError):
    """The servers' addresses cannot be reached from where the workers are placed."""


def executor_for(workload: Workload) -> Executor:
    """The executor the workload asks for: local processes, or Ray actors."""
    if workload.executor == ExecutorKind.RAY:
        p = workload.placement
        return RayExecutor(workload.ray_address, strategy=p.strategy,
                           workers_per_node=p.workers_per_node,
                           cpus_per_worker=p.cpus_per_worker)
    return LocalProcessExecutor()


@dataclass
class RunOutcome:
    run_id: str
    status: RunStatus
    exit_code: ExitCode
    summary: list[dict[str, Any]] = field(default_factory=list)


class _Worker:
    """The parent's view of one worker: what it last reported."""

    def __init__(self, handle: WorkerHandle, stem: str) -> None:
        self.handle = handle
        self.stem = stem
        self.ready = asyncio.Event()
        self.done = False
        self.ops = 0
        self.errors = 0
        self.reported = False  # its failure was reported
        self.failure = ""  # what it said when it failed (Failed)
        self.follower = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for message in self.handle.messages():
            if isinstance(message, Ready):
                self.ready.set()
            elif isinstance(message, Failed):
                self.failure = message.error
            elif isinstance(message, Progress | Done):
                self.ops, self.errors = message.ops, message.errors
                self.done = self.done or isinstance(message, Done)

    @property
    def failed(self) -> bool:
        """Exited with an error, or exited cleanly without saying it was done."""
        code = self.handle.exit_code
        if code is None:
            return False
        return code != 0 or (not self.done and self.follower.done())


class _Crew:
    """The workers of one pass, as the parent follows them."""

    def __init__(self, handles: Sequence[WorkerHandle], stems: dict[int, str]) -> None:
        self.workers = [_Worker(handle, stems[handle.process]) for handle in handles]

    @property
    def ops(self) -> int:
        return sum(w.ops for w in self.workers)

    @property
    def errors(self) -> int:
        return sum(w.errors for w in self.workers)

    @property
    def ready(self) -> bool:
        return all(w.ready.is_set() for w in self.workers)

    @property
    def running(self) -> bool:
        return any(w.handle.exit_code is None for w in self.workers)

    def send(self, message: Go | Stop) -> None:
        for worker in self.workers:
            worker.handle.send(message)

    def kill(self) -> None:
        for worker in self.workers:
            worker.handle.kill()

    def new_failures(self) -> list[_Worker]:
        """The workers that failed since the last call."""
        failed = [w for w in self.workers if w.failed and not w.reported]
        for worker in failed:
            worker.reported = True
        return failed

    async def close(self) -> None:
        """Wait (briefly) until every worker's messages are read: the executor reaped them."""
        followers = [w.follower for w in self.workers]
        if followers:
            _, late = await asyncio.wait(followers, timeout=1.0)
            for follower in late:
                follower.cancel()


class Runner:
    """Runs one workload; see the module docstring."""

    def __init__(self, workload: Workload, options: RunOptions, console: Console,
                 signals: RunSignals) -> None:
        learn_secrets(workload.raw)  # before anything is said or written
        learn_environment()
        check_environment()
        self.workload = workload
        self.options = options
        self.backends = (workload.backends if options.backends is None
                         else options.backends)
        self.executor = options.executor or executor_for(workload)
        now = dt.datetime.now(dt.UTC)
        self.run_id = f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        self.log_dir = Path(options.results_path).parent / "logs" / self.run_id
        self.console = console
        self.signals = signals
        signals.react(self._interrupt)
        self.failed: str | None = None
        self._interrupt_said = False
        self.unrecorded = False  # something measured is not (or may not be) in the database
        self._crew = _Crew([], {})  # the workers of the current pass
        self._route: ParentRoute | None = None  # the run's network route, once open
        self.log: Any = None

    # -- interrupts ----------------------------------------------------------------------
    @property
    def interrupted(self) -> bool:
        return self.signals.interrupted

    def _interrupt(self, name: str, count: int) -> None:
        """A signal the event loop reacted to: the first stops the workers, more kill them."""
        if self.log is not None:
            self.log.warning("interrupted", signal=name, count=count)
        if count == 1:
            self._say_interrupted(f"{name}: stopping the run (again to kill its workers at "
                                  "once)")
            self._crew.send(Stop())
        else:
            self._crew.kill()

    def _say_interrupted(self, text: str) -> None:
        """The one line an interrupt gets on the console."""
        if not self._interrupt_said:
            self._interrupt_said = True
            self.console.say(text)

    # -- the run -------------------------------------------------------------------------
    async def run(self) -> RunOutcome:
        """The run, from the preflight to the summary (signals are handled by the caller:
        :func:`run_workload`)."""
        conn = self._preflight()
        events = BufferedStream(self.log_dir / PARENT_EVENTS, autosync=True)
        configure_events(events, {"run_id": self.run_id, "backend": None,
                                  "repetition": None, "process": -1})
        self.log = structlog.get_logger()
        try:
            status, passed = await self._run(conn)
            status, passed, rows = self._finish(conn, status, passed, events)
            if self.interrupted:  # also when the loop never got to react (no await)
                self._say_interrupted(f"{self.signals.name}: run interrupted")
            text = self.console.summary_text(
                conn, self.run_id, status, rows, workload=self.workload,
                results=str(self.options.results_path), recorded=not self.unrecorded,
                next_steps=not self.options.in_suite)
        finally:
            events.close()
            with contextlib.suppress(duckdb.Error):  # whatever it holds is reported
                conn.close()
        self.console.summary(text)
        code = (ExitCode.INTERRUPTED if status == RunStatus.INTERRUPTED or self.interrupted
                else ExitCode.FAILED if status != RunStatus.COMPLETED
                else ExitCode.THRESHOLDS_FAILED if passed is False
                else ExitCode.OK)
        return RunOutcome(self.run_id, status, code, rows)

    def _preflight(self) -> Any:
        """The results database and the run's log directory, both writable, before any server
        starts; a location that cannot be written is bad input, and what this created is
        removed again (nothing is written)."""
        results = Path(self.options.results_path)
        wal = results.with_name(results.name + ".wal")
        created = [p for p in (results.parent, results, wal, self.log_dir.parent)
                   if not p.exists()]
        conn: Any = None
        what = "open the results database"
        try:
            conn = store.connect(results)
            what = "create the run's log directory"
            self.log_dir.mkdir(parents=True, exist_ok=True)
            what = "write in the run's log directory"
            probe = self.log_dir / ".writable"
            with open(probe, "wb") as stream:
                stream.write(b"\0" * 4096)
                stream.flush()
                os.fsync(stream.fileno())
            probe.unlink()
        except (ResultsError, OSError) as exc:
            if conn is not None:
                conn.close()
            for path in created:  # only what did not exist before
                with contextlib.suppress(OSError):  # the error below is what matters
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.exists():
                        path.unlink()
            if isinstance(exc, ResultsInUse | NotResults):
                raise
            reason = str(exc) if isinstance(exc, ResultsError) else (
                f"cannot {what} ({self.log_dir}): {exc.strerror or exc}")
            raise UsageError(f"--results {results}: {reason}; choose a location this user "
                             "can write (--results PATH)") from exc
        if self.interrupted:
            conn.close()
            raise InterruptedRun("interrupted before the run started")
        return conn

    async def _run(self, conn: Any) -> tuple[RunStatus, bool | None]:
        """The passes; returns the status they leave (judged later) and whether thresholds
        were judged (None: not yet)."""
        w = self.workload
        servers = frozenset().union(*(TYPES[spec.type].servers for spec in self.backends))
        need_pg, need_vk = "postgres" in servers or needs_origin(w), "valkey" in servers
        try:
            self.console.note(
                f"run {self.run_id}: workload {w.name}, backends "
                f"{', '.join(b.name for b in self.backends)}, {w.process_count} worker "
                f"processes{_instances_text(w)}, results in {self.options.results_path}")
            async with self.executor.reserve(w.process_count) as placement:
                if w.executor != ExecutorKind.LOCAL or len(placement.nodes) > 1:
                    self.console.note(f"executor {w.executor}: {w.process_count} workers on "
                                      f"{len(placement.nodes)} node(s) of {len(placement.hosts)} "
                                      f"host(s) ({', '.join(placement.hosts)})")
                self.log.info("placement", executor=w.executor, **placement.describe())
                if self.interrupted:
                    raise InterruptedRun("interrupted while the workers' room was reserved")
                await self._passes(conn, placement, need_pg, need_vk)
            return (RunStatus.INTERRUPTED if self.interrupted else
                    RunStatus.FAILED if self.failed else RunStatus.COMPLETED), None
        except OrchestratorError as exc:
            if isinstance(exc, ResultsError):
                self.unrecorded = True
            self.failed = str(exc)
            if not isinstance(exc, InterruptedRun):  # the signal's own line said that one
                self.console.say(f"run {self.run_id} failed: {exc}")
            self.log.error("run_failed", error=str(exc))
            return (RunStatus.INTERRUPTED if self.interrupted else RunStatus.FAILED), None
        finally:
            self._crew.kill()
            if self._route is not None:
                self._route.close()
                self._route = None

    async def _passes(self, conn: Any, placement: Placement, need_pg: bool,
                      need_vk: bool) -> None:
        """The servers, the run's row, the network route, then every pass."""
        w = self.workload
        with services_for_run(need_postgres=need_pg, need_valkey=need_vk,
                              say=self.console.note) as svc:
            upstream = Endpoints(svc.postgres_dsn, svc.valkey_url, svc.postgres_dsn)
            record = store.RunRecord(
                run_id=self.run_id, workload=w.name, workload_yaml=w.text, seed=w.seed,
                started_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                host=socket.gethostname(),
                versions=await versions(svc.postgres_dsn if need_pg else "",
                                         svc.valkey_url if need_vk else ""),
                git_commit=git_commit(), network=w.network.to_dict())
            self._keep_record(record)
            store.record_run_start(conn, record)
            self.log.info("run_started", workload=w.name, seed=w.seed,
                          backends=[b.name for b in self.backends],
                          processes=w.process_count,
                          instances_per_process=w.instances_per_process,
                          services=svc.description)
            self._route = route = open_route(w.network, upstream, self.console.say, self.log)
            store.update_run(conn, self.run_id, network=route.config)
            problem = loopback_problem(route.endpoints, placement)
            if problem:
                raise PlacementRefused(f"refusing loopback server addresses: {problem}")
            for repetition in range(1, w.repeat + 1):
                for spec in self.backends:
                    if self.interrupted or self.failed:
                        break
                    await self._pass(conn, spec, repetition, route, upstream)

    def _keep_record(self, record: store.RunRecord) -> None:
        """The run's row, also as a file of its log directory: ``ingest`` rebuilds the row from
        it if the database never got it."""
        try:
            (self.log_dir / RUN_RECORD).write_text(record.to_json())
        except OSError as exc:
            self.log.warning("run_record_not_written", error=str(exc))

    def _finish(self, conn: Any, status: RunStatus, passed: bool | None,
                events: BufferedStream) -> tuple[RunStatus, bool | None,
                                                 list[dict[str, Any]]]:
        """Judge errors and thresholds, record the end of the run, ingest the parent's events;
        a database that fails here is said, with how to ingest the logs later."""
        rows: list[dict[str, Any]] = []
        try:
            if status == RunStatus.COMPLETED and not self._errors_allowed(conn):
                status = RunStatus.COMPLETED_WITH_ERRORS
            if status in (RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS):
                passed = self._judge(conn)
        except (ResultsError, duckdb.Error) as exc:
            status, self.unrecorded = RunStatus.FAILED, True
            self.console.say(f"run {self.run_id} failed: could not judge the run: {exc}")
        if events.error is not None:
            status, self.unrecorded = RunStatus.FAILED, True
            self.console.say(f"run {self.run_id} failed: could not write its events: "
                             f"{events.error.strerror} ({events.error.filename})")
        self.log.info("run_finished", status=status, failure=self.failed)
        events.sync()
        try:
            store.update_run(conn, self.run_id, status=status,
                             finished_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                             thresholds_passed=passed)
            store.ingest_parent_events(conn, self.run_id, self.log_dir / PARENT_EVENTS)
            rows = store.summary(conn, self.run_id)
        except (ResultsError, duckdb.Error) as exc:
            status, self.unrecorded = RunStatus.FAILED, True
            self.console.say(f"run {self.run_id}: could not record its end: {exc}")
        if self.unrecorded:
            self.console.say(f"what was measured is kept in {self.log_dir}; once the results' file "
                             f"system can be written again: python -m orchestrator ingest "
                             f"{self.log_dir} --results {self.options.results_path}")
        return status, passed, rows

    def _errors_allowed(self, conn: Any) -> bool:
        """Whether the run's failed operations (if any) are within what the workload allows;
        each backend with errors is said, with when they happened."""
        verdicts = failures.judge(failures.error_report(conn, self.run_id),
                                  self.workload.allowed_error_rate, self.workload.thresholds)
        for entry in verdicts:
            self.console.say(f"errors: {entry.describe()}")
        if verdicts:
            self.log.warning("errors_judged", backends={
                e.backend: {"ops": e.ops, "errors": e.errors, "allowed": e.allowed,
                            "spans": [[s.repetition, round(s.start_s, 3), round(s.end_s, 3),
                                       s.errors] for s in e.spans]} for e in verdicts})
        return all(entry.allowed for entry in verdicts)

    def _judge(self, conn: Any) -> bool | None:
        """The verdict of the workload's thresholds, each one said; None when there are none."""
        if not self.workload.thresholds:
            return None
        schema.install_views(conn)
        verdicts = thresholds.evaluate(conn, self.run_id, self.workload.thresholds)
        thresholds.store_results(conn, self.run_id, verdicts)
        for v in verdicts:
            mark = {True: "pass", False: "FAIL", None: "n/a "}[v.passed]
            measured = "-" if v.measured is None else f"{v.measured:.4g}"
            self.console.note(f"threshold {mark}  {v.backend}: {v.expression} (measured {measured})"
                              + (f" — {v.note}" if v.note else ""))
        return thresholds.all_passed(verdicts)

    # -- one pass ------------------------------------------------------------------------
    async def _pass(self, conn: Any, spec: BackendSpec, repetition: int, route: ParentRoute,
                    upstream: Endpoints) -> None:
        w = self.workload
        label = f"{spec.name}" + (f" rep {repetition}/{w.repeat}" if w.repeat > 1 else "")
        structlog.contextvars.bind_contextvars(backend=spec.name, repetition=repetition)
        try:
            self.log.info("pass_started", backend_type=spec.type, options=dict(spec.options))
            await prepare(w, spec, upstream, self.log)
            specs = [WorkerSpec(
                run_id=self.run_id, backend=spec, repetition=repetition, process=i,
                processes=w.process_count, workload=dict(w.raw), endpoints=route.endpoints,
                network_mode=route.worker_mode, log_dir=str(self.log_dir),
                instances_per_process=w.instances_per_process,
            ) for i in range(w.process_count)]
            await self._run_workers(conn, specs, route, upstream, label)
            started = time.monotonic()
            files = [f for s in specs for f in s.files()]
            rows = store.ingest_pass(conn, self.run_id, spec.name, repetition, files)
            took = time.monotonic() - started
            self.log.info("pass_ingested", ops=rows, seconds=round(took, 3))
            self.console.note(f"{label}: {rows:,} operations recorded, ingested in {took:.2f} s")
        finally:
            structlog.contextvars.unbind_contextvars("backend", "repetition")

    async def _run_workers(self, conn: Any, specs: Sequence[WorkerSpec], route: ParentRoute,
                           upstream: Endpoints, label: str) -> None:
        spec = specs[0]
        stems = {s.process: s.stem for s in specs}
        try:
            async with self.executor.workers(specs) as handles:
                self._crew = crew = _Crew(handles, stems)
                for worker in crew.workers:
                    self.log.info("worker_started", process=worker.handle.process,
                                  **worker.handle.describe())
                await self._await_ready()
                start_ns = time.perf_counter_ns() + _BARRIER_DELAY_NS
                crew.send(Go(start_ns))
                measure_start_ns = start_ns + int(self.workload.warmup_s * 1e9)
                self.log.info("barrier", start_ns=start_ns, measure_start_ns=measure_start_ns)
                route.pass_started(spec.backend.name, spec.repetition, measure_start_ns)
                try:
                    async with servercost.sampling(conn, self.run_id, spec.backend,
                                                   spec.repetition, upstream, self.log,
                                                   self.log_dir,
                                                   sample_interval_s(self.workload)):
                        await self._monitor(label)
                finally:
                    route.pass_finished(spec.backend.name, spec.repetition)
        finally:
            await self._crew.close()

    async def _await_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not self._crew.ready:
            self._check_workers(before_start=True)
            if self.interrupted:
                raise InterruptedRun("interrupted while the workers were connecting")
            if time.monotonic() > deadline:
                raise WorkerError(f"workers did not connect within {_READY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.02)

    def _check_workers(self, before_start: bool = False) -> None:
        """Report a worker that failed; before the start that fails the pass, after it the
        run (the other workers are stopped and what they measured is kept)."""
        if self.interrupted:
            return
        for worker in self._crew.new_failures():
            process, code = worker.handle.process, worker.handle.exit_code
            detail = worker.handle.failure_detail()
            message = (f"worker {process} ({worker.stem}) exited with code {code}"
                       + (" before it was ready" if before_start else "")
                       + (f": {worker.failure}" if worker.failure else "")
                       + (f"; its stderr ends with:\n{detail}" if detail and not worker.failure
                          else ""))
            self.log.error("worker_failed", process=process, exit_code=code, stderr=detail)
            if before_start:
                raise WorkerError(message)
            if self.failed is None:
                self.failed = message
                self.console.say(message)
                self._crew.send(Stop())

    def _progress(self, label: str, started: float, expected: int | None) -> None:
        self.console.progress(label, self._crew.ops, self._crew.errors,
                              time.monotonic() - started, expected)

    async def _monitor(self, label: str) -> None:
        w = self.workload
        expected = None if w.duration_s else (w.writers * w.write_iterations
                                              + w.readers * w.read_iterations)
        started = time.monotonic()
        last_print = 0.0
        interval = self.console.progress_interval_s
        stop_sent_at: float | None = None
        while self._crew.running:
            self._check_workers()
            now = time.monotonic()
            if (self.interrupted or self.failed) and stop_sent_at is None:
                stop_sent_at = now
            if stop_sent_at is not None and now - stop_sent_at > STOP_GRACE_S:
                self.log.warning("workers_killed", after_s=STOP_GRACE_S)
                self._crew.kill()
            if now - last_print >= interval:
                self._progress(label, started, expected)
                last_print = now
            await asyncio.sleep(0.05)
        self._check_workers()
        self._progress(label, started, expected)
        self.console.end_line()
        for worker in self._crew.workers:
            self.log.info("worker_exit", process=worker.handle.process,
                          exit_code=worker.handle.exit_code, ops=worker.ops,
                          errors=worker.errors)


def sample_interval_s(w: Workload) -> float:
    """How often the servers' cost is sampled during a pass: every second, or often enough
    for about ten samples within a shorter timed pass (the CPU of its measurement counts
    between samples taken within it)."""
    if w.duration_s is None:
        return 1.0
    return min(1.0, max(0.1, w.duration_s / 10))


def _instances_text(w: Workload) -> str:
    k = w.instances_per_process
    return f" x {k} application instances ({w.instance_count} in all)" if k > 1 else ""


async def prepare(workload: Workload, spec: BackendSpec, endpoints: Endpoints,
                  log: Any) -> None:
    """Fresh server state for a pass; with ``prefill``, every key written once (write ids
    -1:0:i). Whatever the backend's client raises here is a BackendError: the pass cannot
    start."""
    try:
        await _prepare(workload, spec, endpoints, log)
    except OrchestratorError:
        raise
    except Exception as exc:  # the drivers' errors, timeouts: mapped, not swallowed
        raise BackendError(f"{spec.name}: could not prepare the pass: "
                           f"{type(exc).__name__}: {exc}") from exc


def needs_origin(w: Workload) -> bool:
    """Whether the workload's loader queries the origin table in PostgreSQL."""
    return w.read_op == ReadOp.GET_OR_SET and w.loader.type == "query"


async def _prepare(w: Workload, spec: BackendSpec, endpoints: Endpoints, log: Any) -> None:
    backend = create_backend(spec.name, spec.type, spec.options, endpoints)
    await asyncio.wait_for(backend.prepare(), _PREPARE_TIMEOUT_S)
    if needs_origin(w):
        await asyncio.wait_for(prepare_origin(endpoints.postgres_dsn, w.loader.rows),
                               _PREPARE_TIMEOUT_S)
    if not w.prefill:
        return
    started = time.monotonic()
    await backend.connect()
    try:
        make_value = value_maker(w.value_size_min, w.value_size_max,
                                 task_rng(w.seed, -1, "prefill"))
        queue = iter(range(w.keyspace))

        async def fill() -> None:
            for i in queue:
                await backend.set(f"{w.key_prefix}{i}", make_value(f"-1:0:{i}"), w.ttl_s)

        await asyncio.wait_for(asyncio.gather(*(fill() for _ in range(16))),
                               _PREPARE_TIMEOUT_S)
    finally:
        await backend.close()
    log.info("prefilled", keys=w.keyspace, seconds=round(time.monotonic() - started, 3))


def run_workload(workload: Workload, options: RunOptions | None = None) -> RunOutcome:
    """Run a workload to the end (or interruption) and return its outcome: the runner, its
    console, and SIGINT/SIGTERM handled from the run's first moment to its last."""
    options = options or RunOptions()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(_run_handled(workload, options))


async def _run_handled(workload: Workload, options: RunOptions) -> RunOutcome:
    signals = RunSignals()
    console = Console(options.console, options.out, quiet=options.quiet)
    runner = Runner(workload, options, console, signals)
    with signals.installed():
        return await runner.run()

