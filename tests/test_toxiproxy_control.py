"""proxies.toxiproxy: the HTTP client, the latency split, ToxiproxyNetwork and open_route."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from toxiproxy_fixtures import EchoServer, dead_port, echo_server, hostport, toxiproxy
from toxiproxy_standin import ToxiproxyStandIn

from orchestrator.backends.base import Endpoints
from orchestrator.workload import Fault as WorkloadFault
from orchestrator.workload import Network
from proxies.toxiproxy import (
    PROXY_NAMES,
    PROXY_POSTGRES,
    PROXY_POSTGRES_LISTENER,
    PROXY_VALKEY,
    PortConflictError,
    ProxyConfigError,
    ProxyError,
    ToxiproxyClient,
    ToxiproxyNetwork,
    ToxiproxyUnreachableError,
    UnknownProxyError,
    UpstreamUnreachableError,
    available,
    open_route,
    route_url,
    split_latency,
    url_address,
)

__all__ = ["echo_server", "toxiproxy"]  # fixtures


class RecordingLog:
    """Collects (level, event, fields) like a structlog logger would emit them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.events.append(("error", event, fields))


def unreachable_url() -> str:
    return f"http://127.0.0.1:{dead_port()}"


class TestSplitLatency:
    @pytest.mark.parametrize(("latency", "jitter", "up", "down"), [
        (20, 0, (10, 0), (10, 0)),
        (3, 0, (1, 0), (2, 0)),
        (1.5, 0.5, (1, 0), (1, 1)),
        (0, 0, (0, 0), (0, 0)),
    ])
    def test_known_splits(self, latency: float, jitter: float, up: tuple[int, int],
                          down: tuple[int, int]) -> None:
        """Round trips are split evenly in whole ms, the extra going downstream."""
        split = split_latency(latency, jitter)
        assert (split.upstream.latency, split.upstream.jitter) == up
        assert (split.downstream.latency, split.downstream.jitter) == down

    @pytest.mark.parametrize(("latency", "jitter"), [
        (1.5, 0.5), (20, 4), (7, 0), (3, 1), (100, 10), (0.5, 0.5)])
    def test_mean_and_spread_match_when_expressible(self, latency: float,
                                                    jitter: float) -> None:
        """The chosen settings' round-trip mean and +/- spread equal the request."""
        split = split_latency(latency, jitter)
        assert split.mean_ms == pytest.approx(latency)
        assert split.jitter_ms == pytest.approx(jitter)

    @pytest.mark.parametrize(("latency", "jitter"), [(-1, 0), (5, 6), (float("nan"), 0),
                                                     (True, 0), (70_000, 0)])
    def test_invalid_values_are_rejected(self, latency: Any, jitter: Any) -> None:
        """Negative, non-finite, boolean, huge values and jitter > latency are refused."""
        with pytest.raises(ProxyConfigError):
            split_latency(latency, jitter)


class TestHelpers:
    def test_route_url_keeps_credentials_and_path(self) -> None:
        """Only host and port change in a DSN or URL."""
        assert route_url("postgresql://u:p@db:5432/x?sslmode=disable", ("127.0.0.1", 9)) == \
            "postgresql://u:p@127.0.0.1:9/x?sslmode=disable"
        assert route_url("redis://localhost:6379/0", ("h", 1)) == "redis://h:1/0"

    def test_url_address_defaults(self) -> None:
        """Default ports are 5432 for Postgres DSNs and 6379 for redis URLs."""
        assert url_address("postgresql://u@db/x") == ("db", 5432)
        assert url_address("redis://cache") == ("cache", 6379)

    def test_available_probes(self, toxiproxy: ToxiproxyStandIn) -> None:
        """available() is True when the API answers and False, quickly, otherwise."""
        assert available(toxiproxy.url) is True
        assert available(unreachable_url(), timeout_s=0.2) is False


