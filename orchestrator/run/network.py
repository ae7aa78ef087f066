"""Network emulation, parent side: decide the mode and route the endpoints.

``none``: workers connect directly. ``inprocess``: each worker starts its own delaying relays
(:mod:`proxies.inprocess`); the parent changes nothing. ``toxiproxy``: the parent configures
Toxiproxy through :mod:`proxies.toxiproxy` and hands the workers the proxied endpoints.
``auto``: Toxiproxy when its API answers, in-process otherwise (and says which).

:func:`open_route` returns a :class:`ParentRoute`: the endpoints the workers use, the
configuration stored in ``runs.network``, and hooks the runner calls around each pass (the
fault schedule starts with the measurement) and at the end of the run (remove toxics, even on
failure or interrupt). This is where :class:`proxies.ProxyError` becomes a
:class:`~orchestrator.errors.NetworkError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.errors import NetworkError
from orchestrator.workload.model import Network, NetworkMode
from proxies import Endpoints, ProxyError
from proxies import toxiproxy as toxiproxy_mode


class ParentRoute(Protocol):
    """What the runner needs from a parent-side network route."""

    endpoints: Endpoints
    worker_mode: NetworkMode  # what each worker does itself: none or inprocess
    config: dict[str, Any]

    def pass_started(self, backend: str, repetition: int, measure_start_ns: int) -> None: ...

    def pass_finished(self, backend: str, repetition: int) -> None: ...

    def close(self) -> None:
        """Undo whatever the route set up; never raises (problems are logged)."""


@dataclass
class DirectRoute:
    """A route that needs nothing from the parent (modes none and inprocess)."""

    endpoints: Endpoints
    worker_mode: NetworkMode
    config: dict[str, Any] = field(default_factory=dict)

    def pass_started(self, backend: str, repetition: int, measure_start_ns: int) -> None:
        return None

    def pass_finished(self, backend: str, repetition: int) -> None:
        return None

    def close(self) -> None:
        return None


class ToxiproxyParentRoute:
    """Mode ``toxiproxy``: every route through Toxiproxy, the fault schedule with each pass."""

    worker_mode = NetworkMode.NONE

    def __init__(self, route: toxiproxy_mode.ToxiproxyRoute, config: dict[str, Any]) -> None:
        self.route = route
        self.endpoints = route.endpoints
        self.config = config

    def pass_started(self, backend: str, repetition: int, measure_start_ns: int) -> None:
        try:
            self.route.start_faults(measure_start_ns, backend=backend, repetition=repetition)
        except ProxyError as exc:
            raise NetworkError(f"the fault schedule could not start: {exc}") from exc

    def pass_finished(self, backend: str, repetition: int) -> None:
        self.route.stop_faults()

    def close(self) -> None:
        self.route.close()


def _toxiproxy_route(network: Network, endpoints: Endpoints, log: Any) -> ParentRoute:
    try:
        route = toxiproxy_mode.open_route(
            endpoints, url=network.toxiproxy_url, log=log, latency_ms=network.latency_ms,
            jitter_ms=network.jitter_ms, listen=network.proxies, faults=network.faults)
    except ProxyError as exc:  # its message says what and how to fix it
        raise NetworkError(f"Toxiproxy set-up failed: {exc}") from exc
    config = dict(network.to_dict(), mode=NetworkMode.TOXIPROXY.value, toxiproxy=route.metadata)
    return ToxiproxyParentRoute(route, config)


def open_route(network: Network, endpoints: Endpoints,
               say: Callable[[str], None], log: Any) -> ParentRoute:
    """Set up the run's network emulation; ``say`` prints to the console."""
    config: dict[str, Any] = network.to_dict()
    if network.mode == NetworkMode.NONE:
        return DirectRoute(endpoints, NetworkMode.NONE, config)
    if network.mode == NetworkMode.INPROCESS:
        return DirectRoute(endpoints, NetworkMode.INPROCESS, config)
    if network.mode == NetworkMode.TOXIPROXY:
        return _toxiproxy_route(network, endpoints, log)
    assert network.mode == NetworkMode.AUTO
    if toxiproxy_mode.available(network.toxiproxy_url):
        say(f"network: Toxiproxy answers at {network.toxiproxy_url}; using it")
        log.info("network_mode", requested=NetworkMode.AUTO.value,
                 used=NetworkMode.TOXIPROXY.value)
        return _toxiproxy_route(network, endpoints, log)
    why = f"no Toxiproxy API answers at {network.toxiproxy_url}"
    say(f"network: {why}; using in-process delay ({network.latency_ms} ms ± "
        f"{network.jitter_ms} ms per round trip)")
    log.info("network_mode", requested=NetworkMode.AUTO.value,
             used=NetworkMode.INPROCESS.value, reason=why)
    config["mode"] = NetworkMode.INPROCESS.value
    config["requested_mode"] = NetworkMode.AUTO.value
    config["faults"] = []
    if network.faults:
        say("network: the fault schedule needs Toxiproxy and is skipped")
        log.warning("faults_skipped", count=len(network.faults), reason=why)
    return DirectRoute(endpoints, NetworkMode.INPROCESS, config)
