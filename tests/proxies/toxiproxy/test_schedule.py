"""proxies.toxiproxy.schedule: the schedule's events and clean-up, and surviving faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry
from support.caches import settings_for
from support.toxiproxy_fixtures import (
    PROXY_POSTGRES,
    PROXY_POSTGRES_LISTENER,
    PROXY_VALKEY,
    EchoServer,
)
from support.toxiproxy_standin import ToxiproxyStandIn, wait_until

from pgcache import CacheSettings, PgCacheError, PostgresCache
from proxies.errors import ProxyError, UnknownProxyError
from proxies.faults import Fault
from proxies.routes import PROXY_NAMES, url_address, with_address
from proxies.toxiproxy.client import ToxiproxyClient
from proxies.toxiproxy.network import ToxiproxyNetwork
from proxies.toxiproxy.schedule import FaultSchedule

Event = tuple[str, dict[str, Any]]


class Recorder:
    """An on_event callback that keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        self.events.append((name, fields))
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        """Wait until ``count`` events arrived (called on the schedule's event loop)."""
        while len(self.events) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), timeout=10)

    def names(self) -> list[tuple[str, int]]:
        return [(name, fields["fault"]) for name, fields in self.events]


@pytest.fixture
def client(toxiproxy: ToxiproxyStandIn, echo_server: EchoServer) -> ToxiproxyClient:
    """A client of the stand-in, with the run's three proxies forwarding to an echo server."""
    api = ToxiproxyClient(toxiproxy.url)
    for name in PROXY_NAMES:
        api.create_proxy(name, "127.0.0.1:0", echo_server.upstream)
    return api




async def run_schedule(schedule: FaultSchedule) -> None:
    await asyncio.wait_for(schedule.run(), timeout=20)


