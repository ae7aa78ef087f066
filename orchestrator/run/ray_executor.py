"""Workers as Ray actors: the executor that puts the load on many hosts.

:class:`RayExecutor` implements the :class:`~orchestrator.run.executor.Executor` seam with Ray
(the ``distributed`` extra): for a run it connects to a Ray cluster (``address``: ``auto``,
``ray://head:10001``, ...) and reserves a placement group, one bundle per node of
``workers_per_node`` workers, spread over the nodes (``SPREAD``: as far as the cluster allows;
``STRICT_SPREAD``: each bundle on a node of its own, or the run does not start). For each pass
it starts one :class:`WorkerActor` per worker in the group, and stops, kills and reaps them when
the pass ends, as the local executor does with processes.

Inside its actor a worker is the same function as in a local process,
:func:`~orchestrator.run.worker.run_worker`, on an event loop of its own thread. The protocol's
messages travel as Ray actor calls: the parent long-polls each actor (:meth:`WorkerActor.poll`)
for the worker's messages, and delivers its own (:meth:`WorkerActor.deliver`, numbered, so that
they are handled in the order sent). The worker writes its files on its own node, in a
temporary directory; every poll also brings back what was appended to them since the last one
(whole lines), and the parent appends it to the same files in the run's log directory, so the
same ingest loads them, and a worker that dies keeps what it had shipped.

Clocks: when a worker says :class:`Ready` and when it says :class:`Done`, the parent measures
its clock's offset (:mod:`orchestrator.run.clocks`) and writes it to ``<stem>.clock.csv``; the
ingest maps the worker's timestamps onto the parent's clock with it. :class:`Go`'s start time,
decided on the parent's clock, is sent on the worker's.

A Ray actor that dies, or whose node is lost, is a worker that died: its exit code is
:data:`DIED` (or -9 when the parent killed it) and its failure detail says what Ray reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.redaction import redact, redact_data
from orchestrator.results.logs import AppendOnlyFile, WorkerFiles, csv_field
from orchestrator.run.clocks import ClockOffset, ClockServer, measure, measure_direct
from orchestrator.run.executor import STOP_GRACE_S, Placement, Slot, ask_to_stop
from orchestrator.run.protocol import (
    Done,
    Failed,
    Go,
    ParentMessage,
    Progress,
    Ready,
    Stop,
    WorkerMessage,
    WorkerSpec,
    decode,
    encode,
)
from orchestrator.run.worker import run_worker
from orchestrator.workload.model import PLACEMENT_STRATEGIES, PlacementStrategy

POLL_S = 0.25  # how long a poll waits for the worker's next message
DIED = 1  # the exit code of a worker whose actor died without exiting (or whose node was lost)
KILLED = -9  # the exit code of a worker whose actor the parent killed
PLACEMENT_TIMEOUT_S = 60.0  # how long a placement group may take to be placed
_REAP_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 5.0
# Each kind of call has a thread of its own in the actor, so that a poll waiting for
# messages never delays a clock reading or a delivery.
_GROUPS = {"control": 1, "poll": 1, "clock": 1}


class ClusterError(OrchestratorError):
    """The Ray cluster cannot be reached, or cannot place the run's workers."""


def _ray() -> Any:
    """The ``ray`` module, or a UsageError saying how to install it."""
    try:
        import ray  # optional: the `distributed` extra
    except ImportError as exc:
        raise UsageError("executor ray needs Ray: pip install 'pgcache[distributed]' (on this "
                         "host and on every node of the cluster)") from exc
    return ray


