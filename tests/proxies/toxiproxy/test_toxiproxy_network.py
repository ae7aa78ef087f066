"""proxies.toxiproxy.network: one run's proxies and latency toxics, set up and taken down."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from support.timing import measured_delay
from support.toxiproxy_fixtures import (
    PROXY_POSTGRES,
    PROXY_VALKEY,
    EchoServer,
    dead_port,
    unreachable_url,
)
from support.toxiproxy_standin import ToxiproxyStandIn

from proxies.errors import PortConflictError, ProxyConfigError, UnknownProxyError
from proxies.routes import PROXY_NAMES, url_address, with_address
from proxies.toxiproxy.client import ToxiproxyClient
from proxies.toxiproxy.network import ToxiproxyNetwork


class TestNetworkSetup:
    """setup() ensures the proxies and latency toxics; teardown() removes only its own."""

    def test_creates_missing_proxies_with_latency_toxics(
            self, toxiproxy: ToxiproxyStandIn, echo_server: EchoServer) -> None:
        """Missing proxies are created; each gets an upstream and a downstream latency toxic."""
        net = ToxiproxyNetwork(toxiproxy.url)
        addresses = net.setup({name: ("127.0.0.1", echo_server.port) for name in PROXY_NAMES},
                              latency_ms=20, jitter_ms=0)
        assert set(addresses) == set(PROXY_NAMES)
        proxies = ToxiproxyClient(toxiproxy.url).proxies()
        for name in PROXY_NAMES:
            assert addresses[name][1] == int(proxies[name]["listen"].rpartition(":")[2])
            toxics = {(t["stream"], t["attributes"]["latency"]) for t in proxies[name]["toxics"]}
            assert toxics == {("upstream", 10), ("downstream", 10)}
            assert net.metadata()["proxies"][name]["action"] == "created"
        assert net.teardown() == []
        assert ToxiproxyClient(toxiproxy.url).proxies() == {}

    def test_reuses_existing_and_keeps_foreign_toxics(
            self, toxiproxy: ToxiproxyStandIn, echo_server: EchoServer) -> None:
        """An existing proxy is reused and kept; teardown removes only our own toxics."""
        client = ToxiproxyClient(toxiproxy.url)
        client.create_proxy(PROXY_VALKEY, "127.0.0.1:0", echo_server.upstream)
        client.add_toxic(PROXY_VALKEY, name="someone-elses", type="bandwidth")
        net = ToxiproxyNetwork(toxiproxy.url)
        net.setup({PROXY_VALKEY: ("127.0.0.1", echo_server.port)}, latency_ms=2)
        assert net.metadata()["proxies"][PROXY_VALKEY]["action"] == "reused"
        assert len(client.toxics(PROXY_VALKEY)) == 3
        net.teardown()
        assert [t["name"] for t in client.toxics(PROXY_VALKEY)] == ["someone-elses"]

    def test_repoints_a_proxy_with_another_upstream(
            self, toxiproxy: ToxiproxyStandIn, echo_server: EchoServer) -> None:
        """An existing proxy forwarding elsewhere is re-pointed on its listen address."""
        client = ToxiproxyClient(toxiproxy.url)
        before = client.create_proxy(PROXY_VALKEY, "127.0.0.1:0", f"127.0.0.1:{dead_port()}")
        net = ToxiproxyNetwork(toxiproxy.url)
        net.setup({PROXY_VALKEY: ("127.0.0.1", echo_server.port)})
        after = client.proxy(PROXY_VALKEY)
        assert after["upstream"] == echo_server.upstream and after["listen"] == before["listen"]
        assert net.metadata()["proxies"][PROXY_VALKEY]["action"] == "repointed"

    def test_clears_leftovers_of_an_interrupted_run(
            self, toxiproxy: ToxiproxyStandIn, echo_server: EchoServer) -> None:
        """Leftover pgcache-* toxics are removed and a disabled proxy re-enabled."""
        client = ToxiproxyClient(toxiproxy.url)
        client.create_proxy(PROXY_POSTGRES, "127.0.0.1:0", echo_server.upstream)
        client.add_toxic(PROXY_POSTGRES, name="pgcache-fault-0-timeout-downstream",
                         type="timeout")
        client.set_enabled(PROXY_POSTGRES, False)
        net = ToxiproxyNetwork(toxiproxy.url)
        net.setup({PROXY_POSTGRES: ("127.0.0.1", echo_server.port)})
        info = client.proxy(PROXY_POSTGRES)
        assert info["enabled"] is True and info["toxics"] == []
        assert len(net.metadata()["proxies"][PROXY_POSTGRES]["cleaned"]) == 2

    def test_configured_proxy_must_exist(self, toxiproxy: ToxiproxyStandIn) -> None:
        """Asking to use a proxy as configured (upstream None) fails clearly when it is absent."""
        with pytest.raises(UnknownProxyError) as caught:
            ToxiproxyNetwork(toxiproxy.url).setup({PROXY_VALKEY: None})
        assert "proxies/toxiproxy.json" in str(caught.value)

    def test_port_conflict_leaves_nothing_behind(self, toxiproxy: ToxiproxyStandIn,
                                                 echo_server: EchoServer) -> None:
        """A port conflict on the second proxy undoes the first one."""
        with socket.create_server(("127.0.0.1", 0)) as taken:
            net = ToxiproxyNetwork(toxiproxy.url, listen_addresses={
                PROXY_VALKEY: f"127.0.0.1:{taken.getsockname()[1]}"})
            with pytest.raises(PortConflictError):
                net.setup({PROXY_POSTGRES: ("127.0.0.1", echo_server.port),
                           PROXY_VALKEY: ("127.0.0.1", echo_server.port)}, latency_ms=2)
        assert ToxiproxyClient(toxiproxy.url).proxies() == {}

    def test_teardown_is_idempotent_and_never_raises(self, echo_server: EchoServer) -> None:
        """A second teardown does nothing; a vanished server yields problems, not exceptions."""
        server = ToxiproxyStandIn().start()
        net = ToxiproxyNetwork(server.url, timeout_s=0.5)
        net.setup({PROXY_VALKEY: ("127.0.0.1", echo_server.port)}, latency_ms=4)
        server.stop()
        problems = net.teardown()
        assert problems and all("Toxiproxy is unreachable" in p for p in problems)
        assert net.teardown() == []

    def test_metadata_describes_the_toxics(self, toxiproxy: ToxiproxyStandIn,
                                           echo_server: EchoServer) -> None:
        """metadata() holds the requested and effective latency and every toxic added."""
        net = ToxiproxyNetwork(toxiproxy.url)
        net.setup({PROXY_VALKEY: ("127.0.0.1", echo_server.port)}, latency_ms=1.5,
                  jitter_ms=0.5)
        meta = net.metadata()
        assert meta["latency_ms"] == 1.5 and meta["jitter_ms"] == 0.5
        assert meta["split"]["round_trip_mean_ms"] == 1.5
        assert {(t["stream"], tuple(t["attributes"].values())) for t in meta["toxics"]} == {
            ("upstream", (1, 0)), ("downstream", (1, 1))}
        assert meta["toxiproxy_version"]
        with pytest.raises(ProxyConfigError):
            net.setup({PROXY_VALKEY: ("127.0.0.1", echo_server.port)})
        net.teardown()

    @pytest.mark.parametrize("kwargs", [
        {"listen_addresses": {PROXY_VALKEY: "nope"}}, {"listen_host": ""},
        {"timeout_s": 0}, {"toxic_prefix": "a b"}])
    def test_constructor_validates(self, kwargs: dict[str, Any]) -> None:
        """Invalid constructor arguments raise ProxyConfigError before any I/O."""
        with pytest.raises(ProxyConfigError):
            ToxiproxyNetwork(unreachable_url(), **kwargs)


async def added_ms(direct: Callable[[], Awaitable[Any]],
                   proxied: Callable[[], Awaitable[Any]], rounds: int = 40) -> float:
    """First quartile of the proxied round trips minus that of the direct ones, samples
    interleaved (same noise). On a shared host scheduling stalls only ever add delay, so the
    lower quantiles show the added latency with the least noise."""
    for _ in range(10):  # connections warm, statements prepared
        await direct()
        await proxied()
    samples: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(rounds):
        for which, operation in enumerate((direct, proxied)):
            started = time.perf_counter_ns()
            await operation()
            samples[which].append((time.perf_counter_ns() - started) / 1e6)
    return (statistics.quantiles(samples[1], n=4)[0]
            - statistics.quantiles(samples[0], n=4)[0])


CONFIGURED_MS = 20.0
# What a proxied round trip waits for beyond a direct one: each way, the proxy's thread wakes
# for the bytes and again when their latency has passed (see support.timing).
PROXY_WAKEUPS = 4


class TestLatencyAdded:
    """Through real servers, a proxy adds the configured round-trip latency."""

    async def test_postgres_round_trip_within_ten_percent(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str) -> None:
        """SELECT 1 through the proxy costs the configured latency more than direct, +/-10%
        (+ the host's wake-up cost)."""
        net = ToxiproxyNetwork(toxiproxy.url)
        addresses = net.setup({PROXY_POSTGRES: url_address(postgres_dsn)},
                              latency_ms=CONFIGURED_MS)
        direct = await asyncpg.connect(postgres_dsn)
        proxied = await asyncpg.connect(with_address(postgres_dsn, addresses[PROXY_POSTGRES]))
        try:
            tries = await measured_delay(
                lambda: added_ms(lambda: direct.fetchval("SELECT 1"),
                                 lambda: proxied.fetchval("SELECT 1")),
                CONFIGURED_MS, 0.1 * CONFIGURED_MS, wakeups=PROXY_WAKEUPS)
        finally:
            await direct.close()
            await proxied.close()
            net.teardown()
        assert tries[-1].ok, tries

    async def test_valkey_round_trip_within_ten_percent(
            self, toxiproxy: ToxiproxyStandIn, valkey_url: str) -> None:
        """PING through the proxy costs the configured latency more than direct, +/-10%
        (+ the host's wake-up cost)."""
        net = ToxiproxyNetwork(toxiproxy.url)
        addresses = net.setup({PROXY_VALKEY: url_address(valkey_url)}, latency_ms=CONFIGURED_MS)
        direct = aioredis.Redis.from_url(valkey_url)
        proxied = aioredis.Redis.from_url(with_address(valkey_url, addresses[PROXY_VALKEY]))
        try:
            tries = await measured_delay(lambda: added_ms(direct.ping, proxied.ping),
                                         CONFIGURED_MS, 0.1 * CONFIGURED_MS,
                                         wakeups=PROXY_WAKEUPS)
        finally:
            await direct.aclose()
            await proxied.aclose()
            net.teardown()
        assert tries[-1].ok, tries
