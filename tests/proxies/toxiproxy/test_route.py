"""proxies.toxiproxy.route: a run's routes through Toxiproxy, faults per pass, clean-up."""

from __future__ import annotations

import time

import asyncpg
import pytest
import redis.asyncio as aioredis
from support.toxiproxy_fixtures import (
    PROXY_POSTGRES,
    PROXY_POSTGRES_LISTENER,
    PROXY_VALKEY,
    RecordingLog,
    dead_port,
    hostport,
    unreachable_url,
)
from support.toxiproxy_standin import ToxiproxyStandIn, wait_until

from proxies.errors import (
    ToxiproxyUnreachableError,
    UnknownProxyError,
    UpstreamUnreachableError,
)
from proxies.faults import Fault
from proxies.routes import PROXY_NAMES, Endpoints, url_address
from proxies.toxiproxy.client import ToxiproxyClient
from proxies.toxiproxy.route import open_route


def endpoints_for(postgres_dsn: str, valkey_url: str) -> Endpoints:
    return Endpoints(postgres_dsn=postgres_dsn, valkey_url=valkey_url,
                     postgres_listener_dsn=postgres_dsn)


class TestOpenRoute:
    """open_route sets up every route through Toxiproxy, or fails leaving nothing behind."""

    async def test_routes_every_endpoint_through_toxiproxy(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str, valkey_url: str) -> None:
        """The pool, the listener and Valkey each get a proxy; close() removes them all."""
        log = RecordingLog()
        route = open_route(endpoints_for(postgres_dsn, valkey_url), url=toxiproxy.url,
                           log=log, latency_ms=2)
        try:
            assert set(route.metadata["proxies"]) == set(PROXY_NAMES)
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
        route = open_route(endpoints_for(postgres_dsn, valkey_url), url=toxiproxy.url,
                           log=RecordingLog())
        try:
            assert client.proxy(PROXY_VALKEY)["upstream"] == configured
            assert route.metadata["proxies"][PROXY_VALKEY]["action"] == "reused"
        finally:
            route.close()
        assert set(client.proxies()) == {PROXY_VALKEY}

    def test_dead_upstream_fails_clearly_and_cleans_up(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str) -> None:
        """An upstream no server answers on is an UpstreamUnreachableError; nothing remains."""
        dead = f"redis://127.0.0.1:{dead_port()}/0"
        with pytest.raises(UpstreamUnreachableError) as caught:
            open_route(endpoints_for(postgres_dsn, dead), url=toxiproxy.url,
                       log=RecordingLog())
        assert PROXY_VALKEY in str(caught.value) and "valkey:6379" in str(caught.value)
        assert ToxiproxyClient(toxiproxy.url).proxies() == {}

    def test_unreachable_toxiproxy(self, postgres_dsn: str, valkey_url: str) -> None:
        """Without a server the error names the URL and the remedies."""
        with pytest.raises(ToxiproxyUnreachableError, match="inprocess"):
            open_route(endpoints_for(postgres_dsn, valkey_url), url=unreachable_url(),
                       log=RecordingLog())

    def test_listen_addresses_come_from_route_names(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str, valkey_url: str) -> None:
        """A listen address given for a route name is where that route's proxy listens."""
        port = dead_port()
        route = open_route(endpoints_for(postgres_dsn, valkey_url), url=toxiproxy.url,
                           log=RecordingLog(), listen={"valkey": f"127.0.0.1:{port}"})
        try:
            assert route.endpoints.valkey_url.startswith(f"redis://127.0.0.1:{port}")
        finally:
            route.close()

    def test_listener_route_is_its_own_proxy(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str, valkey_url: str) -> None:
        """The pgcache listener connects through pgcache-postgres-listener, not the pool's."""
        route = open_route(endpoints_for(postgres_dsn, valkey_url), url=toxiproxy.url,
                           log=RecordingLog())
        try:
            proxies = route.metadata["proxies"]
            assert hostport(route.endpoints.postgres_listener_dsn) == \
                proxies[PROXY_POSTGRES_LISTENER]["client_address"]
            assert hostport(route.endpoints.postgres_dsn) == \
                proxies[PROXY_POSTGRES]["client_address"]
        finally:
            route.close()


class TestFaultsPerPass:
    """start_faults runs the schedule for a pass, stop_faults and close undo it."""

    def test_start_and_stop_faults(self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str,
                                   valkey_url: str) -> None:
        """Fault events carry the fields given; stopping undoes the fault; close cleans up."""
        log = RecordingLog()
        route = open_route(endpoints_for(postgres_dsn, valkey_url), url=toxiproxy.url,
                           log=log, faults=[Fault(at_s=0, duration_s=60, proxy="valkey",
                                                  toxic="down")])
        client = ToxiproxyClient(toxiproxy.url)
        try:
            route.start_faults(time.perf_counter_ns(), backend="valkey", repetition=1)
            assert wait_until(lambda: not client.proxy(PROXY_VALKEY)["enabled"])
            route.stop_faults()
            assert client.proxy(PROXY_VALKEY)["enabled"] is True
        finally:
            route.close()
        faults = [(event, f["backend"], f["repetition"], f.get("reason"))
                  for _, event, f in log.events if event.startswith("fault_")]
        assert faults == [("fault_start", "valkey", 1, None),
                          ("fault_end", "valkey", 1, "cancelled")]
        assert client.proxies() == {}

    def test_unknown_proxy_in_a_fault_fails_before_the_run(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str, valkey_url: str) -> None:
        """A fault naming a proxy Toxiproxy lacks fails open_route, which cleans up."""
        with pytest.raises(UnknownProxyError, match="mysql"):
            open_route(endpoints_for(postgres_dsn, valkey_url), url=toxiproxy.url,
                       log=RecordingLog(),
                       faults=[Fault(at_s=0, duration_s=1, proxy="mysql", toxic="down")])
        assert ToxiproxyClient(toxiproxy.url).proxies() == {}