class WorkerActor:
    """One worker in a Ray actor: :func:`run_worker` on an event loop of its own thread,
    its files in a temporary directory of its node, its messages and file chunks handed to the
    parent's polls. (A plain class: :class:`RayExecutor` makes it a Ray actor class.)"""

    def __init__(self, spec_json: str) -> None:
        spec = WorkerSpec.from_json(spec_json)
        self._dir = Path(tempfile.mkdtemp(prefix="pgcache-worker-"))
        self.spec = dataclasses.replace(spec, log_dir=str(self._dir))
        # Every application instance's files (one set with one instance per worker).
        self.streams = [path for files in self.spec.files() for path in files.streams]
        self._cond = threading.Condition()
        self._outbox: list[bytes] = []
        self._exit: int | None = None
        self._detail = ""
        self._shipped: dict[Path, int] = {}
        self._next = 1
        self._pending: dict[int, bytes | None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[ParentMessage | None] | None = None
        self._started = threading.Event()
        self._clock_server: ClockServer | None = None
        self._thread = threading.Thread(target=self._main, name="pgcache-worker", daemon=True)
        self._thread.start()
        self._started.wait()

    # -- the worker's thread ---------------------------------------------------------------
    def _main(self) -> None:
        run: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
        try:
            import uvloop  # optional: the faster event loop where it is installed

            run = uvloop.run
        except ImportError:
            pass
        try:
            code = run(self._run())
        except BaseException:  # reported to the parent as the worker's failure
            code, self._detail = 1, redact(traceback.format_exc(limit=20))
        with self._cond:
            self._exit = code
            self._cond.notify_all()
        self._started.set()

    async def _run(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._started.set()
        return await run_worker(self.spec, self._messages(), self._send, signals=False)

    async def _messages(self) -> AsyncIterator[ParentMessage]:
        assert self._inbox is not None
        while (message := await self._inbox.get()) is not None:
            yield message

    def _send(self, message: WorkerMessage) -> None:
        with self._cond:
            self._outbox.append(encode(message))
            self._cond.notify_all()

    # -- the parent's calls ----------------------------------------------------------------
    def where(self) -> dict[str, Any]:
        """The node, host and process this worker runs in, and the address of its clock
        server (started here, on the node's address: None if it cannot listen)."""
        import ray  # optional: only ever called inside a Ray actor

        ip = ray.util.get_node_ip_address()
        if self._clock_server is None:
            with contextlib.suppress(OSError):
                self._clock_server = ClockServer(ip, self.clock)
        return {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
                "ip": ip, "pid": os.getpid(),
                "clock": list(self._clock_server.address) if self._clock_server else None}

    def clock(self) -> int:
        """This worker's clock (what it stamps its records with)."""
        return time.perf_counter_ns() + self.spec.clock_skew_ns

    def deliver(self, seq: int, line: bytes | None) -> None:
        """The parent's message number ``seq`` (None: its input ends), handled in order."""
        with self._cond:
            self._pending[seq] = line
            while self._next in self._pending:
                item = self._pending.pop(self._next)
                self._next += 1
                message = None if item is None else decode(item)
                if message is not None and not isinstance(message, Go | Stop):
                    continue  # not a parent's message: nothing the worker could do with it
                if self._loop is not None and self._inbox is not None:
                    with contextlib.suppress(RuntimeError):  # the worker's loop has ended
                        self._loop.call_soon_threadsafe(self._inbox.put_nowait, message)

    def poll(self, timeout_s: float) -> tuple[list[bytes], dict[str, bytes], int | None, str]:
        """The worker's messages since the last poll (waiting up to ``timeout_s`` for one),
        what its files gained (whole lines, by file name), and once it has exited, its exit
        code and failure detail; with the exit code come the files' last bytes."""
        with self._cond:
            if not self._outbox and self._exit is None:
                self._cond.wait(timeout_s)
            messages, self._outbox = self._outbox, []
            code = self._exit
        chunks = {path.name: data for path in self.streams
                  if (data := self._take(path, final=code is not None))}
        if code is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        return messages, chunks, code, self._detail if code is not None else ""

    def _take(self, path: Path, *, final: bool) -> bytes:
        """What ``path`` gained since it was last shipped: up to its last newline, or all of
        it once the worker has exited."""
        start = self._shipped.get(path, 0)
        try:
            with open(path, "rb") as stream:
                stream.seek(start)
                data = stream.read()
        except FileNotFoundError:
            return b""
        if not final:
            data = data[:data.rfind(b"\n") + 1]
        self._shipped[path] = start + len(data)
        return data


# Which of the actor's threads each call runs on (declared on the methods: the Ray client
# takes no per-call concurrency group).
_METHOD_GROUPS = {"deliver": "control", "poll": "poll", "clock": "clock"}


def _actor_class(ray: Any) -> Any:
    """:class:`WorkerActor` as a Ray actor class, each call kind on a thread of its own."""
    for name, group in _METHOD_GROUPS.items():
        ray.method(concurrency_group=group)(getattr(WorkerActor, name))
    return ray.remote(concurrency_groups=_GROUPS)(WorkerActor)


class _RayWorker:
    """The parent's handle on one worker actor (a :class:`~orchestrator.run.executor.
    WorkerHandle`)."""

    def __init__(self, process: int, actor: Any, files: Sequence[WorkerFiles]) -> None:
        self._process = process
        self.actor = actor
        self.clock_path = files[0].clock  # the worker's clock: every instance's
        self._exit: int | None = None
        self._detail = ""
        self._killed = False
        self._seq = 0
        self._where: dict[str, Any] = {}
        self._located = asyncio.Event()
        self._start_offset: ClockOffset | None = None
        self._queue: asyncio.Queue[WorkerMessage | None] = asyncio.Queue()
        self._calls: set[asyncio.Task[None]] = set()
        self._outputs = {path.name: AppendOnlyFile(path) for f in files for path in f.streams}
        self.poller = asyncio.create_task(self._poll())

    @property
    def process(self) -> int:
        return self._process

    @property
    def exit_code(self) -> int | None:
        return self._exit

    async def locate(self) -> None:
        """Learn where the actor runs (once it exists); a dead actor leaves it unknown."""
        try:
            with contextlib.suppress(Exception):  # the poller reports the actor's death
                self._where = dict(await self.actor.where.remote())
        finally:
            self._located.set()

    async def _poll(self) -> None:
        try:
            while True:
                messages, chunks, code, detail = await self.actor.poll.remote(POLL_S)
                for name, data in chunks.items():
                    if not self._outputs[name].append(data):
                        error = self._outputs[name].error
                        self._fail(f"could not write {name}: "
                                   f"{error.strerror if error else 'error'}")
                        return
                for line in messages:
                    message = decode(line)
                    if not isinstance(message, Ready | Progress | Failed | Done):
                        continue
                    if isinstance(message, Ready):
                        self._start_offset = await self._measure("start")
                    elif isinstance(message, Done):
                        await self._measure("end")
                    self._queue.put_nowait(message)
                if code is not None:
                    self._exit, self._detail = int(code), str(detail)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the actor died, its node was lost, or it was killed
            self._exit = KILLED if self._killed else DIED
            how = "killed by the parent" if self._killed else "died, or its node was lost"
            self._detail = self._detail or (f"its Ray actor ended ({how}): "
                                            f"{type(exc).__name__}: {redact(str(exc))[:1500]}")
        finally:
            if self._exit is None:  # cancelled: its node gave no answer in time
                self._exit = DIED
                self._detail = self._detail or "its Ray actor gave no answer (node lost?)"
            for output in self._outputs.values():
                output.close()
            self._queue.put_nowait(None)

    def _fail(self, detail: str) -> None:
        self._detail = detail
        self._exit = DIED
        self.kill()

    async def _measure(self, stage: str) -> ClockOffset:
        """The worker's clock offset, written to its clock file and the parent's events:
        over a direct connection to the worker's clock server where the parent can reach it,
        else over Ray actor calls (a longer round trip: a larger uncertainty)."""
        await self._located.wait()
        server = self._where.get("clock")
        via = "direct"
        try:
            if not server:
                raise OSError("the worker has no clock server")
            offset = await asyncio.to_thread(measure_direct, (str(server[0]), int(server[1])),
                                             stage)
        except OSError:
            via = "ray"
            offset = await measure(
                lambda: self.actor.clock.remote(), stage)
        node, host = str(self._where.get("node", "")), str(self._where.get("host", ""))
        line = (f"{offset.stage},{offset.worker_ns},{offset.offset_ns},{offset.uncertainty_ns},"
                f"{offset.round_trip_ns},{offset.round_trips},{csv_field(node)},"
                f"{csv_field(host)}\n")
        clock_file = AppendOnlyFile(self.clock_path)
        clock_file.append(line.encode())
        clock_file.close()
        structlog.get_logger().info(
            "clock_offset", process=self._process, stage=stage, offset_ns=offset.offset_ns,
            uncertainty_ns=offset.uncertainty_ns, round_trip_ns=offset.round_trip_ns,
            node=node, host=host, via=via)
        return offset

    async def messages(self) -> AsyncIterator[WorkerMessage]:
        while (message := await self._queue.get()) is not None:
            yield message

    def send(self, message: ParentMessage) -> None:
        if isinstance(message, Go) and self._start_offset is not None:
            message = Go(message.start_ns - self._start_offset.offset_ns)
        self._deliver(encode(message))

    def close_input(self) -> None:
        """End the worker's input: a worker whose input ends stops by itself."""
        self._deliver(None)

    def _deliver(self, line: bytes | None) -> None:
        if self._exit is not None:
            return  # a message it can no longer read is moot
        self._seq += 1
        ref = self.actor.deliver.remote(self._seq, line)
        task = asyncio.ensure_future(self._settle(ref))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    @staticmethod
    async def _settle(ref: Any) -> None:
        with contextlib.suppress(Exception):  # an actor that died: the poller says so
            await ref

    def kill(self) -> None:
        if self._exit is None and not self._killed:
            self._killed = True
            with contextlib.suppress(Exception):  # already gone
                _ray().kill(self.actor, no_restart=True)

    def release(self) -> None:
        """End the actor (its worker has exited): its process goes back to the cluster."""
        for task in self._calls:
            task.cancel()
        with contextlib.suppress(Exception):  # already gone
            _ray().kill(self.actor, no_restart=True)

    def describe(self) -> dict[str, Any]:
        return dict(self._where)

    def failure_detail(self) -> str:
        return self._detail


class RayExecutor:
    """Runs each worker as a Ray actor, placed by a placement group (see the module's
    docstring). ``clock_skew_ns`` (process -> ns) sets an artificial clock skew in those
    workers: a test's way to check that the clock mapping removes it."""

    def __init__(self, address: str = "auto", *,
                 strategy: PlacementStrategy | str = PlacementStrategy.SPREAD,
                 workers_per_node: int = 1, cpus_per_worker: float = 1.0,
                 grace_s: float = STOP_GRACE_S,
                 placement_timeout_s: float = PLACEMENT_TIMEOUT_S,
                 clock_skew_ns: Mapping[int, int] | None = None) -> None:
        if strategy not in PLACEMENT_STRATEGIES:
            raise ValueError(f"strategy must be one of {PLACEMENT_STRATEGIES}, not {strategy!r}")
        self.address = address
        self.strategy = PlacementStrategy(strategy)
        self.workers_per_node = workers_per_node
        self.cpus_per_worker = cpus_per_worker
        self.grace_s = grace_s
        self.placement_timeout_s = placement_timeout_s
        self.clock_skew_ns = dict(clock_skew_ns or {})
        self._group: Any = None
        self._actor_class: Any = None

    def bundles(self, processes: int) -> list[dict[str, float]]:
        """The placement group's bundles: one per ``workers_per_node`` workers (the last may
        hold fewer), each with their CPUs (a token 0.01 when workers reserve none: a bundle
        cannot be empty)."""
        per = self.workers_per_node
        sizes = [min(per, processes - start) for start in range(0, processes, per)]
        return [{"CPU": max(size * self.cpus_per_worker, 0.01)} for size in sizes]

    @contextlib.asynccontextmanager
    async def reserve(self, processes: int) -> AsyncIterator[Placement]:
        """Connect to the cluster (unless this process already is) and reserve the placement
        group for the run; remove it, and disconnect, at the end."""
        ray = _ray()
        from ray.util.placement_group import (  # optional: the `distributed` extra
            placement_group,
            placement_group_table,
            remove_placement_group,
        )

        connected_here = not ray.is_initialized()
        if connected_here:
            self._check_reachable()
            try:
                ray.init(address=self.address, logging_level="warning", log_to_driver=False,
                         configure_logging=False)
            except Exception as exc:
                raise ClusterError(f"cannot connect to a Ray cluster at {self.address}: "
                                   f"{type(exc).__name__}: {redact(str(exc))[:500]}; start one "
                                   "(`ray start --head`, or `ray up CLUSTER.yaml`) or set "
                                   "ray_address") from exc
        group = None
        try:
            group = placement_group(self.bundles(processes),
                                                    strategy=self.strategy.value)
            try:
                await asyncio.wait_for(group.ready(), self.placement_timeout_s)
            except TimeoutError:
                raise ClusterError(self._unplaceable(ray, processes)) from None
            table = placement_group_table(group)
            bundle_nodes = table["bundles_to_node_id"]
            hosts = {node["NodeID"]: str(node.get("NodeManagerHostname") or
                                         node.get("NodeManagerAddress"))
                     for node in ray.nodes()}
            node_of = [str(bundle_nodes[i // self.workers_per_node]) for i in range(processes)]
            self._group = group
            self._actor_class = _actor_class(ray)
            yield Placement(tuple(Slot(node, hosts.get(node, "?")) for node in node_of))
        finally:
            self._group = None
            if group is not None:
                with contextlib.suppress(Exception):  # the cluster may be gone
                    remove_placement_group(group)
            if connected_here:
                ray.shutdown()

    def _check_reachable(self) -> None:
        """A cluster address (``HOST:PORT``, ``ray://HOST:PORT``, or ``auto`` through
        ``RAY_ADDRESS``) that accepts no connection is said at once: Ray itself retries for
        minutes."""
        address = os.environ.get("RAY_ADDRESS", "") if self.address == "auto" else self.address
        host, sep, port = address.removeprefix("ray://").rpartition(":")
        if not sep or not port.isdigit():
            return  # "local", or "auto" without RAY_ADDRESS: Ray finds (or starts) the cluster
        try:
            socket.create_connection((host.strip("[]"), int(port)),
                                     timeout=_CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise ClusterError(f"cannot connect to a Ray cluster at {address}: "
                               f"{exc.strerror or exc}; start one (`ray start --head`, or "
                               "`ray up CLUSTER.yaml`) or set ray_address") from exc

    def _unplaceable(self, ray: Any, processes: int) -> str:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        free = ray.available_resources().get("CPU", 0.0)
        bundles = self.bundles(processes)
        return (f"the Ray cluster cannot place {processes} workers within "
                f"{self.placement_timeout_s:g} s: {len(bundles)} bundle(s) of "
                f"{bundles[0]['CPU']:g} CPU with {self.strategy} (STRICT_SPREAD needs a node "
                f"per bundle), and it has {len(nodes)} live node(s) with {free:g} CPU free. "
                "Add nodes, or lower placement.cpus_per_worker, raise "
                "placement.workers_per_node, or use strategy SPREAD")

    @contextlib.asynccontextmanager
    async def workers(self, specs: Sequence[WorkerSpec]) -> AsyncIterator[
            Sequence[_RayWorker]]:
        if self._group is None:
            raise RuntimeError("RayExecutor.workers() outside reserve()")
        started: list[_RayWorker] = []
        try:
            for spec in specs:
                started.append(self._start(spec))
            await asyncio.gather(*(worker.locate() for worker in started))
            yield started
        finally:
            await self._stop(started)

    def _start(self, spec: WorkerSpec) -> _RayWorker:
        from ray.util.scheduling_strategies import (  # optional: the `distributed` extra
            PlacementGroupSchedulingStrategy,
        )

        log_dir = Path(spec.log_dir)
        record = redact_data(json.loads(spec.to_json()))
        (log_dir / f"{spec.stem}.spec.json").write_text(json.dumps(record))
        spec = dataclasses.replace(spec, clock_skew_ns=self.clock_skew_ns.get(spec.process, 0))
        strategy = PlacementGroupSchedulingStrategy(
            placement_group=self._group,
            placement_group_bundle_index=spec.process // self.workers_per_node)
        actor = self._actor_class.options(
            num_cpus=self.cpus_per_worker, max_restarts=0, max_task_retries=0,
            scheduling_strategy=strategy).remote(spec.to_json())
        return _RayWorker(spec.process, actor, spec.files())

    async def _stop(self, workers: Sequence[_RayWorker]) -> None:
        """Ask every worker still running to stop; kill whatever does not within the grace
        period; wait until each one's last poll is in; end the actors."""
        deadline = ask_to_stop(workers, self.grace_s)
        for worker in workers:
            remaining = max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait([worker.poller], timeout=remaining)
            if not done:
                worker.kill()
        pollers = [worker.poller for worker in workers]
        if pollers:
            _, late = await asyncio.wait(pollers, timeout=_REAP_TIMEOUT_S)
            for poller in late:  # an unreachable node: give up on it
                poller.cancel()
        for worker in workers:
            worker.release()