class TestFaultSchedule:
    """Each fault starts and ends at its offset, and whatever ends the schedule undoes it."""

    async def test_start_and_end_events_in_order(self, client: ToxiproxyClient) -> None:
        """Each fault emits fault_start then fault_end (reason duration) with its fields."""
        record = Recorder()
        faults = [Fault(at_s=0.05, duration_s=0.1, proxy="valkey", toxic="latency",
                        attributes={"latency": 5}, label="spike"),
                  Fault(at_s=0.1, duration_s=0.1, proxy="postgres", toxic="down")]
        await run_schedule(FaultSchedule(client, faults, record))
        names = record.names()
        assert sorted(names) == [("fault_end", 0), ("fault_end", 1), ("fault_start", 0),
                                 ("fault_start", 1)]
        for index in (0, 1):
            assert names.index(("fault_start", index)) < names.index(("fault_end", index))
        start = dict(record.events)["fault_start"]
        assert {"fault", "label", "proxy", "toxic", "stream", "attributes", "at_s",
                "duration_s", "offset_s", "t_ns", "toxics"} <= set(start)
        ends = [fields for name, fields in record.events if name == "fault_end"]
        assert all(fields["reason"] == "duration" for fields in ends)
        assert record.events[0][1]["label"] == "spike"
        assert record.events[0][1]["toxics"] == ["pgcache-fault-0-latency-downstream"]

    async def test_toxic_is_in_place_during_the_fault_only(self,
                                                           client: ToxiproxyClient) -> None:
        """While a fault is active its toxics exist (both streams), afterwards none remain."""
        record = Recorder()
        fault = Fault(at_s=0, duration_s=0.3, proxy="postgres", toxic="timeout",
                      attributes={"timeout": 0}, stream="both")
        schedule = FaultSchedule(client, [fault], record)
        task = asyncio.create_task(run_schedule(schedule))
        await record.wait_for(1)
        names = {t["name"] for t in client.toxics(PROXY_POSTGRES)}
        assert names == {"pgcache-fault-0-timeout-upstream",
                         "pgcache-fault-0-timeout-downstream"}
        await task
        assert client.toxics(PROXY_POSTGRES) == []

    async def test_cancel_undoes_active_faults(self, client: ToxiproxyClient) -> None:
        """Cancelling the task removes toxics, re-enables proxies, and reports reason cancelled."""
        record = Recorder()
        faults = [Fault(at_s=0, duration_s=60, proxy="valkey", toxic="down"),
                  Fault(at_s=0, duration_s=60, proxy="postgres", toxic="bandwidth",
                        attributes={"rate": 1})]
        task = asyncio.create_task(FaultSchedule(client, faults, record).run())
        await record.wait_for(2)
        assert client.proxy(PROXY_VALKEY)["enabled"] is False
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.proxy(PROXY_VALKEY)["enabled"] is True
        assert client.toxics(PROXY_POSTGRES) == []
        ends = [fields["reason"] for name, fields in record.events if name == "fault_end"]
        assert ends == ["cancelled", "cancelled"]

    async def test_overlapping_downs_reenable_after_the_last(self,
                                                             client: ToxiproxyClient) -> None:
        """Two overlapping down faults on one proxy keep it down until both have ended."""
        enabled_at_end: dict[int, bool] = {}

        def on_event(name: str, fields: dict[str, Any]) -> None:
            if name == "fault_end":
                enabled_at_end[fields["fault"]] = client.proxy(PROXY_VALKEY)["enabled"]

        faults = [Fault(at_s=0, duration_s=0.1, proxy="valkey", toxic="down"),
                  Fault(at_s=0.05, duration_s=0.15, proxy="valkey", toxic="down")]
        await run_schedule(FaultSchedule(client, faults, on_event))
        assert enabled_at_end == {0: False, 1: True}

    async def test_unknown_proxy_fails_before_any_fault(self, client: ToxiproxyClient) -> None:
        """A fault naming a proxy Toxiproxy lacks raises UnknownProxyError, no events."""
        record = Recorder()
        faults = [Fault(at_s=0, duration_s=1, proxy="valkey", toxic="down"),
                  Fault(at_s=0, duration_s=1, proxy="mysql", toxic="down")]
        with pytest.raises(UnknownProxyError, match="mysql"):
            await run_schedule(FaultSchedule(client, faults, record))
        assert record.events == []
        assert client.proxy(PROXY_VALKEY)["enabled"] is True

    async def test_error_mid_run_reports_and_cleans_up(self, client: ToxiproxyClient) -> None:
        """A change Toxiproxy refuses emits fault_error, raises, and undoes earlier faults."""
        record = Recorder()
        faults = [Fault(at_s=0, duration_s=5, proxy="valkey", toxic="down"),
                  Fault(at_s=0.1, duration_s=1, proxy="postgres", toxic="latency")]

        def on_event(name: str, fields: dict[str, Any]) -> None:
            record(name, fields)
            if name == "fault_start" and fields["fault"] == 0:
                client.delete_proxy(PROXY_POSTGRES)  # the second fault will fail

        with pytest.raises(ProxyError):
            await run_schedule(FaultSchedule(client, faults, on_event))
        assert ("fault_error", 1) in record.names()
        assert [f["reason"] for n, f in record.events if n == "fault_end"] == ["error"]
        assert client.proxy(PROXY_VALKEY)["enabled"] is True

    def test_threaded_run_stops_and_cleans_up(self, client: ToxiproxyClient) -> None:
        """start_in_thread runs without a caller loop; stop() undoes what is active."""
        record = Recorder()
        schedule = FaultSchedule(client, [Fault(at_s=0, duration_s=60, proxy="valkey",
                                                toxic="timeout")], record)
        schedule.start_in_thread(time.perf_counter_ns())
        assert wait_until(lambda: schedule.active == [0])
        assert schedule.stop() == []
        assert client.toxics(PROXY_VALKEY) == []
        assert [name for name, _ in record.events] == ["fault_start", "fault_end"]
        assert schedule.error is None




@pytest.fixture
async def cache_settings(postgres_dsn: str) -> AsyncIterator[CacheSettings]:
    """pgcache settings of this test's own, quick to notice a lost listener or server."""
    settings = settings_for(postgres_dsn, listener_heartbeat_timeout_seconds=0.6,
                            local_lease_seconds=0.5, connect_timeout=1, command_timeout=0.5,
                            reconnect_backoff_max_seconds=0.3)
    await PostgresCache.init_db(settings)
    yield settings
    await PostgresCache.drop_db(settings)


