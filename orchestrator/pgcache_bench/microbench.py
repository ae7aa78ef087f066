"""pgcache micro-benchmark: pgcache's performance targets, measured side by side in one run.

    python -m orchestrator.pgcache_bench.microbench [--iterations N] [--duration S] [--pin]
        [--json]
    make bench-pgcache ARGS="--iterations 5000"

Starts (or, with POSTGRES_DSN / VALKEY_URL, uses) the servers, then measures on loopback:
local-hit get, remote get vs a raw asyncpg ``fetchrow`` of the same row, set vs a raw asyncpg
single-row upsert into an equivalent UNLOGGED table, 16-writer throughput (pgcache with NOTIFY
on and a second instance listening vs raw upserts over 16 connections), invalidation lag
(set returns on A -> B's invalidation callback), the lease's cost (heartbeats of idle
instances, and the PostgreSQL CPU they take, against the same instances with the lease
renewed too rarely to send any), and redis-py / valkey-py against Valkey for reference.
Latencies are per-operation ``perf_counter_ns`` samples (timer overhead included on both
sides); paired measurements alternate in rounds so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import valkey
import yaml

from orchestrator.results.servercost import ServerCostSampler, children_of, postmaster_of
from orchestrator.services import Services, running_services
from pgcache import CacheSettings, PostgresCache

PREFIX = "microbench_"
CHANNEL = "microbench_events"
RAW_TABLE = "microbench_raw"
VALUE = b"x" * 100
KEYSPACE = 1000
WRITERS = 16
IDLE_INSTANCES = 8


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: a measurement, its baseline and the target it must meet."""

    name: str
    value: float
    unit: str
    baseline: float | None
    baseline_name: str
    target: str
    passed: bool | None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


