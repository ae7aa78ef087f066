"""Invalidation fan-out benchmark: what one writer's invalidations cost as listening instances
multiply, with a listener per instance, with one shared listener per host, and for the Valkey
client-tracking peer.

    python -m orchestrator.pgcache_bench.fanout [--instances 1 4 16 64 128]
        [--rates 500 2000] [--seconds 5] [--processes 4] [--paths own shared valkey] [--json]

For every rate, instance count and path, N listening instances are spread over
``--processes`` worker processes and one writer sets 1 000 keys at a fixed rate, open loop.
Paths: ``own`` (pgcache, a listener per instance), ``shared`` (pgcache,
``shared_listener=True``: one per host) and ``valkey`` (the ``valkey-tracking`` backend: a
local cache per instance kept coherent by CLIENT TRACKING). Valkey tells a client of a write
only if the client has read the key since its last invalidation, so every valkey instance
reads all the keys first and reads each invalidated key again at once (those reads are part
of what its server pays per write; pgcache's listeners hear of every key without them). Every
instance records when each invalidation arrived (``perf_counter_ns``, system-wide on Linux);
the lag of a write in an instance is from the writer's ``set`` returning to its arrival there
(0 if it arrived first). Reported per point: lag p50/p99/max over every (write, instance)
pair, missing deliveries (pairs that never arrived), the server's CPU per 1 000 sets
(PostgreSQL's, or Valkey's; the server-cost sampler's ``cpu_seconds``), and the writer's set
p99.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import multiprocessing
import os
import queue
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.backends.valkey_tracking import ValkeyTrackingBackend
from orchestrator.pgcache_bench.microbench import percentile
from orchestrator.results.servercost import ServerCostSampler
from orchestrator.services import running_services
from pgcache import CacheSettings, PostgresCache
from proxies import Endpoints

PREFIX = "fanout_"
CHANNEL = "fanout_events"
KEYS = 1000
SETTLE_S = 1.0  # after the writer stops: late arrivals still count
_CONNECT_BUDGET_S = 120.0  # for every listener process to start and connect


@dataclass(frozen=True, slots=True)
class _Start:
    """How the listener processes and the writer agree on when the measurement starts: each
    child says it is connected (``ready``), the parent then sets ``stop`` and opens ``go``.
    A fixed head start would not do: on a loaded machine, starting a Python process and
    connecting its instances can take longer than any budget short enough to be cheap."""

    ready: Any  # a multiprocessing Queue: one item per connected child
    go: Any  # a multiprocessing Event: the writer has fixed the stop time
    stop: Any  # a multiprocessing Value("d"): when the writer stops (monotonic)

    async def connected(self) -> float:
        """Say this child is connected; wait for the writer's go; when it stops."""
        self.ready.put(os.getpid())
        if not await asyncio.to_thread(self.go.wait, _CONNECT_BUDGET_S):
            raise RuntimeError("fanout: the writer never started")
        return float(self.stop.value)


@dataclass(frozen=True, slots=True)
class FanoutPoint:
    """One measured point of the fan-out table."""

    path: str
    instances: int
    rate: int
    sets: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    missing: int
    server_cpu_s_per_1000_sets: float
    set_p99_ms: float


def _quantile(samples: list[int], q: float) -> float:
    """The q-quantile of nanosecond samples, in milliseconds (NaN if there are none)."""
    return percentile(samples, q) / 1000.0 if samples else float("nan")


async def _paced(rate: int, start: float, stop: float) -> AsyncIterator[tuple[int, int]]:
    """An open loop at ``rate`` per second from ``start`` until ``stop`` (monotonic seconds):
    yields each operation's number and its intended start (perf_counter ns; a late wake-up
    counts from when the operation was due)."""
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    interval = 1.0 / rate
    due = time.monotonic()
    i = 0
    while due < stop:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i, time.perf_counter_ns() - int(max(0.0, -delay) * 1e9)
        i += 1
        due += interval


async def _read_all(backend: ValkeyTrackingBackend) -> None:
    """Read every key, so that the server tells this instance of the next write of each."""
    for i in range(KEYS):
        await backend.get(f"fanout:{i}")


