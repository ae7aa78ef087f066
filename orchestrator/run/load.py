"""The load one worker generates: its writer and reader tasks, warm-up then measurement.

:class:`Load` runs this process's share of the workload's tasks (:func:`task_plan`) against
one backend instance, all concurrently on one event loop, and records every measured
operation as one CSV line (:mod:`orchestrator.results.logs`). Every task runs one loop,
:meth:`Load.run_task`: a :class:`~orchestrator.run.pacer.Pacer` says when each operation
starts (closed loop, with optional think time; or open loop at the workload's target rate,
latency counted from the intended start: no coordinated omission), a
:class:`~orchestrator.run.recorder.TaskRecorder` records it, and the loop yields to the event
loop's other tasks now and then. What differs between tasks is only the operation: a read
(:class:`_Read`), a ``get_or_set`` whose loader records its own executions
(:class:`_LoadingRead`), a write or delete (:class:`_Write`). The loop is the hot path of the
harness: it binds what it uses to locals.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from orchestrator.backends.base import Backend, GetResult
from orchestrator.results.logs import CsvRecorder, csv_field, needs_quoting
from orchestrator.run.keys import key_picker, task_rng, value_maker, zipf_cdf
from orchestrator.run.origin import Origin
from orchestrator.run.pacer import STOP, WAIT, Clock, Pacer, Waker
from orchestrator.run.recorder import TaskRecorder, write_tail
from orchestrator.run.recorder import error_text as error_text
from orchestrator.workload.model import Workload

_ERROR_PAUSE_S = 0.001
# A task that has not suspended for this long yields to the others (operations that complete
# without I/O, such as local-cache hits, never suspend by themselves): this bounds how long
# other tasks, timers and incoming notifications wait for the event loop.
_SLICE_NS = 50_000


def worker_clock(skew_ns: int = 0) -> Clock:
    """The clock a worker records with: ``time.perf_counter_ns``, ahead by ``skew_ns`` (an
    artificial skew for tests; the function itself when there is none, so the hot path pays
    nothing for it)."""
    if not skew_ns:
        return time.perf_counter_ns
    now = time.perf_counter_ns

    def skewed() -> int:
        return now() + skew_ns

    return skewed


def task_plan(workload: Workload, process: int, processes: int) -> list[tuple[str, int]]:
    """The tasks of application instance ``process`` of ``processes``: ("write"|"read",
    global task id). Writers first, then readers."""
    plan = [("write", t) for t in range(workload.writers) if t % processes == process]
    plan += [("read", workload.writers + r) for r in range(workload.readers)
             if r % processes == process]
    return plan


class _Phase:
    """One phase (warm-up or measurement) shared by every task of the worker."""

    def __init__(self, start_ns: int, until_ns: int | None, record: bool, purpose: str) -> None:
        self.start_ns = start_ns
        self.until_ns = until_ns
        self.record = record
        self.purpose = purpose


class _Operation(Protocol):
    """What one kind of task does, operation after operation: the rest is the task loop's."""

    @property
    def op(self) -> str:
        """The op column of the operation prepared last."""

    @property
    def version(self) -> str | None:
        """The version column it records when it fails (a write's id)."""

    def prepare(self) -> str:
        """Draw the next operation (its key, and whatever else it needs); its key."""

    @property
    def reads(self) -> bool:
        """Whether :meth:`call` returns a :class:`GetResult` (recorded by
        :func:`~orchestrator.run.recorder.read_tail`), or else a write's server version
        (:func:`~orchestrator.run.recorder.write_tail`, with :attr:`version`)."""

    def call(self, key: str) -> Awaitable[Any]:
        """Run the operation prepared last."""


# The operations keep every attribute the task loop reads in a slot: a class attribute read
# through an instance is a slower lookup on the hot path.

class _Read:
    """``get``: records hit, local and the write id of the value read."""

    __slots__ = ("call", "op", "prepare", "reads", "version")

    def __init__(self, backend: Backend, pick: Callable[[], str]) -> None:
        self.prepare = pick
        self.call = backend.get
        self.op = "get"
        self.version: str | None = None
        self.reads = True


