"""The in-process network emulation: a delaying TCP relay in front of real servers."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
from redis.asyncio import Redis
from support.timing import measured_delay

from proxies.inprocess import DelayClock, InProcessNetwork
from proxies.routes import Endpoints, with_address

LATENCY_MS = 5.0
SAMPLES = 31
WARMUP = 20  # lets the relay's clock learn this host's wake-up lateness


async def _rtts_ms(call: Callable[[], Awaitable[object]], samples: int = SAMPLES) -> list[float]:
    for _ in range(WARMUP):
        await call()
    times = []
    for _ in range(samples):
        start = time.perf_counter_ns()
        await call()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def _low(times: list[float]) -> float:
    """The first quartile: on a shared host, scheduling stalls only ever add delay, so the
    lower quantiles show the emulated delay with the least noise."""
    return statistics.quantiles(times, n=4)[0]


async def _median_rtt_ms(call: Callable[[], Awaitable[object]]) -> float:
    return _low(await _rtts_ms(call))


def _endpoints(postgres_dsn: str, valkey_url: str) -> Endpoints:
    return Endpoints(postgres_dsn, valkey_url, postgres_dsn)


class TestRoundTrip:
    """A round trip through the relay costs the configured latency (within 15%, and more by
    no more than what the host's wake-ups cost: see support.timing)."""

    async def test_postgres(self, postgres_dsn: str, valkey_url: str) -> None:
        """SELECT 1 through the relay takes latency_ms longer than direct."""
        direct = await asyncpg.connect(postgres_dsn)
        async with InProcessNetwork(_endpoints(postgres_dsn, valkey_url),
                                    latency_ms=LATENCY_MS, jitter_ms=0.0,
                                    routes=("postgres",)) as net:
            assert net.precise
            relayed = await asyncpg.connect(net.endpoints.postgres_dsn)

            async def added() -> float:
                base = await _median_rtt_ms(lambda: direct.fetchval("SELECT 1"))
                return await _median_rtt_ms(lambda: relayed.fetchval("SELECT 1")) - base

            try:
                # Two wake-ups more than direct: the relay's timer, once each way.
                tries = await measured_delay(added, LATENCY_MS, 0.15 * LATENCY_MS, wakeups=2)
            finally:
                await relayed.close()
                await direct.close()
        assert tries[-1].ok, tries

    async def test_valkey(self, postgres_dsn: str, valkey_url: str) -> None:
        """PING through the relay takes latency_ms longer than direct."""
        direct = Redis.from_url(valkey_url)
        async with InProcessNetwork(_endpoints(postgres_dsn, valkey_url),
                                    latency_ms=LATENCY_MS, jitter_ms=0.0,
                                    routes=("valkey",)) as net:
            relayed = Redis.from_url(net.endpoints.valkey_url)

            async def added() -> float:
                base = await _median_rtt_ms(direct.ping)
                return await _median_rtt_ms(relayed.ping) - base

            try:
                # Two wake-ups more than direct: the relay's timer, once each way.
                tries = await measured_delay(added, LATENCY_MS, 0.15 * LATENCY_MS, wakeups=2)
            finally:
                await relayed.aclose()
                await direct.aclose()
        assert tries[-1].ok, tries

    async def test_jitter_is_symmetric(self, postgres_dsn: str, valkey_url: str) -> None:
        """Jitter spreads the round trip around the configured latency."""
        async with InProcessNetwork(_endpoints(postgres_dsn, valkey_url),
                                    latency_ms=LATENCY_MS, jitter_ms=2.0,
                                    routes=("valkey",)) as net:
            relayed = Redis.from_url(net.endpoints.valkey_url)
            direct = Redis.from_url(valkey_url)
            times: list[float] = []

            async def median_added() -> float:
                base = _low(await _rtts_ms(direct.ping))
                times[:] = [t - base for t in await _rtts_ms(relayed.ping, 101)]
                return statistics.median(times)

            try:
                # Two one-way delays of (latency +/- jitter)/2 each: symmetric around the
                # latency (20%: random deadlines make this host's scheduling noise show more
                # than fixed ones).
                tries = await measured_delay(median_added, LATENCY_MS, 0.2 * LATENCY_MS,
                                             wakeups=2)
            finally:
                await relayed.aclose()
                await direct.aclose()
        assert tries[-1].ok, tries
        assert max(times) - min(times) > 1.0  # jitter is really applied


class TestRelay:
    """The relay forwards bytes faithfully and routes only what it is asked to."""

    async def test_large_values_keep_order(self, postgres_dsn: str, valkey_url: str) -> None:
        """A 1 MB value written and read through a jittery relay comes back intact."""
        payload = bytes(range(256)) * 4096
        async with InProcessNetwork(_endpoints(postgres_dsn, valkey_url), latency_ms=1.0,
                                    jitter_ms=1.0, routes=("valkey",)) as net:
            client = Redis.from_url(net.endpoints.valkey_url)
            try:
                await client.set("relay-test", payload)
                assert await client.get("relay-test") == payload
                await client.delete("relay-test")
            finally:
                await client.aclose()

    async def test_relays_only_for_the_routes_asked(self, postgres_dsn: str,
                                                    valkey_url: str) -> None:
        """Each route asked for gets a relay and its endpoint points there; others stay."""
        async with InProcessNetwork(_endpoints(postgres_dsn, valkey_url), latency_ms=1,
                                    jitter_ms=0, routes=("valkey",)) as net:
            assert set(net.relays) == {"valkey"}
            assert net.endpoints.valkey_url == with_address(
                valkey_url, ("127.0.0.1", net.relays["valkey"].port))
            assert (net.endpoints.postgres_dsn, net.endpoints.postgres_listener_dsn) == (
                postgres_dsn, postgres_dsn)

    async def test_clock_is_precise(self) -> None:
        """The timerfd clock releases callbacks at their deadline (median within 0.2 ms, and
        later by no more than one of this host's wake-ups)."""
        clock = DelayClock(asyncio.get_running_loop())

        async def median_lateness() -> float:
            lateness: list[int] = []
            for _ in range(30):
                done = asyncio.Event()
                when = time.perf_counter_ns() + 1_500_000

                def callback(when: int = when, done: asyncio.Event = done) -> None:
                    lateness.append(time.perf_counter_ns() - when)
                    done.set()

                clock.call_at(when, callback)
                await asyncio.wait_for(done.wait(), 1)
            return statistics.median(lateness) / 1e6

        try:
            tries = await measured_delay(median_lateness, 0.0, 0.2, wakeups=1)
        finally:
            clock.close()
        assert tries[-1].ok, tries