async def _listen_valkey(url: str, count: int, start: _Start) -> list[array.array[int]]:
    """``count`` valkey-tracking instances until ``stop``: per instance, (key number, ns)
    pairs; each re-reads an invalidated key at once, so that it is told of the next write."""
    arrivals: list[array.array[int]] = []
    backends = []
    clock = time.perf_counter_ns
    loop = asyncio.get_running_loop()
    endpoints = Endpoints(postgres_dsn="", valkey_url=url, postgres_listener_dsn="")
    rereads: set[asyncio.Task[Any]] = set()
    failed = 0

    def settled(task: asyncio.Task[Any]) -> None:
        """A re-read is done; one that failed (its instance lost a connection and starts
        over) is counted, and its key's next deliveries are missing until read again."""
        nonlocal failed
        rereads.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failed += 1

    for index in range(count):
        backend = ValkeyTrackingBackend(f"fanout-{index}", {}, endpoints)
        seen: array.array[int] = array.array("q")

        def record(key: str | None, version: int | None, at: int,
                   seen: array.array[int] = seen, backend: ValkeyTrackingBackend = backend
                   ) -> None:
            task: asyncio.Task[Any]
            if key is None:  # flushed (its connection was lost): tracking starts over
                task = loop.create_task(_read_all(backend))
            elif key.startswith("fanout:"):
                seen.append(int(key[7:]))
                seen.append(clock())
                task = loop.create_task(backend.get(key))
            else:
                return
            rereads.add(task)
            task.add_done_callback(settled)

        backend.set_invalidation_hook(record)
        await backend.connect()
        await _read_all(backend)
        backends.append(backend)
        arrivals.append(seen)
    stop = await start.connected()
    await asyncio.sleep(max(0.0, stop + SETTLE_S - time.monotonic()))
    for backend in backends:
        await backend.close()
    if failed:
        print(f"fanout: valkey, {count} instances in this process: {failed} re-reads failed "
              "on a lost connection", file=sys.stderr)
    return arrivals


async def _listen(fields: dict[str, Any], count: int,
                  start: _Start) -> list[array.array[int]]:
    """``count`` listening instances until ``stop``: per instance, (version, ns) pairs."""
    settings = CacheSettings(**fields)
    arrivals: list[array.array[int]] = []
    caches = []
    clock = time.perf_counter_ns
    for _ in range(count):
        cache = PostgresCache(settings)
        seen: array.array[int] = array.array("q")

        def record(key: str | None, version: int | None, seen: array.array[int] = seen) -> None:
            if version is not None and key is not None:
                seen.append(version)
                seen.append(clock())

        cache.add_invalidation_callback(record)
        await cache.connect()
        caches.append(cache)
        arrivals.append(seen)
    stop = await start.connected()
    await asyncio.sleep(max(0.0, stop + SETTLE_S - time.monotonic()))
    for cache in caches:
        await cache.close()
    return arrivals


def _await_connected(start: _Start, children: list[Any]) -> None:
    """Until every listener process has said it is connected; one that exits first, or a
    budget spent, is an error (measuring without it would count its deliveries missing)."""
    deadline = time.monotonic() + _CONNECT_BUDGET_S
    waiting = len(children)
    while waiting:
        try:
            start.ready.get(timeout=0.2)
            waiting -= 1
        except queue.Empty:
            exited = [child.exitcode for child in children if child.exitcode is not None]
            if exited:
                raise RuntimeError("fanout: a listener process exited with code "
                                   f"{exited[0]} before it connected") from None
            if time.monotonic() > deadline:
                raise RuntimeError("fanout: the listener processes did not connect within "
                                   f"{_CONNECT_BUDGET_S:.0f} s") from None


def _listener_process(fields: dict[str, Any], count: int, start: _Start, out: str) -> None:
    if "valkey_url" in fields:
        arrivals = asyncio.run(_listen_valkey(fields["valkey_url"], count, start))
    else:
        arrivals = asyncio.run(_listen(fields, count, start))
    Path(out).write_bytes(b"".join(len(seen).to_bytes(8, "little") + seen.tobytes()
                                   for seen in arrivals))


