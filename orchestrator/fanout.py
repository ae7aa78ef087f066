"""Invalidation fan-out benchmark: what one writer's invalidations cost as listening instances
multiply, with a listener per instance and with one shared listener per host.

    python -m orchestrator.fanout [--instances 1 4 16 64 128] [--rates 500 2000]
                                  [--seconds 5] [--processes 4] [--json]

For every rate, instance count and path (``own`` listener per instance, ``shared`` listener
per host), N listening pgcache instances are spread over ``--processes`` worker processes and
one writer instance (no local cache, so no listener of its own) sets 1 000 keys at a fixed
rate, open loop. Every instance records when each invalidation arrived (callbacks,
``perf_counter_ns``, system-wide on Linux); the lag of a write in an instance is from the
writer's ``set`` returning to its arrival there (0 if it arrived first). Reported per point:
lag p50/p99/max over every (write, instance) pair, missing deliveries (pairs that never
arrived), PostgreSQL's CPU per 1 000 sets (the server-cost sampler's ``cpu_seconds``, so
embedded or same-host servers only), and the writer's set p99.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.results.servercost import ServerCostSampler
from orchestrator.services import running_services
from pgcache import CacheSettings, PostgresCache

PREFIX = "fanout_"
CHANNEL = "fanout_events"
KEYS = 1000
SETTLE_S = 1.0  # after the writer stops: late arrivals still count


@dataclass(frozen=True, slots=True)
class Point:
    """One measured point of the fan-out table."""

    path: str
    instances: int
    rate: int
    sets: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    missing: int
    pg_cpu_s_per_1000_sets: float
    set_p99_ms: float


def _quantile(ordered: list[int], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))] / 1e6


async def _listen(fields: dict[str, Any], count: int, stop: float) -> list[array.array[int]]:
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
    await asyncio.sleep(max(0.0, stop + SETTLE_S - time.monotonic()))
    for cache in caches:
        await cache.close()
    return arrivals


def _listener_process(fields: dict[str, Any], count: int, stop: float, out: str) -> None:
    arrivals = asyncio.run(_listen(fields, count, stop))
    Path(out).write_bytes(b"".join(len(seen).to_bytes(8, "little") + seen.tobytes()
                                   for seen in arrivals))


def _read_arrivals(path: str) -> list[dict[int, int]]:
    """Per instance: version -> arrival ns."""
    instances = []
    data = Path(path).read_bytes() if Path(path).exists() else b""  # a crashed child: none
    offset = 0
    while offset < len(data):
        length = int.from_bytes(data[offset:offset + 8], "little")
        offset += 8
        values: array.array[int] = array.array("q")
        values.frombytes(data[offset:offset + 8 * length])
        offset += 8 * length
        instances.append(dict(zip(values[0::2], values[1::2], strict=True)))
    return instances


async def _write(settings: CacheSettings, rate: int, start: float,
                 stop: float) -> tuple[dict[int, int], list[int]]:
    """Open loop at ``rate`` sets/s between ``start`` and ``stop``: version -> returned ns,
    and every set's latency (ns, from its intended start)."""
    returned: dict[int, int] = {}
    latencies: list[int] = []
    async with PostgresCache(settings) as writer:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        interval = 1.0 / rate
        due = time.monotonic()
        i = 0
        while due < stop:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            intended = time.perf_counter_ns() - int(max(0.0, -delay) * 1e9)
            version = await writer.set(f"fanout:{i % KEYS}", b"x" * 100)
            now = time.perf_counter_ns()
            returned[version] = now
            latencies.append(now - intended)
            i += 1
            due += interval
    return returned, latencies