class TestClientErrors:
    def test_unreachable_names_url_and_remedy(self) -> None:
        """An unreachable API says where it looked and how to start or avoid Toxiproxy."""
        url = unreachable_url()
        with pytest.raises(ToxiproxyUnreachableError) as caught:
            ToxiproxyClient(url, timeout_s=0.5).version()
        text = str(caught.value)
        assert url in text and "docker compose" in text and "inprocess" in text

    def test_unknown_proxy_lists_known_ones(self, toxiproxy: ToxiproxyStandIn,
                                            echo_server: EchoServer) -> None:
        """An unknown proxy name is reported with the names Toxiproxy has."""
        client = ToxiproxyClient(toxiproxy.url)
        client.create_proxy("known", "127.0.0.1:0", echo_server.upstream)
        with pytest.raises(UnknownProxyError) as caught:
            client.add_toxic("nope", name="t", type="latency")
        assert "'nope'" in str(caught.value) and "known" in str(caught.value)

    def test_port_conflict_says_what_and_how(self, toxiproxy: ToxiproxyStandIn,
                                             echo_server: EchoServer) -> None:
        """A taken listen port raises PortConflictError naming the address and remedies."""
        client = ToxiproxyClient(toxiproxy.url)
        with socket.create_server(("127.0.0.1", 0)) as taken:
            listen = f"127.0.0.1:{taken.getsockname()[1]}"
            with pytest.raises(PortConflictError) as caught:
                client.create_proxy("p", listen, echo_server.upstream)
        text = str(caught.value)
        assert listen in text and "'p'" in text and "choose another port" in text

    @pytest.mark.parametrize("url", ["127.0.0.1:8474", "ftp://x", "http://", 8474])
    def test_bad_url_is_rejected_before_io(self, url: Any) -> None:
        """A malformed URL is a ProxyConfigError at construction."""
        with pytest.raises(ProxyConfigError):
            ToxiproxyClient(url)

    def test_errors_share_one_root(self) -> None:
        """Every error of the package is a ProxyError."""
        for cls in (ProxyConfigError, ToxiproxyUnreachableError, UnknownProxyError,
                    PortConflictError, UpstreamUnreachableError):
            assert issubclass(cls, ProxyError)


class TestNetworkSetup:
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
    """Median proxied minus median direct round trip, samples interleaved (same noise)."""
    for _ in range(10):  # connections warm, statements prepared
        await direct()
        await proxied()
    samples: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(rounds):
        for which, operation in enumerate((direct, proxied)):
            started = time.perf_counter_ns()
            await operation()
            samples[which].append((time.perf_counter_ns() - started) / 1e6)
    return statistics.median(samples[1]) - statistics.median(samples[0])


CONFIGURED_MS = 20.0


class TestLatencyAdded:
    async def test_postgres_round_trip_within_ten_percent(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str) -> None:
        """SELECT 1 through the proxy costs the configured latency more than direct, +/-10%."""
        net = ToxiproxyNetwork(toxiproxy.url)
        addresses = net.setup({PROXY_POSTGRES: url_address(postgres_dsn)},
                              latency_ms=CONFIGURED_MS)
        direct = await asyncpg.connect(postgres_dsn)
        proxied = await asyncpg.connect(route_url(postgres_dsn, addresses[PROXY_POSTGRES]))
        try:
            added = await added_ms(lambda: direct.fetchval("SELECT 1"),
                                   lambda: proxied.fetchval("SELECT 1"))
        finally:
            await direct.close()
            await proxied.close()
            net.teardown()
        assert abs(added - CONFIGURED_MS) <= 0.1 * CONFIGURED_MS, added

    async def test_valkey_round_trip_within_ten_percent(
            self, toxiproxy: ToxiproxyStandIn, valkey_url: str) -> None:
        """PING through the proxy costs the configured latency more than direct, +/-10%."""
        net = ToxiproxyNetwork(toxiproxy.url)
        addresses = net.setup({PROXY_VALKEY: url_address(valkey_url)}, latency_ms=CONFIGURED_MS)
        direct = aioredis.Redis.from_url(valkey_url)
        proxied = aioredis.Redis.from_url(route_url(valkey_url, addresses[PROXY_VALKEY]))
        try:
            added = await added_ms(direct.ping, proxied.ping)
        finally:
            await direct.aclose()
            await proxied.aclose()
            net.teardown()
        assert abs(added - CONFIGURED_MS) <= 0.1 * CONFIGURED_MS, added


def endpoints_for(postgres_dsn: str, valkey_url: str) -> Endpoints:
    return Endpoints(postgres_dsn=postgres_dsn, valkey_url=valkey_url,
                     postgres_listener_dsn=postgres_dsn)


