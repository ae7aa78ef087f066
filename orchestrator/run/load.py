"""The load one worker generates: its writer and reader tasks, warm-up then measurement.

:class:`Load` runs this process's share of the workload's tasks (:func:`task_plan`) against
one backend instance, all concurrently on one event loop, and records every measured
operation as one CSV line (:mod:`orchestrator.results.logs`). The task loops are the hot path
of the harness: they bind what they use to locals and format each line with one f-string.
Closed loop by default; with a target rate each task runs open loop and an operation's latency
counts from its intended start (no coordinated omission). Open-loop tasks are woken at their
intended starts by a :class:`_Pacer`: the event loop's own timers round a wait up to a whole
millisecond, which an open loop would count as latency.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable

import structlog

from orchestrator.backends.base import Backend
from orchestrator.redaction import redact
from orchestrator.results.logs import CsvRecorder, csv_field, csv_row, needs_quoting
from orchestrator.run.keys import key_picker, task_rng, value_maker, zipf_cdf
from orchestrator.run.origin import Origin
from orchestrator.workload.model import Workload
from proxies import DelayClock

_ERROR_PAUSE_S = 0.001
# A task that has not suspended for this long yields to the others (operations that complete
# without I/O, such as local-cache hits, never suspend by themselves): this bounds how long
# other tasks, timers and incoming notifications wait for the event loop.
_SLICE_NS = 50_000


Clock = Callable[[], int]


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


def error_text(exc: BaseException) -> str:
    """An exception as recorded: ``Type: message``, passwords redacted, at most 300
    characters."""
    return redact(f"{type(exc).__name__}: {exc}")[:300]


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Pacer:
    """Wakes open-loop tasks at their intended start times, within tens of microseconds (a
    timerfd: proxies' :class:`~proxies.DelayClock`) rather than the loop's whole milliseconds.
    It may wake a task slightly early (it learns how late wake-ups are and arms that much
    sooner): an operation then counts from its actual start, never from a later one."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._clock = DelayClock(self._loop)

    async def until(self, when_ns: int) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._clock.call_at(when_ns, functools.partial(_release, waiter))
        await waiter

    def close(self) -> None:
        self._clock.close()


class _Phase:
    """One phase (warm-up or measurement) shared by every task of the worker."""

    def __init__(self, start_ns: int, until_ns: int | None, record: bool, purpose: str) -> None:
        self.start_ns = start_ns
        self.until_ns = until_ns
        self.record = record
        self.purpose = purpose


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
        self._pacer: _Pacer | None = None
        self._pace_offset_ns = 0

    async def _pace(self, when_ns: int) -> None:
        """Wait until ``when_ns`` on this load's clock (an open-loop task's next intended
        start); the pacer keeps ``perf_counter_ns`` time, which a skewed clock is ahead of by
        a constant."""
        if self._pacer is None:
            self._pacer = _Pacer()
            self._pace_offset_ns = self.clock() - time.perf_counter_ns()
        await self._pacer.until(when_ns - self._pace_offset_ns)

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
        if kind == "read" and self.workload.read_op == "get_or_set":
            await self._loading_reader(task, phase, count)
        elif kind == "read":
            await self._reader(task, phase, count)
        else:
            await self._writer(task, phase, count)

    async def _reader(self, task: int, phase: _Phase, count: int | None) -> None:
        get = self.backend.get
        pick = self._picker(task, phase.purpose)
        quoted, quote = self._quoted, csv_field
        clock = self.clock
        recorder = self.recorder
        rows = recorder.rows
        append = rows.append
        flush_at = recorder.flush_at
        record = phase.record
        until = phase.until_ns
        interval = self._interval_ns("read")
        think = self._think_s("read")
        sleep = asyncio.sleep
        pace = self._pace
        intended = phase.start_ns + self._offset_ns("read", task, interval)
        last_yield = clock()
        i = 0
        while not self.stopping and (count is None or i < count):
            key = pick()
            if interval:
                if until is not None and intended >= until:
                    break
                if clock() < intended:
                    await pace(intended)
                t0 = min(intended, clock())  # (the pacer may wake a few us early)
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
                    append(csv_row(task, "get", key, t0, t1 - t0, error=error_text(exc)))
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

    async def _loading_reader(self, task: int, phase: _Phase, count: int | None) -> None:
        """A reader whose reads are ``get_or_set``: on a miss the backend calls the loader,
        which pays the origin's cost and records its own execution (op ``load``; its version
        ``process:task:L<n>`` is what the value it produced carries)."""
        w = self.workload
        get_or_set = self.backend.get_or_set
        origin = self.origin
        if origin is None:
            raise RuntimeError("read_op get_or_set needs an origin")
        load = origin.load
        pick = self._picker(task, phase.purpose)
        quote = csv_field
        make_value = value_maker(w.value_size_min, w.value_size_max,
                                 task_rng(w.seed, task, f"loads:{phase.purpose}"))
        ttl = w.ttl_s
        prefix = f"{self.process}:{task}:L"
        clock = self.clock
        recorder = self.recorder
        append = recorder.rows.append
        record = phase.record
        until = phase.until_ns
        interval = self._interval_ns("read")
        think = self._think_s("read")
        sleep = asyncio.sleep
        pace = self._pace
        intended = phase.start_ns + self._offset_ns("read", task, interval)
        i = 0

        async def loader(key: str) -> bytes:
            loads = self._loads[task] = self._loads.get(task, 0) + 1
            load_id = f"{prefix}{loads}"
            s0 = clock()
            try:
                await load()
            except Exception as exc:
                if record:
                    append(csv_row(task, "load", key, s0, clock() - s0, version=load_id,
                                   error=error_text(exc)))
                raise
            if record:
                append(f"{task},load,{quote(key)},{s0},{clock() - s0},,,{load_id},,\n")
            return make_value(load_id)

        while not self.stopping and (count is None or i < count):
            key = pick()
            if interval:
                if until is not None and intended >= until:
                    break
                if clock() < intended:
                    await pace(intended)
                t0 = min(intended, clock())  # (the pacer may wake a few us early)
                intended += interval
            else:
                t0 = clock()
                if until is not None and t0 >= until:
                    break
            try:
                result = await get_or_set(key, functools.partial(loader, key), ttl)
            except Exception as exc:  # recorded, the task goes on
                t1 = clock()
                self.errors += 1
                if record:
                    append(csv_row(task, "get_or_set", key, t0, t1 - t0, error=error_text(exc)))
                await sleep(_ERROR_PAUSE_S)
            else:
                t1 = clock()
                if record:
                    value = result.value
                    if value is None:
                        append(csv_row(task, "get_or_set", key, t0, t1 - t0, hit=0, local=0))
                    else:
                        append(csv_row(task, "get_or_set", key, t0, t1 - t0, hit=1,
                                       local=1 if result.local else 0,
                                       version=value[:value.find(b"|")].decode()))
            if record and len(recorder.rows) >= recorder.flush_at:
                recorder.flush()
            i += 1
            await sleep(think)

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
        prefix = f"{self.process}:{task}:"
        seq = self._seq.get(task, 0)
        clock = self.clock
        recorder = self.recorder
        rows = recorder.rows
        append = rows.append
        flush_at = recorder.flush_at
        record = phase.record
        until = phase.until_ns
        interval = self._interval_ns("write")
        think = self._think_s("write")
        sleep = asyncio.sleep
        pace = self._pace
        intended = phase.start_ns + self._offset_ns("write", task, interval)
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
                    if until is not None and intended >= until:
                        break
                    if clock() < intended:
                        await pace(intended)
                    t0 = min(intended, clock())  # (the pacer may wake a few us early)
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
                                       error=error_text(exc)))
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
            if self._pacer is not None:
                self._pacer.close()
                self._pacer = None
        self.log.info("phase", phase="drain", ops=self.recorder.count, errors=self.errors)


async def _sleep_until(when_ns: int, clock: Clock) -> None:
    delay = (when_ns - clock()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