def _read_pairs(path: str) -> list[list[tuple[int, int]]]:
    """Per instance: (version or key number, arrival ns), in arrival order."""
    instances = []
    data = Path(path).read_bytes() if Path(path).exists() else b""  # a crashed child: none
    offset = 0
    while offset < len(data):
        length = int.from_bytes(data[offset:offset + 8], "little")
        offset += 8
        values: array.array[int] = array.array("q")
        values.frombytes(data[offset:offset + 8 * length])
        offset += 8 * length
        instances.append(list(zip(values[0::2], values[1::2], strict=True)))
    return instances


async def _write(settings: CacheSettings, rate: int, start: float,
                 stop: float) -> tuple[dict[int, int], list[int]]:
    """Open loop at ``rate`` sets/s between ``start`` and ``stop``: version -> returned ns,
    and every set's latency (ns, from its intended start)."""
    returned: dict[int, int] = {}
    latencies: list[int] = []
    async with PostgresCache(settings) as writer:
        async for i, intended in _paced(rate, start, stop):
            version = await writer.set(f"fanout:{i % KEYS}", b"x" * 100)
            now = time.perf_counter_ns()
            returned[version] = now
            latencies.append(now - intended)
    return returned, latencies


async def _write_valkey(url: str, rate: int, start: float,
                        stop: float) -> tuple[list[tuple[int, int, int]], list[int]]:
    """As ``_write`` for Valkey: (key number, sent ns, returned ns) per set, latencies."""
    writes: list[tuple[int, int, int]] = []
    latencies: list[int] = []
    writer = ValkeyTrackingBackend("fanout-writer", {"local_max_entries": 1},
                                   Endpoints(postgres_dsn="", valkey_url=url,
                                             postgres_listener_dsn=""))
    await writer.connect()
    try:
        async for i, intended in _paced(rate, start, stop):
            sent = time.perf_counter_ns()
            await writer.set(f"fanout:{i % KEYS}", b"x" * 100, ttl_seconds=3600.0)
            now = time.perf_counter_ns()
            writes.append((i % KEYS, sent, now))
            latencies.append(now - intended)
    finally:
        await writer.close()
    return writes, latencies


def _lags_by_version(returned: dict[int, int],
                     arrivals: list[list[tuple[int, int]]]) -> tuple[list[int], int]:
    lags: list[int] = []
    found = 0
    for pairs in arrivals:
        seen = dict(pairs)
        for version, at in returned.items():
            arrived = seen.get(version)
            if arrived is not None:
                found += 1
                lags.append(max(0, arrived - at))
    return lags, len(arrivals) * len(returned) - found


def _lags_by_key(writes: list[tuple[int, int, int]],
                 arrivals: list[list[tuple[int, int]]]) -> tuple[list[int], int]:
    """Valkey names no versions: a write's arrival is the first invalidation of its key
    after it was sent and before the key's next write was sent (writes of one key are
    seconds apart here); none in that window is a missing delivery."""
    lags: list[int] = []
    found = 0
    next_sent: dict[tuple[int, int], int] = {}
    last: dict[int, tuple[int, int]] = {}
    for key, sent, _ in writes:
        if key in last:
            next_sent[last[key]] = sent
        last[key] = (key, sent)
    for pairs in arrivals:
        by_key: dict[int, list[int]] = {}
        for key, at in pairs:
            by_key.setdefault(key, []).append(at)
        for key, sent, returned in writes:
            until = next_sent.get((key, sent), 1 << 62)
            arrived = next((t for t in by_key.get(key, []) if sent <= t < until), None)
            if arrived is not None:
                found += 1
                lags.append(max(0, arrived - returned))
    return lags, len(arrivals) * len(writes) - found