def percentile(samples: list[int], q: float) -> float:
    """The q-quantile (nearest rank) of nanosecond samples, in microseconds."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank] / 1000.0


async def sample(op: Callable[[], Awaitable[Any]], n: int) -> list[int]:
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        start = clock()
        await op()
        out.append(clock() - start)
    return out


async def paired(a: Callable[[], Awaitable[Any]], b: Callable[[], Awaitable[Any]],
                 n: int, settle: Callable[[], Awaitable[Any]] | None = None,
                 ) -> tuple[list[int], list[int]]:
    """Sample a and b alternately, one operation each, after a warm-up of both.

    Alternating per operation makes background noise (other processes on the machine) fall
    on both sides alike, which blocks of operations do not; which side goes first is drawn
    at random per pair so that neither always follows the other. ``settle`` (untimed) runs
    after each ``a``: it lets a's background work (pgcache's NOTIFY) finish instead of
    landing on b's sample.
    """
    await sample(a, max(50, n // 20))
    await sample(b, max(50, n // 20))
    clock = time.perf_counter_ns
    sa: list[int] = []
    sb: list[int] = []
    order = random.Random(2)
    for _ in range(n):
        a_first = order.random() < 0.5
        if not a_first:
            start = clock()
            await b()
            sb.append(clock() - start)
        start = clock()
        await a()
        sa.append(clock() - start)
        if settle is not None:
            await settle()
        if a_first:
            start = clock()
            await b()
            sb.append(clock() - start)
    return sa, sb


async def throughput(worker: Callable[[int], Awaitable[Any]], duration: float) -> tuple[int, float]:
    """(operations, seconds) of WRITERS concurrent workers running for ``duration``."""
    start = time.perf_counter()
    stop_at = start + duration

    async def run(i: int) -> int:
        done = 0
        while time.perf_counter() < stop_at:
            await worker(i)
            done += 1
        return done

    counts = await asyncio.gather(*(run(i) for i in range(WRITERS)))
    return sum(counts), time.perf_counter() - start


async def paired_throughput(a: Callable[[int], Awaitable[Any]],
                            b: Callable[[int], Awaitable[Any]], duration: float,
                            after_a: Callable[[], Awaitable[Any]] | None = None,
                            slice_seconds: float = 0.25) -> tuple[float, float]:
    """Operations per second of a and of b, run in alternating slices for ``duration`` each."""
    ops = [0, 0]
    secs = [0.0, 0.0]
    while secs[0] < duration:
        for side, worker in enumerate((a, b)):
            n, t = await throughput(worker, slice_seconds)
            ops[side] += n
            secs[side] += t
            if side == 0 and after_a is not None:
                await after_a()
    return ops[0] / secs[0], ops[1] / secs[1]


async def bench_postgres(dsn: str, iterations: int, duration: float,
                         options: dict[str, Any]) -> list[Check]:
    base = CacheSettings(**{"dsn": dsn, "schema_prefix": PREFIX, "notify_channel": CHANNEL,
                            "max_pool_size": WRITERS, "min_pool_size": WRITERS,
                            "application_name": "microbench", "sweep_interval_seconds": 0,
                            **options})
    await PostgresCache.init_db(base)
    raw = await asyncpg.connect(dsn)
    raw_conns = [await asyncpg.connect(dsn) for _ in range(WRITERS)]
    await raw.execute(f'DROP TABLE IF EXISTS "{RAW_TABLE}"')
    await raw.execute(f'CREATE UNLOGGED TABLE "{RAW_TABLE}" (key bytea PRIMARY KEY, '
                      "value bytea NOT NULL, expires_at timestamptz) WITH (fillfactor = 80)")
    upsert = (f'INSERT INTO "{RAW_TABLE}" (key, value, expires_at) VALUES '
              "($1, $2, now() + make_interval(secs => $3::float8)) ON CONFLICT (key) DO UPDATE "
              "SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at")
    select = f'SELECT value FROM "{RAW_TABLE}" WHERE key = $1'
    keys = [f"key:{i}" for i in range(KEYSPACE)]
    key_bytes = [k.encode() for k in keys]
    checks: list[Check] = []
    no_local = CacheSettings(**{**_fields(base), "local_max_entries": 0, "min_pool_size": 1})
    a = PostgresCache(base)
    b = PostgresCache(base)
    remote = PostgresCache(no_local)
    async with a, b, remote:
        await a.truncate()
        await a.set_many({k: VALUE for k in keys})
        for kb in key_bytes:
            await raw.execute(upsert, kb, VALUE, 300.0)
        for conn in raw_conns:  # prepare on every connection before measuring
            await conn.execute(upsert, key_bytes[0], VALUE, 300.0)

        # Local hit.
        await a.get("key:0")
        hits = await sample(lambda: a.get("key:0"), iterations * 5)
        p50 = percentile(hits, 0.5)
        checks.append(Check("get, local hit p50", p50, "us", None, "", "<= 1 us", p50 <= 1.0))

        # Remote get (no local cache) vs raw fetchrow of the same row.
        rng = random.Random(1)
        ours, theirs = await paired(lambda: remote.get(keys[rng.randrange(KEYSPACE)]),
                                    lambda: raw.fetchrow(select,
                                                         key_bytes[rng.randrange(KEYSPACE)]),
                                    iterations)
        p_ours, p_raw = percentile(ours, 0.5), percentile(theirs, 0.5)
        checks.append(Check("get, local miss p50", p_ours, "us", p_raw, "asyncpg fetchrow",
                            "<= 1.2x", p_ours <= 1.2 * p_raw))

        # Set (notify on, b listening) vs raw single-row upsert.
        ours, theirs = await paired(
            lambda: a.set(keys[rng.randrange(KEYSPACE)], VALUE),
            lambda: raw.execute(upsert, key_bytes[rng.randrange(KEYSPACE)], VALUE, 300.0),
            iterations, settle=a.wait_notified)
        p_ours, p_raw = percentile(ours, 0.5), percentile(theirs, 0.5)
        checks.append(Check("set p50", p_ours, "us", p_raw, "asyncpg upsert", "<= 1.5x",
                            p_ours <= 1.5 * p_raw))
        await a.wait_notified()

        # 16 writers: full cache vs raw upserts over 16 connections, alternating slices.
        async def cache_writer(i: int) -> None:
            await a.set(keys[rng.randrange(KEYSPACE)], VALUE)

        async def raw_writer(i: int) -> None:
            await raw_conns[i].execute(upsert, key_bytes[rng.randrange(KEYSPACE)], VALUE, 300.0)

        ours_tp, raw_total = await paired_throughput(cache_writer, raw_writer, duration,
                                                     after_a=a.wait_notified)
        checks.append(Check(f"{WRITERS}-writer throughput", ours_tp, "ops/s", raw_total,
                            f"asyncpg x{WRITERS} conns", ">= 0.85x",
                            ours_tp >= 0.85 * raw_total))
        stats = a.stats
        print(f"  ({stats.notifications_sent} NOTIFYs for {stats.notified_keys} "
              f"keys, {stats.sets} sets)", file=sys.stderr)

        # Invalidation lag: set returns on a -> b's callback for that version.
        arrived: dict[tuple[str, int], int] = {}
        waiting: dict[tuple[str, int], asyncio.Future[None]] = {}

        def on_invalidation(key: str | None, version: int | None) -> None:
            if key is None or version is None:
                return
            arrived[(key, version)] = time.perf_counter_ns()
            future = waiting.pop((key, version), None)
            if future is not None and not future.done():
                future.set_result(None)

        b.add_invalidation_callback(on_invalidation)
        lags: list[int] = []
        loop = asyncio.get_running_loop()
        for i in range(max(200, iterations // 5)):
            key = keys[i % KEYSPACE]
            await b.get(key)
            version = await a.set(key, VALUE)
            returned = time.perf_counter_ns()
            if (key, version) not in arrived:
                future = loop.create_future()
                waiting[(key, version)] = future
                await asyncio.wait_for(future, 5.0)
            lags.append(max(0, arrived[(key, version)] - returned))
        b.remove_invalidation_callback(on_invalidation)
        p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
        checks.append(Check("invalidation lag p50", p50 / 1000, "ms", None, "", "<= 1 ms",
                            p50 <= 1000))
        checks.append(Check("invalidation lag p99", p99 / 1000, "ms", None, "", "<= 5 ms",
                            p99 <= 5000))
        await a.truncate()
    checks += await bench_lease(dsn, base, duration)
    await raw.execute(f'DROP TABLE IF EXISTS "{RAW_TABLE}"')
    for conn in [raw, *raw_conns]:
        await conn.close()
    await PostgresCache.drop_db(base)
    return checks


async def _idle_cost(dsn: str, settings: CacheSettings, seconds: float) -> tuple[float, float]:
    """Heartbeats/s and PostgreSQL CPU ms/s per instance of IDLE_INSTANCES idle instances."""
    caches = [PostgresCache(settings) for _ in range(IDLE_INSTANCES)]
    for cache in caches:
        await cache.connect()
    try:
        await asyncio.sleep(0.5)  # connections settle
        before = sum(c.stats.heartbeats_sent for c in caches)
        async with ServerCostSampler(postgres_dsn=dsn, interval_s=seconds) as sampler:
            await asyncio.sleep(seconds)
        cpu = [s.value for s in sampler.samples if s.metric == "cpu_seconds"]
        beats = sum(c.stats.heartbeats_sent for c in caches) - before
    finally:
        for cache in caches:
            await cache.close()
    spent = (cpu[-1] - cpu[0]) if len(cpu) >= 2 else float("nan")
    return beats / seconds / IDLE_INSTANCES, 1000 * spent / seconds / IDLE_INSTANCES


async def bench_lease(dsn: str, base: CacheSettings, duration: float) -> list[Check]:
    """What keeping the lease costs an idle instance, alternating with and without it."""
    seconds = max(1.0, duration / 2)
    without = CacheSettings(**{**_fields(base), "local_lease_seconds": 3600.0,
                               "min_pool_size": 1})
    with_lease = CacheSettings(**{**_fields(base), "min_pool_size": 1})
    rates, cpus, idle_cpus = [], [], []
    for _ in range(2):
        rate, cpu = await _idle_cost(dsn, with_lease, seconds)
        _, idle_cpu = await _idle_cost(dsn, without, seconds)
        rates.append(rate)
        cpus.append(cpu)
        idle_cpus.append(idle_cpu)
    lease = with_lease.local_lease_seconds
    return [
        Check(f"lease heartbeats per idle instance ({lease:g} s lease)",
              sum(rates) / len(rates), "/s", None, "", "reference", None),
        Check(f"PostgreSQL CPU per idle instance, {IDLE_INSTANCES} listening",
              sum(cpus) / len(cpus), "ms/s", sum(idle_cpus) / len(idle_cpus),
              "same, no heartbeats", "reference", None),
    ]


async def _write_distinct(dsn: str, settings: CacheSettings, keys: int,
                          value: bytes, *, watch: bool = False) -> tuple[float, int]:
    """WRITERS tasks on one instance write ``keys`` distinct keys once each; returns
    (writes/s, the most rows a count every 100 ms saw if ``watch``, else the rows at the
    end). Counting is a scan of the table, dead rows included (a run is too short for
    autovacuum), so it costs the server much of a core: runs that measure throughput do not
    watch."""
    await PostgresCache.init_db(settings)
    watcher = await asyncpg.connect(dsn)
    table = f"{settings.schema_prefix}pgcache_entries"
    peak = 0
    async with PostgresCache(settings) as cache:
        await cache.truncate()
        next_key = iter(range(keys))
        done = asyncio.Event()

        async def writer() -> None:
            for i in next_key:
                await cache.set(f"bounded:{i}", value)

        async def count_often() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, await watcher.fetchval(f'SELECT count(*) FROM "{table}"'))
                await asyncio.sleep(0.1)

        watching = asyncio.ensure_future(count_often() if watch else done.wait())
        start = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        elapsed = time.perf_counter() - start
        done.set()
        await watching
        peak = max(peak, await watcher.fetchval(f'SELECT count(*) FROM "{table}"'))
        await cache.truncate()
    await watcher.close()
    return keys / elapsed, peak


async def bench_bounded(dsn: str, keys: int, cap: int) -> list[Check]:
    """Distinct keys into a table bounded at ``cap`` rows, against the same unbounded,
    alternating twice; then once more, bounded, counting the rows every 100 ms."""
    base = CacheSettings(dsn=dsn, schema_prefix=PREFIX, notify_channel=CHANNEL,
                         max_pool_size=WRITERS, application_name="microbench",
                         sweep_interval_seconds=0)
    bounded = CacheSettings(**{**_fields(base), "max_entries": cap})
    free_rates, bounded_rates = [], []
    for _ in range(2):
        rate, _ = await _write_distinct(dsn, base, keys, VALUE)
        free_rates.append(rate)
        rate, _ = await _write_distinct(dsn, bounded, keys, VALUE)
        bounded_rates.append(rate)
    # The bound, watched in a run of its own (the counting would slow the rates above).
    _, peak = await _write_distinct(dsn, bounded, keys, VALUE, watch=True)
    await PostgresCache.drop_db(base)
    free, limited = sum(free_rates) / 2, sum(bounded_rates) / 2
    return [
        Check(f"{keys:,} distinct keys, max_entries={cap:,}: writes/s", limited, "ops/s",
              free, "the same, unbounded", ">= 0.9x", limited >= 0.9 * free),
        Check("  the most rows seen (counted every 100 ms, a run of its own)", peak, "rows",
              float(cap), "max_entries", "<= 1.1x", peak <= 1.1 * cap),
    ]


def _values_64k() -> dict[str, bytes]:
    """A compressible JSON document and random bytes, 64 KiB each."""
    rng = random.Random(1)
    rows = [{"id": i, "name": f"user-{rng.randrange(10**6)}", "email": f"u{i}@example.com",
             "tags": ["a", "b", "c"][: i % 3 + 1], "score": rng.random()} for i in range(900)]
    return {"64 KiB JSON": json.dumps(rows).encode()[:65536],
            "64 KiB random": rng.randbytes(65536)}


async def _compression_side(dsn: str, settings: CacheSettings, value: bytes,
                            rounds: int) -> tuple[float, float, float, float, float]:
    """set p50 us, remote get p50 us, bytes stored per value, server and client CPU us per
    set+get."""
    await PostgresCache.init_db(settings)
    keys = [f"compress:{i}" for i in range(100)]
    sets, gets = [], []
    async with PostgresCache(settings) as cache:
        for key in keys:
            await cache.set(key, value)
        client = time.process_time()
        async with ServerCostSampler(postgres_dsn=dsn, interval_s=3600) as sampler:
            for i in range(rounds):
                start = time.perf_counter_ns()
                await cache.set(keys[i % len(keys)], value)
                sets.append(time.perf_counter_ns() - start)
                start = time.perf_counter_ns()
                await cache.get(keys[(i * 7) % len(keys)])
                gets.append(time.perf_counter_ns() - start)
        client = time.process_time() - client
        conn = await asyncpg.connect(dsn)
        stored = await conn.fetchval(  # as stored: PostgreSQL compresses too (TOAST)
            f'SELECT avg(pg_column_size(value)) FROM "{cache.table_name}"')
        await conn.close()
        await cache.truncate()
    cpu = [s.value for s in sampler.samples if s.metric == "cpu_seconds"]
    server = (cpu[-1] - cpu[0]) if len(cpu) >= 2 else float("nan")
    return (percentile(sets, 0.5), percentile(gets, 0.5), float(stored),
            1e6 * server / rounds, 1e6 * client / rounds)


async def bench_compression(dsn: str, rounds: int) -> list[Check]:
    """64 KiB values with compress_min_bytes at its default and switched off, alternating."""
    base = CacheSettings(dsn=dsn, schema_prefix=PREFIX, notify_channel=CHANNEL,
                         application_name="microbench", sweep_interval_seconds=0,
                         local_max_entries=0)
    off = CacheSettings(**{**_fields(base), "compress_min_bytes": None})
    checks = []
    for label, value in _values_64k().items():
        on_runs, off_runs = [], []
        for _ in range(2):
            on_runs.append(await _compression_side(dsn, base, value, rounds))
            off_runs.append(await _compression_side(dsn, off, value, rounds))
        for index, (what, unit) in enumerate([("set p50", "us"), ("remote get p50", "us"),
                                              ("stored value", "B"),
                                              ("server CPU per set+get", "us"),
                                              ("client CPU per set+get", "us")]):
            checks.append(Check(f"{label}, compressed: {what}",
                                sum(r[index] for r in on_runs) / 2, unit,
                                sum(r[index] for r in off_runs) / 2, "not compressed",
                                "reference", None))
    await PostgresCache.drop_db(base)
    return checks


async def bench_valkey(url: str, iterations: int) -> list[Check]:
    checks: list[Check] = []
    client = aioredis.from_url(url)
    try:
        await client.set("mb:key", VALUE)
        gets = await sample(lambda: client.get("mb:key"), iterations)
        sets = await sample(lambda: client.set("mb:key", VALUE), iterations)
        checks.append(Check("redis-py GET p50", percentile(gets, 0.5), "us", None, "",
                            "reference", None))
        checks.append(Check("redis-py SET p50", percentile(sets, 0.5), "us", None, "",
                            "reference", None))
        await client.delete("mb:key")
    finally:
        await client.aclose()
    # A reference line, not a target: a server without client-side caching leaves it out.
    with contextlib.suppress(valkey.ValkeyError, OSError):
        checks.append(await asyncio.to_thread(_valkey_client_cache_hit, url, iterations))
    return checks


def _valkey_client_cache_hit(url: str, iterations: int) -> Check:
    client = valkey.Valkey.from_url(url, protocol=3, cache_enabled=True)
    try:
        client.set("mb:csc", VALUE)
        client.get("mb:csc")
        clock = time.perf_counter_ns
        samples = []
        for _ in range(iterations * 5):
            start = clock()
            client.get("mb:csc")
            samples.append(clock() - start)
        client.delete("mb:csc")
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return Check("valkey-py client-side cache hit p50 (sync)", percentile(samples, 0.5), "us",
                 None, "", "reference", None)


def _fields(settings: CacheSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in CacheSettings.field_names()}


def render(checks: list[Check]) -> str:
    lines = [f"{'measurement':<44} {'pgcache':>12} {'baseline':>12} {'ratio':>7}  "
             f"{'target':<10} result"]
    for c in checks:
        baseline = f"{c.baseline:,.1f}" if c.baseline is not None else ""
        ratio = f"{c.ratio:.2f}x" if c.ratio is not None else ""
        result = "" if c.passed is None else ("PASS" if c.passed else "FAIL")
        lines.append(f"{c.name:<44} {c.value:>9,.2f} {c.unit:<3}{baseline:>12} {ratio:>7}  "
                     f"{c.target:<10} {result}")
        if c.baseline_name:
            lines.append(f"{'':<44} {'':>12} ({c.baseline_name})")
    return "\n".join(lines)


def _threads(pid: int) -> list[int]:
    """Every thread of process ``pid`` (none if it is gone or not on this host)."""
    try:
        return [int(task) for task in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


@contextlib.contextmanager
def pinned_cpus(server_pids: list[int]) -> Iterator[str]:
    """This process on the first CPU it may use, every thread of ``server_pids`` on the
    others, for the block; everyone's affinity is restored after.

    On a small machine a round trip costs very different times depending on whether the
    server process answering it runs on the client's CPU or on another (measured here,
    2 CPUs: the same query 33 us on one connection, 70 us on another, for a whole run), so
    unpinned latency ratios jump between runs; pinned, they repeat. Children a server forks
    meanwhile (new backends) inherit its CPUs.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise ValueError(f"--pin needs at least 2 CPUs to keep the client and the servers "
                         f"apart; this process may use {len(cpus)}")
    client, servers = {cpus[0]}, set(cpus[1:])
    saved: dict[int, set[int]] = {}

    def move(pid: int, to: set[int]) -> None:
        for thread in _threads(pid):
            with contextlib.suppress(OSError):  # gone meanwhile
                saved.setdefault(thread, os.sched_getaffinity(thread))
                os.sched_setaffinity(thread, to)

    try:
        for pid in server_pids:
            move(pid, servers)
        moved = len(saved)
        move(os.getpid(), client)
        yield (f"client on CPU {cpus[0]}, {moved} server threads on CPU(s) "
               f"{','.join(map(str, sorted(servers)))}")
    finally:
        for thread, mask in saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(thread, mask)


