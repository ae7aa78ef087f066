"""The parent process: runs every backend pass of a workload and records the run.

A state machine per pass: prepare (fresh server state) -> spawn one worker per process ->
wait until every worker is connected (``ready``) -> start barrier (``go`` with a common start
time) -> warm-up + measurement in the workers -> drain (each worker finishes its operations in
flight and writes its buffers) -> ingest into DuckDB. Passes run one after another,
repetitions interleaved (A B C, A B C, ...), all with the same seeds.

Any exception in the parent kills and reaps the workers (no orphans). SIGINT/SIGTERM: the
workers are told to stop, are killed if they have not exited within the grace period, what was
measured is ingested and the run is marked ``interrupted``. A worker that exits without
finishing marks the run ``failed``; the other workers are stopped and their data ingested.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog

from orchestrator import results
from orchestrator.backends import Endpoints, create_backend
from orchestrator.errors import OrchestratorError, WorkerError
from orchestrator.keys import task_rng, value_maker
from orchestrator.network import ParentRoute, open_route
from orchestrator.provenance import git_commit, versions
from orchestrator.recorder import configure_events
from orchestrator.report import format_summary
from orchestrator.services import services_for_run
from orchestrator.worker import WorkerSpec
from orchestrator.workload import BackendSpec, Workload

_READY_TIMEOUT_S = 60.0
_STOP_GRACE_S = 4.0
_BARRIER_DELAY_NS = 100_000_000
_PREPARE_TIMEOUT_S = 60.0

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass
class RunOptions:
    """How to run: where results go, which backends, where the console output goes."""

    results_path: Path = results.DEFAULT_RESULTS
    backends: list[str] | None = None
    console: IO[str] = field(default_factory=lambda: sys.stderr)
    out: IO[str] = field(default_factory=lambda: sys.stdout)


@dataclass
class RunOutcome:
    run_id: str
    status: str
    exit_code: int
    summary: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PassContext:
    """What a pass hook (e.g. a server-cost sampler) gets for one backend pass."""

    run_id: str
    backend: BackendSpec
    repetition: int
    endpoints: Endpoints  # the servers themselves, not through the emulated network
    conn: Any  # the results database (DuckDB connection)
    log: Any


# Async context managers entered around each measured pass (after the start barrier).
PassHook = Callable[[PassContext], contextlib.AbstractAsyncContextManager[Any]]
PASS_HOOKS: list[PassHook] = []


class _WorkerProcess:
    """One spawned worker and what it last reported."""

    def __init__(self, index: int, proc: asyncio.subprocess.Process, stem: str,
                 stderr_path: Path) -> None:
        self.index = index
        self.proc = proc
        self.stem = stem
        self.stderr_path = stderr_path
        self.ready = asyncio.Event()
        self.done = False
        self.ops = 0
        self.errors = 0
        self.reader: asyncio.Task[None] | None = None

    async def read_messages(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            kind = message.get("type")
            if kind == "ready":
                self.ready.set()
            elif kind in ("progress", "done"):
                self.ops = int(message.get("ops", self.ops))
                self.errors = int(message.get("errors", self.errors))
                self.done = self.done or kind == "done"

    def send(self, message: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing() and self.proc.returncode is None:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                stdin.write((json.dumps(message) + "\n").encode())

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


class Runner:
    """Runs one workload; see the module docstring."""

    def __init__(self, workload: Workload, options: RunOptions) -> None:
        self.workload = workload
        self.options = options
        self.backends = (workload.select_backends(options.backends) if options.backends
                         else workload.backends)
        now = dt.datetime.now(dt.UTC)
        self.run_id = f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        self.log_dir = Path(options.results_path).parent / "logs" / self.run_id
        self.interrupted = False
        self.failed: str | None = None
        self.signals = 0
        self._workers: list[_WorkerProcess] = []
        self._tty = options.console.isatty()
        self.log: Any = None

    # -- console -------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if self._tty:
            text = "\r\x1b[K" + text
        print(text, file=self.options.console, flush=True)

    def _progress(self, label: str, started: float, expected: int | None) -> None:
        ops = sum(w.ops for w in self._workers)
        errors = sum(w.errors for w in self._workers)
        elapsed = time.monotonic() - started
        rate = ops / elapsed if elapsed > 0 else 0.0
        share = f"/{expected:,} ({100 * ops / expected:.0f}%)" if expected else ""
        line = (f"{label}: {ops:,}{share} ops, {rate:,.0f} ops/s, {errors} errors, "
                f"{elapsed:.1f} s")
        if self._tty:
            print("\r\x1b[K" + line, end="", file=self.options.console, flush=True)
        else:
            print(line, file=self.options.console, flush=True)

    # -- signals -------------------------------------------------------------------------
    def _on_signal(self, sig: int) -> None:
        self.signals += 1
        self.interrupted = True
        name = signal.Signals(sig).name
        if self.log is not None:
            self.log.warning("interrupted", signal=name, count=self.signals)
        if self.signals == 1:
            self.say(f"{name}: stopping the workers (again to kill them at once)")
            for worker in self._workers:
                worker.send({"type": "stop"})
        else:
            self._kill_workers()

    def _kill_workers(self) -> None:
        for worker in self._workers:
            if worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()

    # -- the run -------------------------------------------------------------------------
    async def run(self) -> RunOutcome:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        parent_events = self.log_dir / "parent.events.jsonl"
        with open(parent_events, "a", buffering=1) as stream:  # noqa: ASYNC230 - tiny, local
            configure_events(stream, {"run_id": self.run_id, "backend": None,
                                      "repetition": None, "process": -1})
            self.log = structlog.get_logger()
            return await self._run(parent_events)

    async def _run(self, parent_events: Path) -> RunOutcome:
        w = self.workload
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        kinds = {spec.type for spec in self.backends}
        need_pg = "pgcache" in kinds
        need_vk = bool(kinds & {"valkey", "valkey-client-cache"})
        conn = results.connect(self.options.results_path)
        status = "failed"
        thresholds_passed: bool | None = None
        route: ParentRoute | None = None
        try:
            self.say(f"run {self.run_id}: workload {w.name}, backends "
                     f"{', '.join(b.name for b in self.backends)}, {w.process_count} worker "
                     f"processes, results in {self.options.results_path}")
            with services_for_run(need_postgres=need_pg, need_valkey=need_vk,
                                  say=self.say) as svc:
                upstream = Endpoints(svc.postgres_dsn, svc.valkey_url, svc.postgres_dsn)
                results.record_run_start(conn, results.RunRecord(
                    run_id=self.run_id, workload=w.name, workload_yaml=w.text, seed=w.seed,
                    started_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    host=socket.gethostname(),
                    versions=await versions(svc.postgres_dsn if need_pg else "",
                                             svc.valkey_url if need_vk else ""),
                    git_commit=git_commit(), network=w.network.to_dict()))
                self.log.info("run_started", workload=w.name, seed=w.seed,
                              backends=[b.name for b in self.backends],
                              processes=w.process_count, services=svc.description)
                route = open_route(w.network, upstream, self.say, self.log)
                results.update_run(conn, self.run_id, network=route.config)
                for repetition in range(1, w.repeat + 1):
                    for spec in self.backends:
                        if self.interrupted or self.failed:
                            break
                        await self._pass(conn, spec, repetition, route, upstream)
            status = ("interrupted" if self.interrupted else
                      "failed" if self.failed else "completed")
        except OrchestratorError as exc:
            self.failed = str(exc)
            status = "interrupted" if self.interrupted else "failed"
            self.say(f"run {self.run_id} failed: {exc}")
            self.log.error("run_failed", error=str(exc))
        finally:
            self._kill_workers()
            if route is not None:
                with contextlib.suppress(Exception):
                    route.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if status == "completed":
                thresholds_passed = _evaluate_thresholds(conn, self.run_id, w, self.say)
            self.log.info("run_finished", status=status, failure=self.failed)
            results.update_run(conn, self.run_id, status=status,
                               finished_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                               thresholds_passed=thresholds_passed)
            results.ingest_parent_events(conn, self.run_id, parent_events)
            rows = results.summary(conn, self.run_id)
            conn.close()
        if self._tty:
            print(file=self.options.console)
        print(format_summary(rows, "table", title=f"run {self.run_id} ({w.name}): {status}"),
              file=self.options.out, flush=True)
        code = (EXIT_OK if status == "completed" and thresholds_passed is not False else
                EXIT_INTERRUPTED if status == "interrupted" else EXIT_FAILED)
        return RunOutcome(self.run_id, status, code, rows)

    async def _prepare(self, spec: BackendSpec, endpoints: Endpoints) -> None:
        """Fresh server state; with ``prefill``, every key written once (write ids -1:0:i)."""
        w = self.workload
        backend = create_backend(spec.name, spec.type, spec.options, endpoints)
        await asyncio.wait_for(backend.prepare(), _PREPARE_TIMEOUT_S)
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
        self.log.info("prefilled", keys=w.keyspace, seconds=round(time.monotonic() - started, 3))

    async def _pass(self, conn: Any, spec: BackendSpec, repetition: int, route: ParentRoute,
                    upstream: Endpoints) -> None:
        w = self.workload
        label = f"{spec.name}" + (f" rep {repetition}/{w.repeat}" if w.repeat > 1 else "")
        structlog.contextvars.bind_contextvars(backend=spec.name, repetition=repetition)
        try:
            self.log.info("pass_started", backend_type=spec.type, options=dict(spec.options))
            await self._prepare(spec, upstream)
            files = await self._spawn_and_run(conn, spec, repetition, route, upstream, label)
            started = time.monotonic()
            rows = results.ingest_pass(conn, self.run_id, spec.name, repetition, files)
            took = time.monotonic() - started
            self.log.info("pass_ingested", ops=rows, seconds=round(took, 3))
            self.say(f"{label}: {rows:,} operations recorded, ingested in {took:.2f} s")
        finally:
            structlog.contextvars.unbind_contextvars("backend", "repetition")

    async def _spawn_and_run(self, conn: Any, spec: BackendSpec, repetition: int,
                             route: ParentRoute, upstream: Endpoints,
                             label: str) -> list[tuple[int, Path, Path]]:
        w = self.workload
        processes = w.process_count
        specs = [WorkerSpec(
            run_id=self.run_id, backend=spec.name, backend_type=spec.type,
            backend_options=dict(spec.options), repetition=repetition, process=i,
            processes=processes, workload=dict(w.raw),
            endpoints={"postgres_dsn": route.endpoints.postgres_dsn,
                       "valkey_url": route.endpoints.valkey_url,
                       "postgres_listener_dsn": route.endpoints.postgres_listener_dsn},
            network_mode=route.worker_mode, log_dir=str(self.log_dir),
        ) for i in range(processes)]
        files = [(s.process, self.log_dir / f"{s.stem}.ops.csv",
                  self.log_dir / f"{s.stem}.events.jsonl") for s in specs]
        async with self._workers_running(specs):
            await self._await_ready()
            start_ns = time.perf_counter_ns() + _BARRIER_DELAY_NS
            for worker in self._workers:
                worker.send({"type": "go", "start_ns": start_ns})
            self.log.info("barrier", start_ns=start_ns,
                          measure_start_ns=start_ns + int(w.warmup_s * 1e9))
            route.pass_started(spec.name, repetition, start_ns + int(w.warmup_s * 1e9))
            try:
                async with contextlib.AsyncExitStack() as hooks:
                    ctx = PassContext(self.run_id, spec, repetition, upstream, conn, self.log)
                    for hook in PASS_HOOKS:
                        await hooks.enter_async_context(hook(ctx))
                    await self._monitor(label)
            finally:
                route.pass_finished(spec.name, repetition)
        return files

    @contextlib.asynccontextmanager
    async def _workers_running(self, specs: list[WorkerSpec]) -> AsyncIterator[None]:
        self._workers = []
        try:
            for spec in specs:
                spec_path = self.log_dir / f"{spec.stem}.spec.json"
                spec_path.write_text(spec.to_json())
                stderr_path = self.log_dir / f"{spec.stem}.stderr"
                with open(stderr_path, "ab") as stderr:  # noqa: ASYNC230 - handed to the child
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "orchestrator.worker", str(spec_path),
                        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                        stderr=stderr)
                worker = _WorkerProcess(spec.process, proc, spec.stem, stderr_path)
                worker.reader = asyncio.create_task(worker.read_messages())
                self._workers.append(worker)
                self.log.info("worker_started", process=spec.process, pid=proc.pid)
            yield
        finally:
            await self._stop_workers()

    async def _await_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not all(w.ready.is_set() for w in self._workers):
            self._check_workers(before_start=True)
            if self.interrupted:
                raise OrchestratorError("interrupted while the workers were connecting")
            if time.monotonic() > deadline:
                raise WorkerError(f"workers did not connect within {_READY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.02)

    def _check_workers(self, before_start: bool = False) -> None:
        for worker in self._workers:
            code = worker.proc.returncode
            finished_silently = (code == 0 and not worker.done and worker.reader is not None
                                 and worker.reader.done())
            if code is not None and (code != 0 or finished_silently) and not self.interrupted:
                tail = worker.stderr_tail()
                message = (f"worker {worker.index} ({worker.stem}) exited with code {code}"
                           + (" before it was ready" if before_start else "")
                           + (f"; its stderr ends with:\n{tail}" if tail else ""))
                self.log.error("worker_failed", process=worker.index, exit_code=code,
                               stderr=tail)
                if before_start:
                    raise WorkerError(message)
                if self.failed is None:
                    self.failed = message
                    self.say(message)
                    for other in self._workers:
                        other.send({"type": "stop"})

    async def _monitor(self, label: str) -> None:
        w = self.workload
        expected = None if w.duration_s else (w.writers * w.write_iterations
                                              + w.readers * w.read_iterations)
        started = time.monotonic()
        last_print = 0.0
        interval = 0.5 if self._tty else 2.0
        stop_sent_at: float | None = None
        while any(wp.proc.returncode is None for wp in self._workers):
            self._check_workers()
            now = time.monotonic()
            if (self.interrupted or self.failed) and stop_sent_at is None:
                stop_sent_at = now
            if stop_sent_at is not None and now - stop_sent_at > _STOP_GRACE_S:
                self.log.warning("workers_killed", after_s=_STOP_GRACE_S)
                self._kill_workers()
            if now - last_print >= interval:
                self._progress(label, started, expected)
                last_print = now
            await asyncio.sleep(0.05)
        self._check_workers()
        self._progress(label, started, expected)
        if self._tty:
            print(file=self.options.console)
        for worker in self._workers:
            self.log.info("worker_exit", process=worker.index, exit_code=worker.proc.returncode,
                          ops=worker.ops, errors=worker.errors)

    async def _stop_workers(self) -> None:
        """Ask every worker still running to stop; kill and reap whatever does not."""
        for worker in self._workers:
            worker.send({"type": "stop"})
            if worker.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    worker.proc.stdin.close()
        deadline = time.monotonic() + _STOP_GRACE_S
        for worker in self._workers:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(worker.proc.wait(), remaining)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                await worker.proc.wait()
            if worker.reader is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker.reader, 1.0)


def _evaluate_thresholds(conn: Any, run_id: str, workload: Workload,
                         say: Callable[[str], None]) -> bool | None:
    """Evaluate the workload's thresholds (orchestrator.thresholds); None when there are none."""
    if not workload.thresholds:
        return None
    from orchestrator import analysis, thresholds

    analysis.install_views(conn)
    verdicts = thresholds.evaluate(conn, run_id, workload.thresholds)
    thresholds.store_results(conn, run_id, verdicts)
    for v in verdicts:
        mark = {True: "pass", False: "FAIL", None: "n/a "}[v.passed]
        measured = "-" if v.measured is None else f"{v.measured:.4g}"
        say(f"threshold {mark}  {v.backend}: {v.expression} (measured {measured})"
            + (f" — {v.note}" if v.note else ""))
    return thresholds.all_passed(verdicts)