class _LoadingRead:
    """``get_or_set``: on a miss the backend calls the loader, which pays the origin's cost
    and records its own execution (op ``load``; its version ``process:task:L<n>`` is what the
    value it produced carries)."""

    __slots__ = ("_clock", "_get_or_set", "_load", "_make_value", "_prefix", "_recorder",
                 "_ttl", "loads", "op", "prepare", "reads", "version")

    def __init__(self, backend: Backend, pick: Callable[[], str], origin: Origin,
                 make_value: Callable[[str], bytes], ttl: float, prefix: str, loads: int,
                 clock: Clock, recorder: TaskRecorder) -> None:
        self.prepare = pick
        self.op = "get_or_set"
        self.version: str | None = None
        self.reads = True
        self.loads = loads  # loader executions so far, over the phases
        self._get_or_set = backend.get_or_set
        self._load = origin.load
        self._make_value = make_value
        self._ttl = ttl
        self._prefix = prefix
        self._clock = clock
        self._recorder = recorder

    def call(self, key: str) -> Awaitable[GetResult]:
        return self._get_or_set(key, functools.partial(self._loader, key), self._ttl)

    async def _loader(self, key: str) -> bytes:
        self.loads += 1
        load_id = f"{self._prefix}{self.loads}"
        clock = self._clock
        s0 = clock()
        try:
            await self._load()
        except Exception as exc:
            self._recorder.failed("load", key, s0, clock(), exc, load_id)
            raise
        self._recorder.ok("load", key, s0, clock(), write_tail(load_id, None))
        return self._make_value(load_id)


class _Write:
    """``set`` of a value carrying its write id (``process:task:seq``), or, with the
    workload's ``delete_ratio``, ``delete``: both record the write id."""

    __slots__ = ("_delete", "_delete_ratio", "_make_value", "_pick", "_prefix", "_rand",
                 "_set", "_ttl", "_value", "op", "reads", "seq", "version")

    def __init__(self, backend: Backend, pick: Callable[[], str],
                 make_value: Callable[[str], bytes], rand: Callable[[], float],
                 delete_ratio: float, ttl: float, prefix: str, seq: int) -> None:
        self._pick = pick
        self._set = backend.set
        self._delete = backend.delete
        self._make_value = make_value
        self._rand = rand
        self._delete_ratio = delete_ratio
        self._ttl = ttl
        self._prefix = prefix
        self.seq = seq  # writes drawn so far, over the phases
        self.op = "set"
        self.version: str | None = None
        self.reads = False
        self._value: bytes | None = None  # the value to set; None: delete

    def prepare(self) -> str:
        key = self._pick()
        seq = self.seq = self.seq + 1
        write_id = self.version = f"{self._prefix}{seq}"
        ratio = self._delete_ratio
        if ratio and self._rand() < ratio:
            self.op = "delete"
            self._value = None
        else:
            self.op = "set"
            self._value = self._make_value(write_id)
        return key

    def call(self, key: str) -> Awaitable[int | None]:
        # The backend's own awaitable, not a coroutine of ours around it: one frame less.
        value = self._value
        if value is None:
            return self._delete(key)
        return self._set(key, value, self._ttl)


_NO_LIMIT = sys.maxsize