class TestOpenRoute:
    async def test_routes_every_endpoint_through_toxiproxy(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str, valkey_url: str) -> None:
        """The pool, the listener and Valkey each get a proxy; close() removes them all."""
        log = RecordingLog()
        network = Network(mode="toxiproxy", latency_ms=2, toxiproxy_url=toxiproxy.url)
        route = open_route(network, endpoints_for(postgres_dsn, valkey_url), log)
        try:
            assert route.worker_mode == "none"
            assert route.config["mode"] == "toxiproxy"
            assert set(route.config["toxiproxy"]["proxies"]) == set(PROXY_NAMES)
            for dsn in (route.endpoints.postgres_dsn, route.endpoints.postgres_listener_dsn):
                conn = await asyncpg.connect(dsn)
                assert await conn.fetchval("SELECT 1") == 1
                await conn.close()
            client = aioredis.Redis.from_url(route.endpoints.valkey_url)
            assert await client.ping()
            await client.aclose()
            assert route.endpoints.postgres_dsn != postgres_dsn
            assert any(event == "toxiproxy_ready" for _, event, _ in log.events)
        finally:
            route.close()
        assert ToxiproxyClient(toxiproxy.url).proxies() == {}

    def test_keeps_a_configured_upstream_that_answers(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str, valkey_url: str) -> None:
        """A proxy whose upstream is spelled differently but answers is used as configured."""
        client = ToxiproxyClient(toxiproxy.url)
        _, port = url_address(valkey_url)
        configured = f"localhost:{port}"  # like compose's valkey:6379: Toxiproxy's own view
        client.create_proxy(PROXY_VALKEY, "127.0.0.1:0", configured)
        route = open_route(Network(mode="toxiproxy", toxiproxy_url=toxiproxy.url),
                           endpoints_for(postgres_dsn, valkey_url), RecordingLog())
        try:
            assert client.proxy(PROXY_VALKEY)["upstream"] == configured
            assert route.config["toxiproxy"]["proxies"][PROXY_VALKEY]["action"] == "reused"
        finally:
            route.close()
        assert set(client.proxies()) == {PROXY_VALKEY}

    def test_dead_upstream_fails_clearly_and_cleans_up(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str) -> None:
        """An upstream no server answers on is an UpstreamUnreachableError; nothing remains."""
        dead = f"redis://127.0.0.1:{dead_port()}/0"
        with pytest.raises(UpstreamUnreachableError) as caught:
            open_route(Network(mode="toxiproxy", toxiproxy_url=toxiproxy.url),
                       endpoints_for(postgres_dsn, dead), RecordingLog())
        assert PROXY_VALKEY in str(caught.value) and "valkey:6379" in str(caught.value)
        assert ToxiproxyClient(toxiproxy.url).proxies() == {}

    def test_unreachable_toxiproxy(self, postgres_dsn: str, valkey_url: str) -> None:
        """Mode toxiproxy without a server fails with the URL and the remedies."""
        url = unreachable_url()
        with pytest.raises(ToxiproxyUnreachableError, match="inprocess"):
            open_route(Network(mode="toxiproxy", toxiproxy_url=url),
                       endpoints_for(postgres_dsn, valkey_url), RecordingLog())

    def test_listen_addresses_and_faults_come_from_the_workload(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str, valkey_url: str) -> None:
        """network.proxies sets listen addresses; faults are recorded in the route's config."""
        port = dead_port()
        network = Network(
            mode="toxiproxy", toxiproxy_url=toxiproxy.url,
            proxies={"valkey": f"127.0.0.1:{port}"},
            faults=(WorkloadFault(at_s=1, duration_s=2, proxy="valkey", toxic="down"),))
        route = open_route(network, endpoints_for(postgres_dsn, valkey_url), RecordingLog())
        try:
            assert route.endpoints.valkey_url.startswith(f"redis://127.0.0.1:{port}")
            assert route.config["faults"][0]["proxy"] == PROXY_VALKEY
        finally:
            route.close()

    def test_listener_route_is_its_own_proxy(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str, valkey_url: str) -> None:
        """The pgcache listener connects through pgcache-postgres-listener, not the pool's."""
        route = open_route(Network(mode="toxiproxy", toxiproxy_url=toxiproxy.url),
                           endpoints_for(postgres_dsn, valkey_url), RecordingLog())
        try:
            proxies = route.config["toxiproxy"]["proxies"]
            assert hostport(route.endpoints.postgres_listener_dsn) == \
                proxies[PROXY_POSTGRES_LISTENER]["client_address"]
            assert hostport(route.endpoints.postgres_dsn) == \
                proxies[PROXY_POSTGRES]["client_address"]
        finally:
            route.close()