async def measure(dsn: str, path: str, instances: int, rate: int, seconds: float,
                  processes: int) -> Point:
    base: dict[str, Any] = dict(dsn=dsn, schema_prefix=PREFIX, notify_channel=CHANNEL,
                                application_name="fanout", sweep_interval_seconds=0,
                                min_pool_size=1, max_pool_size=2,
                                shared_listener=path == "shared")
    writer = CacheSettings(**{**base, "local_max_entries": 0, "max_pool_size": 4})
    await PostgresCache.init_db(writer)
    context = multiprocessing.get_context("spawn")
    share = [instances // processes + (1 if p < instances % processes else 0)
             for p in range(min(processes, instances))]
    start = time.monotonic() + 2.0 + 0.05 * instances  # everyone connected by then
    stop = start + seconds
    with tempfile.TemporaryDirectory(prefix="pgcache-fanout-") as tmp:
        outs = [os.path.join(tmp, f"{p}.bin") for p in range(len(share))]
        children = [context.Process(target=_listener_process,
                                    args=(base, count, stop, out), daemon=True)
                    for count, out in zip(share, outs, strict=True)]
        for child in children:
            child.start()
        try:
            async with ServerCostSampler(postgres_dsn=dsn, interval_s=3600) as sampler:
                await asyncio.sleep(max(0.0, start - time.monotonic()))
                sampler.samples.extend(await sampler.sample())
                returned, latencies = await _write(writer, rate, start, stop)
                cpu = [s.value for s in await sampler.sample() if s.metric == "cpu_seconds"]
            for child in children:
                await asyncio.to_thread(child.join, 60 + seconds)
        finally:
            for child in children:
                if child.is_alive():
                    child.kill()
        first = [s.value for s in sampler.samples if s.metric == "cpu_seconds"]
        arrivals = [seen for out in outs for seen in _read_arrivals(out)]
    lags: list[int] = []
    missing = instances * len(returned) - sum(
        1 for seen in arrivals for version in returned if version in seen)
    for seen in arrivals:
        for version, at in returned.items():
            arrived = seen.get(version)
            if arrived is not None:
                lags.append(max(0, arrived - at))
    lags.sort()
    latencies.sort()
    spent = (cpu[-1] - first[0]) if cpu and first else float("nan")
    return Point(path, instances, rate, len(returned), _quantile(lags, 0.5),
                 _quantile(lags, 0.99), (lags[-1] / 1e6) if lags else float("nan"), missing,
                 spent / max(1, len(returned)) * 1000, _quantile(latencies, 0.99))


async def run(instances: list[int], rates: list[int], seconds: float,
              processes: int) -> list[Point]:
    points: list[Point] = []
    with running_services(need_valkey=False) as services:
        for rate in rates:
            for count in instances:
                for path in ("own", "shared"):
                    point = await measure(services.postgres_dsn, path, count, rate, seconds,
                                          processes)
                    print(render([point], header=not points), file=sys.stderr)
                    points.append(point)
        await PostgresCache.drop_db(CacheSettings(dsn=services.postgres_dsn,
                                                  schema_prefix=PREFIX))
    return points


def render(points: list[Point], header: bool = True) -> str:
    lines = []
    if header:
        lines.append(f"{'path':<7}{'N':>5}{'sets/s':>8}{'lag p50':>9}{'p99':>8}{'max ms':>8}"
                     f"{'missing':>9}{'PG CPU s/1000 sets':>20}{'set p99 ms':>12}")
    for p in points:
        lines.append(f"{p.path:<7}{p.instances:>5}{p.rate:>8}{p.lag_p50_ms:>9.2f}"
                     f"{p.lag_p99_ms:>8.2f}{p.lag_max_ms:>8.1f}{p.missing:>9}"
                     f"{p.pg_cpu_s_per_1000_sets:>20.3f}{p.set_p99_ms:>12.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.fanout",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 4, 16, 64, 128])
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if min(args.instances) < 1 or min(args.rates) < 1 or args.seconds <= 0 \
            or args.processes < 1:
        parser.error("instances, rates, seconds and processes must be positive")
    points = asyncio.run(run(args.instances, args.rates, args.seconds, args.processes))
    if args.json:
        print(json.dumps([asdict(p) for p in points], indent=2))
    else:
        print(render(points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