async def measure(dsn: str, url: str, path: str, instances: int, rate: int, seconds: float,
                  processes: int) -> FanoutPoint:
    base: dict[str, Any] = dict(dsn=dsn, schema_prefix=PREFIX, notify_channel=CHANNEL,
                                application_name="fanout", sweep_interval_seconds=0,
                                min_pool_size=1, max_pool_size=2,
                                shared_listener=path == "shared")
    writer = CacheSettings(**{**base, "local_max_entries": 0, "max_pool_size": 4})
    await PostgresCache.init_db(writer)
    context = multiprocessing.get_context("spawn")
    share = [instances // processes + (1 if p < instances % processes else 0)
             for p in range(min(processes, instances))]
    handshake = _Start(context.Queue(), context.Event(), context.Value("d", 0.0))
    with tempfile.TemporaryDirectory(prefix="pgcache-fanout-") as tmp:
        outs = [os.path.join(tmp, f"{p}.bin") for p in range(len(share))]
        fields = {"valkey_url": url} if path == "valkey" else base
        children = [context.Process(target=_listener_process,
                                    args=(fields, count, handshake, out), daemon=True)
                    for count, out in zip(share, outs, strict=True)]
        for child in children:
            child.start()
        server = {"valkey_url": url} if path == "valkey" else {"postgres_dsn": dsn}
        try:
            async with ServerCostSampler(**server, interval_s=3600) as sampler:
                await asyncio.to_thread(_await_connected, handshake, children)
                start = time.monotonic() + 0.1
                stop = start + seconds
                handshake.stop.value = stop
                handshake.go.set()
                await asyncio.sleep(max(0.0, start - time.monotonic()))
                sampler.samples.extend(await sampler.sample())
                if path == "valkey":
                    writes, latencies = await _write_valkey(url, rate, start, stop)
                else:
                    returned, latencies = await _write(writer, rate, start, stop)
                cpu = [s.value for s in await sampler.sample() if s.metric == "cpu_seconds"]
            for child in children:
                await asyncio.to_thread(child.join, 60 + seconds)
        finally:
            for child in children:
                if child.is_alive():
                    child.kill()
        first = [s.value for s in sampler.samples if s.metric == "cpu_seconds"]
        arrivals = [pairs for out in outs for pairs in _read_pairs(out)]
    if path == "valkey":
        lags, missing = _lags_by_key(writes, arrivals)
        sets = len(writes)
    else:
        lags, missing = _lags_by_version(returned, arrivals)
        sets = len(returned)
    lags.sort()
    latencies.sort()
    spent = (cpu[-1] - first[0]) if cpu and first else float("nan")
    return FanoutPoint(path, instances, rate, sets, _quantile(lags, 0.5), _quantile(lags, 0.99),
                 (lags[-1] / 1e6) if lags else float("nan"), missing,
                 spent / max(1, sets) * 1000, _quantile(latencies, 0.99))


async def run(instances: list[int], rates: list[int], seconds: float, processes: int,
              paths: list[str]) -> list[FanoutPoint]:
    points: list[FanoutPoint] = []
    with running_services(need_valkey="valkey" in paths) as services:
        for rate in rates:
            for count in instances:
                for path in paths:
                    point = await measure(services.postgres_dsn, services.valkey_url, path,
                                          count, rate, seconds, processes)
                    print(render([point], header=not points), file=sys.stderr)
                    points.append(point)
        await PostgresCache.drop_db(CacheSettings(dsn=services.postgres_dsn,
                                                  schema_prefix=PREFIX))
    return points


def render(points: list[FanoutPoint], header: bool = True) -> str:
    lines = []
    if header:
        lines.append(f"{'path':<7}{'N':>5}{'sets/s':>8}{'lag p50':>9}{'p99':>8}{'max ms':>8}"
                     f"{'missing':>9}{'server CPU s/1000 sets':>24}{'set p99 ms':>12}")
    for p in points:
        lines.append(f"{p.path:<7}{p.instances:>5}{p.rate:>8}{p.lag_p50_ms:>9.2f}"
                     f"{p.lag_p99_ms:>8.2f}{p.lag_max_ms:>8.1f}{p.missing:>9}"
                     f"{p.server_cpu_s_per_1000_sets:>24.3f}{p.set_p99_ms:>12.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.pgcache_bench.fanout",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 4, 16, 64, 128])
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--paths", nargs="+", choices=["own", "shared", "valkey"],
                        default=["own", "shared", "valkey"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if min(args.instances) < 1 or min(args.rates) < 1 or args.seconds <= 0 \
            or args.processes < 1:
        parser.error("instances, rates, seconds and processes must be positive")
    points = asyncio.run(run(args.instances, args.rates, args.seconds, args.processes,
                             args.paths))
    if args.json:
        print(json.dumps([asdict(p) for p in points], indent=2))
    else:
        print(render(points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