@contextlib.asynccontextmanager
async def server_cost(ctx: PassContext) -> AsyncIterator[None]:
    """Sample the servers' cost during the pass into table ``server_cost`` (issue 5)."""
    from orchestrator import servercost

    kind = ctx.backend.type
    table = None
    if kind == "pgcache":
        with contextlib.suppress(Exception):
            from pgcache import CacheSettings, PostgresCache

            table = PostgresCache(CacheSettings(dsn=ctx.endpoints.postgres_dsn,
                                                **dict(ctx.backend.options))).table_name
    dsn = ctx.endpoints.postgres_dsn if kind == "pgcache" else None
    url = ctx.endpoints.valkey_url if kind in ("valkey", "valkey-client-cache") else None
    if not dsn and not url:
        yield
        return
    sampler = servercost.ServerCostSampler(postgres_dsn=dsn, valkey_url=url, table=table)
    try:
        await sampler.start()
    except Exception as exc:  # cost sampling must never break the benchmark
        ctx.log.warning("server_cost_unavailable", error=str(exc))
        yield
        return
    try:
        yield
    finally:
        samples = await sampler.stop()
        servercost.insert_samples(ctx.conn, ctx.run_id, ctx.backend.name, ctx.repetition,
                                  samples)
        if sampler.errors:
            ctx.log.warning("server_cost_errors", errors=sampler.errors[:5])


PASS_HOOKS.append(server_cost)


def run_workload(workload: Workload, options: RunOptions | None = None) -> RunOutcome:
    """Run a workload to the end (or interruption) and return its outcome."""
    runner = Runner(workload, options or RunOptions())
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(runner.run())