async def local_server_pids(services: Services) -> list[int]:
    """The processes of the servers in use that run on this host: PostgreSQL's postmaster
    and its children, and an embedded Valkey."""
    conn = await asyncpg.connect(services.postgres_dsn)
    try:
        postmaster = postmaster_of(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()
    pids = [postmaster, *children_of(postmaster)] if postmaster else []
    if services.valkey is not None and services.valkey.pid is not None:
        pids.append(services.valkey.pid)
    return pids


async def run(iterations: int, duration: float, options: dict[str, Any],
              bounded: tuple[int, int] | None = None, compression: bool = False,
              pin: bool = False) -> list[Check]:
    with running_services() as services, contextlib.ExitStack() as stack:
        if pin:
            pids = await local_server_pids(services)
            note = stack.enter_context(pinned_cpus(pids))
            print(f"  (pinned: {note}"
                  + ("; PostgreSQL is not on this host)" if not pids else ")"), file=sys.stderr)
        if bounded is not None:
            return await bench_bounded(services.postgres_dsn, *bounded)
        if compression:
            return await bench_compression(services.postgres_dsn, max(100, iterations // 5))
        checks = await bench_postgres(services.postgres_dsn, iterations, duration, options)
        checks += await bench_valkey(services.valkey_url, iterations)
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.pgcache_bench.microbench",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=5000,
                        help="samples per latency measurement (default 5000)")
    parser.add_argument("--duration", type=float, default=4.0,
                        help="seconds of 16-writer load per side (default 4)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--bounded", type=int, nargs=2, metavar=("KEYS", "CAP"),
                        help="instead of the rest: write KEYS distinct keys into a table with "
                             "max_entries=CAP, and into the same unbounded (e.g. 1000000 "
                             "100000)")
    parser.add_argument("--compression", action="store_true",
                        help="instead of the rest: 64 KiB values, compressed (the default "
                             "compress_min_bytes) and not")
    parser.add_argument("--pin", action="store_true",
                        help="run the client on one CPU and the local servers on the others "
                             "(repeatable latency ratios on a small machine; needs 2 CPUs)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=YAML",
                        help="a CacheSettings option for the pgcache instances, e.g. "
                             "--option write_batch_max=32 (repeatable)")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--option {item!r}: expected NAME=VALUE")
        options[name] = yaml.safe_load(value)
    try:
        CacheSettings(dsn="postgresql://check@127.0.0.1/db", **options)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        parser.error(f"--pin needs at least 2 CPUs; this process may use "
                     f"{len(os.sched_getaffinity(0))}")
    try:
        import uvloop  # optional: a Linux-only dependency
    except ImportError:  # pragma: no cover
        checks = asyncio.run(run(args.iterations, args.duration, options, args.bounded,
                                 args.compression, args.pin))
        loop_name = "asyncio"
    else:
        checks = uvloop.run(run(args.iterations, args.duration, options, args.bounded,
                                args.compression, args.pin))
        loop_name = "uvloop"
    if args.json:
        print(json.dumps({"loop": loop_name, "cpus": os.cpu_count(), "pinned": args.pin,
                          "options": options,
                          "checks": [asdict(c) | {"ratio": c.ratio} for c in checks]}, indent=2))
    else:
        print(f"event loop: {loop_name}, cpus: {os.cpu_count()}, iterations: {args.iterations}"
              + (", pinned" if args.pin else "") + (f", options: {options}" if options else ""))
        print(render(checks))
    failed = [c.name for c in checks if c.passed is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
