"""orchestrator.run.network: the parent's side of each network mode, and its errors."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.toxiproxy_fixtures import PROXY_VALKEY, RecordingLog, unreachable_url
from support.toxiproxy_standin import ToxiproxyStandIn, wait_until

from orchestrator.errors import NetworkError
from orchestrator.run.network import open_route
from orchestrator.workload.model import Network, NetworkMode
from proxies import PROXY_NAMES, Endpoints, Fault
from proxies.toxiproxy import ToxiproxyClient


def endpoints_for(postgres_dsn: str, valkey_url: str) -> Endpoints:
    return Endpoints(postgres_dsn, valkey_url, postgres_dsn)


def said() -> tuple[list[str], Any]:
    lines: list[str] = []
    return lines, lines.append


class TestDirectModes:
    """Modes none and inprocess change nothing in the parent."""

    @pytest.mark.parametrize("mode", [NetworkMode.NONE, NetworkMode.INPROCESS])
    def test_endpoints_unchanged(self, mode: NetworkMode) -> None:
        """The workers get the servers' own endpoints and do (or not) their own delaying."""
        endpoints = endpoints_for("postgresql://u@db/x", "redis://cache/0")
        route = open_route(Network(mode=mode, latency_ms=1 if mode == NetworkMode.INPROCESS else 0),
                           endpoints, said()[1], RecordingLog())
        assert route.endpoints == endpoints
        assert route.worker_mode is mode
        assert route.config["mode"] == mode

    def test_auto_without_toxiproxy_falls_back_and_says_so(self) -> None:
        """Mode auto without a Toxiproxy is in-process delay, the faults skipped, both said."""
        lines, say = said()
        network = Network(mode=NetworkMode.AUTO, latency_ms=1.5, toxiproxy_url=unreachable_url(),
                          faults=(Fault(at_s=1, duration_s=1, proxy="valkey", toxic="down"),))
        route = open_route(network, endpoints_for("postgresql://u@db/x", "redis://c/0"), say,
                           RecordingLog())
        assert route.worker_mode is NetworkMode.INPROCESS
        assert (route.config["mode"], route.config["requested_mode"]) == ("inprocess", "auto")
        assert route.config["faults"] == []
        assert any("using in-process delay" in line for line in lines)
        assert any("fault schedule needs Toxiproxy" in line for line in lines)


class TestToxiproxyMode:
    """Mode toxiproxy routes through Toxiproxy and maps its errors to NetworkError."""

    def test_config_and_fault_schedule_per_pass(
            self, toxiproxy: ToxiproxyStandIn, postgres_dsn: str, valkey_url: str) -> None:
        """The config records the proxies and faults; each pass starts and undoes the faults."""
        log = RecordingLog()
        network = Network(mode=NetworkMode.TOXIPROXY, toxiproxy_url=toxiproxy.url, faults=(
            Fault(at_s=0, duration_s=60, proxy="valkey", toxic="down"),))
        route = open_route(network, endpoints_for(postgres_dsn, valkey_url), said()[1], log)
        client = ToxiproxyClient(toxiproxy.url)
        try:
            assert route.worker_mode is NetworkMode.NONE
            assert route.config["mode"] == "toxiproxy"
            assert set(route.config["toxiproxy"]["proxies"]) == set(PROXY_NAMES)
            assert route.config["faults"][0]["proxy"] == PROXY_VALKEY
            route.pass_started("valkey", 1, time.perf_counter_ns())
            assert wait_until(lambda: not client.proxy(PROXY_VALKEY)["enabled"])
            route.pass_finished("valkey", 1)
            assert client.proxy(PROXY_VALKEY)["enabled"] is True
        finally:
            route.close()
        faults = [(event, f["backend"], f["repetition"], f.get("reason"))
                  for _, event, f in log.events if event.startswith("fault_")]
        assert faults == [("fault_start", "valkey", 1, None),
                          ("fault_end", "valkey", 1, "cancelled")]
        assert client.proxies() == {}

    def test_unreachable_toxiproxy_is_a_network_error(self, postgres_dsn: str,
                                                      valkey_url: str) -> None:
        """The proxies layer's error becomes a NetworkError (exit 1) with its URL and hint."""
        url = unreachable_url()
        with pytest.raises(NetworkError) as caught:
            open_route(Network(mode=NetworkMode.TOXIPROXY, toxiproxy_url=url),
                       endpoints_for(postgres_dsn, valkey_url), said()[1], RecordingLog())
        assert caught.value.exit_code == 1
        assert url in str(caught.value) and "inprocess" in str(caught.value)