class Load:
    """Runs the tasks of one application instance against its backend client.

    ``process`` is the instance's number and ``processes`` how many instances the pass has
    (with one instance per worker process, the default, they are the worker processes): the
    tasks are split over the instances, and the instance's number starts its write ids.
    """

    def __init__(self, workload: Workload, process: int, processes: int, backend: Backend,
                 recorder: CsvRecorder, origin: Origin | None = None,
                 clock: Clock = time.perf_counter_ns) -> None:
        self.clock = clock
        self.process = process
        self.origin = origin  # what get_or_set's loader costs (read_op: get_or_set)
        self.processes = processes
        self.workload = workload
        self.backend = backend
        self.recorder = recorder
        self.stopping = False
        self.errors = 0
        self.log = structlog.get_logger()
        self._cdf = (zipf_cdf(workload.keyspace, workload.key_distribution.theta)
                     if workload.key_distribution.kind == "zipfian" else None)
        self._seq: dict[int, int] = {}
        self._loads: dict[int, int] = {}
        # Generated keys are prefix + digits: only the prefix can need CSV quoting.
        self._quoted = needs_quoting(workload.key_prefix)
        self._waker: Waker | None = None  # one for every open-loop task, made on first use
        self._pace_offset_ns = 0

    async def _pace(self, when_ns: int) -> None:
        """Wait until ``when_ns`` on this load's clock (an open-loop task's next intended
        start); the waker keeps ``perf_counter_ns`` time, which a skewed clock is ahead of by
        a constant."""
        if self._waker is None:
            self._waker = Waker()
            self._pace_offset_ns = self.clock() - time.perf_counter_ns()
        await self._waker.until(when_ns - self._pace_offset_ns)

    def stop(self) -> None:
        self.stopping = True

    def _picker(self, task: int, purpose: str) -> Callable[[], str]:
        w = self.workload
        return key_picker(w.key_distribution, w.keyspace, w.key_prefix,
                          task_rng(w.seed, task, f"keys:{purpose}"), self._cdf)

    def _offset_ns(self, kind: str, task: int, interval: int) -> int:
        """Where an open-loop task's schedule starts within its first interval: the tasks of a
        kind are spread evenly over it, so that together they issue at an even rate (all
        starting at once would send every interval's operations in one burst)."""
        w = self.workload
        index, count = (task, w.writers) if kind == "write" else (task - w.writers, w.readers)
        return interval * index // max(count, 1)

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
        """Run task ``task`` (``kind`` "write" or "read") through ``phase``: ``count``
        operations, or until the phase ends (or the load stops)."""
        w = self.workload
        recorder = TaskRecorder(self.recorder if phase.record else None, task, self._quoted)
        pick = self._picker(task, phase.purpose)
        operation: _Operation
        if kind == "write":
            value_rng = task_rng(w.seed, task, f"values:{phase.purpose}")
            write = _Write(self.backend, pick,
                           value_maker(w.value_size_min, w.value_size_max, value_rng),
                           value_rng.random, w.delete_ratio, w.ttl_s,
                           f"{self.process}:{task}:", self._seq.get(task, 0))
            try:
                await self._loop(task, kind, phase, count, write, recorder)
            finally:
                self._seq[task] = write.seq
            return
        if w.read_op == "get_or_set":
            if self.origin is None:
                raise RuntimeError("read_op get_or_set needs an origin")
            loading = _LoadingRead(
                self.backend, pick, self.origin,
                value_maker(w.value_size_min, w.value_size_max,
                            task_rng(w.seed, task, f"loads:{phase.purpose}")),
                w.ttl_s, f"{self.process}:{task}:L", self._loads.get(task, 0), self.clock,
                recorder)
            try:
                await self._loop(task, kind, phase, count, loading, recorder)
            finally:
                self._loads[task] = loading.loads
            return
        operation = _Read(self.backend, pick)
        await self._loop(task, kind, phase, count, operation, recorder)

    async def _loop(self, task: int, kind: str, phase: _Phase, count: int | None,
                    operation: _Operation, recorder: TaskRecorder) -> None:
        """The loop every task runs: pace, run the operation, record it, now and then yield."""
        interval = self._interval_ns(kind)
        think = self._think_s(kind)
        pacer = Pacer(self.clock, phase.until_ns, interval_ns=interval,
                      first_ns=phase.start_ns + self._offset_ns(kind, task, interval),
                      think_s=think, wake=self._pace)
        start, wait = pacer.start, pacer.wait
        # Two inlined copies, each worth more than the 3% the harness's ceiling may lose
        # (callgrind, instructions per operation of workloads/harness-ceiling.yaml's mix, a
        # fixed count on the null backend, 2026-12-08: 21,856 with both inlined):
        # - a closed loop without think time starts each operation now: Pacer._closed,
        #   inlined (calling pacer.start() costs 742 more, +3.4%);
        # - a success is recorded with TaskRecorder.ok's line, read_tail's or write_tail's
        #   columns in it (calling them costs 1,818 more, +8.3%).
        # tests/orchestrator/run/test_load.py checks that each copy writes the same lines.
        closed = not interval and not think
        until = _NO_LIMIT if phase.until_ns is None else phase.until_ns
        prepare, call, reads = operation.prepare, operation.call, operation.reads
        failed = recorder.failed
        target = recorder.target
        record = target is not None
        rows: list[str] = target.rows if target is not None else []
        append, flush_at = rows.append, recorder.flush_at
        quoted = recorder.quoted
        clock = self.clock
        sleep = asyncio.sleep
        left = _NO_LIMIT if count is None else count
        last_yield = clock()
        while left > 0 and not self.stopping:
            key = prepare()
            if closed:
                t0 = clock()
                if t0 >= until:
                    break
            else:
                t0 = start()
                if t0 < 0:
                    if t0 == WAIT:
                        await wait()
                        if self.stopping:
                            break
                        t0 = start()
                        last_yield = t0
                    if t0 == STOP:
                        break
            try:
                result = await call(key)
            except Exception as exc:  # recorded, the task goes on
                t1 = clock()
                self.errors += 1
                failed(operation.op, key, t0, t1, exc, operation.version)
                await sleep(_ERROR_PAUSE_S)
                last_yield = t1
            else:
                t1 = clock()
                if record:  # one f-string per line (a tail built apart costs ~300 more)
                    field = csv_field(key) if quoted else key
                    if not reads:
                        append(f"{task},{operation.op},{field},{t0},{t1 - t0},,,"
                               f"{operation.version},{'' if result is None else result},\n")
                    elif (value := result.value) is None:
                        append(f"{task},{operation.op},{field},{t0},{t1 - t0},0,0,,,\n")
                    else:
                        append(f"{task},{operation.op},{field},{t0},{t1 - t0},1,"
                               f"{1 if result.local else 0},"
                               f"{value[:value.find(b'|')].decode()},,\n")
                    if len(rows) >= flush_at:
                        recorder.flush()
            left -= 1
            if t1 - last_yield > _SLICE_NS:
                await sleep(0)
                last_yield = t1

    async def run(self, start_ns: int) -> None:
        """Warm up (unrecorded), then measure, every task of this process concurrently."""
        w = self.workload
        plan = task_plan(w, self.process, self.processes)
        measure_start = start_ns + int(w.warmup_s * 1e9)
        await _sleep_until(start_ns, self.clock)
        if w.warmup_s > 0 and not self.stopping:
            self.log.info("phase", phase="warmup", start_ns=start_ns, until_ns=measure_start)
            warm = _Phase(start_ns, measure_start, False, "warmup")
            await asyncio.gather(*(self.run_task(k, t, warm, None) for k, t in plan))
            await _sleep_until(measure_start, self.clock)
        if self.stopping:
            return
        until = measure_start + int(w.duration_s * 1e9) if w.duration_s else None
        self.log.info("phase", phase="measure", start_ns=measure_start, until_ns=until,
                      tasks=len(plan))
        phase = _Phase(measure_start, until, True, "measure")
        try:
            await asyncio.gather(*(
                self.run_task(kind, task, phase, None if w.duration_s else
                              (w.write_iterations if kind == "write" else w.read_iterations))
                for kind, task in plan))
        finally:
            if self._waker is not None:
                self._waker.close()
                self._waker = None
        self.log.info("phase", phase="drain", ops=self.recorder.count, errors=self.errors)


async def _sleep_until(when_ns: int, clock: Clock) -> None:
    delay = (when_ns - clock()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