class TestSurvivingFaults:
    """pgcache and Valkey clients live through the faults of workloads/faults.yaml."""

    async def test_cache_and_valkey_survive_listener_reset_blackhole_and_down(
            self, toxiproxy: ToxiproxyStandIn, cache_settings: CacheSettings,
            valkey_url: str) -> None:
        """Errors happen during the faults, both stores recover after them, nothing crashes."""
        net = ToxiproxyNetwork(toxiproxy.url)
        pg = url_address(cache_settings.dsn)
        addresses = net.setup({PROXY_POSTGRES: pg, PROXY_POSTGRES_LISTENER: pg,
                               PROXY_VALKEY: url_address(valkey_url)}, latency_ms=1)
        writer = PostgresCache(cache_settings)  # direct: the instance whose writes we read
        reader = PostgresCache(replace(
            cache_settings, dsn=with_address(cache_settings.dsn, addresses[PROXY_POSTGRES]),
            listener_dsn=with_address(cache_settings.dsn, addresses[PROXY_POSTGRES_LISTENER])))
        valkey = aioredis.Redis.from_url(with_address(valkey_url, addresses[PROXY_VALKEY]),
                                         socket_timeout=0.5, socket_connect_timeout=0.5,
                                         retry=Retry(NoBackoff(), 0))
        faults = [
            Fault(at_s=0.1, duration_s=0.6, proxy="postgres-listener", toxic="reset_peer",
                  attributes={"timeout": 0}, stream="both", label="listener reset"),
            Fault(at_s=0.9, duration_s=0.8, proxy="postgres", toxic="timeout",
                  attributes={"timeout": 0}, stream="both", label="postgres blackhole"),
            Fault(at_s=0.9, duration_s=0.8, proxy="valkey", toxic="down", label="valkey down"),
        ]
        record = Recorder()
        errors: dict[str, list[int]] = {"pgcache": [], "valkey": []}
        await writer.connect()
        await reader.connect()
        schedule_task = asyncio.create_task(FaultSchedule(net.client, faults, record).run())
        try:
            i = 0
            while not schedule_task.done():
                i += 1
                await writer.set("k", i)
                try:
                    assert await reader.get("k") in (i, i - 1, None)
                except PgCacheError:
                    errors["pgcache"].append(time.perf_counter_ns())
                try:
                    await valkey.set("k", i)
                    assert int(await valkey.get("k")) == i
                except aioredis.RedisError:
                    errors["valkey"].append(time.perf_counter_ns())
                await asyncio.sleep(0.02)
            await schedule_task

            async def recovered() -> bool:
                try:
                    await writer.set("k", "final")
                    await valkey.set("k", "final")
                    return (await reader.get("k") == "final"
                            and await valkey.get("k") == b"final"
                            and reader.stats.listener_connected)
                except (PgCacheError, aioredis.RedisError):
                    return False

            deadline = time.monotonic() + 15
            while not await recovered():
                assert time.monotonic() < deadline, "no recovery after the faults"
                await asyncio.sleep(0.05)
            reconnects = reader.stats.listener_reconnects
        finally:
            schedule_task.cancel()
            await asyncio.gather(schedule_task, return_exceptions=True)
            await reader.close()
            await writer.close()
            await valkey.aclose()
            net.teardown()
        window = {f["fault"]: f["t_ns"] for n, f in record.events if n == "fault_start"}
        ended = {f["fault"]: f["t_ns"] for n, f in record.events if n == "fault_end"}
        assert sorted(window) == sorted(ended) == [0, 1, 2]
        assert any(window[1] <= t <= ended[1] + 1_000_000_000 for t in errors["pgcache"])
        assert any(window[2] <= t <= ended[2] + 1_000_000_000 for t in errors["valkey"])
        assert reconnects >= 1
