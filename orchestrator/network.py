"""Network emulation, parent side: decide the mode and route the endpoints.

``none``: workers connect directly. ``inprocess``: each worker starts its own delaying relays
(:mod:`proxies.inprocess`); the parent changes nothing. ``toxiproxy``: the parent configures
Toxiproxy through :mod:`proxies.toxiproxy` and hands the workers the proxied endpoints.
``auto``: Toxiproxy when its API answers, in-process otherwise (and says which).

The seam for Toxiproxy (issue 4) is :func:`open_route`: given the upstream endpoints it returns
a :class:`Route` with rewritten endpoints, the configuration to store in ``runs.network``, and
hooks the runner calls around each pass (the fault schedule starts with the measurement) and
at the end of the run (remove toxics, even on failure or interrupt). ``proxies.toxiproxy`` is
expected to provide ``available(url: str) -> bool`` and
``open_route(network: Network, endpoints: Endpoints, log) -> Route``-like object.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.backends.base import Endpoints
from orchestrator.errors import NetworkError
from orchestrator.workload import Network


class ParentRoute(Protocol):
    """What the runner needs from a parent-side network route."""

    endpoints: Endpoints
    worker_mode: str  # what each worker does itself: "none" or "inprocess"
    config: dict[str, Any]

    def pass_started(self, backend: str, repetition: int, measure_start_ns: int) -> None: ...

    def pass_finished(self, backend: str, repetition: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class Route:
    """A route that needs nothing from the parent (modes none and inprocess)."""

    endpoints: Endpoints
    worker_mode: str
    config: dict[str, Any] = field(default_factory=dict)

    def pass_started(self, backend: str, repetition: int, measure_start_ns: int) -> None:
        return None

    def pass_finished(self, backend: str, repetition: int) -> None:
        return None

    def close(self) -> None:
        return None


def _toxiproxy_module() -> Any | None:
    try:
        return importlib.import_module("proxies.toxiproxy")
    except ImportError:
        return None


def _toxiproxy_route(module: Any, network: Network, endpoints: Endpoints,
                     log: Any) -> ParentRoute:
    try:
        route: ParentRoute = module.open_route(network, endpoints, log)
    except Exception as exc:  # proxies.toxiproxy's errors say what and how to fix it
        raise NetworkError(f"Toxiproxy set-up failed: {exc}") from exc
    return route


def open_route(network: Network, endpoints: Endpoints,
               say: Callable[[str], None], log: Any) -> ParentRoute:
    """Set up the run's network emulation; ``say`` prints to the console."""
    config: dict[str, Any] = network.to_dict()
    if network.mode == "none":
        return Route(endpoints, "none", config)
    if network.mode == "inprocess":
        return Route(endpoints, "inprocess", config)
    module = _toxiproxy_module()
    if network.mode == "toxiproxy":
        if module is None:
            raise NetworkError(
                "network.mode is toxiproxy but Toxiproxy support (proxies/toxiproxy.py) is not "
                "installed in this checkout; use mode inprocess or auto")
        return _toxiproxy_route(module, network, endpoints, log)
    # auto
    if module is not None and module.available(network.toxiproxy_url):
        say(f"network: Toxiproxy answers at {network.toxiproxy_url}; using it")
        log.info("network_mode", requested="auto", used="toxiproxy")
        return _toxiproxy_route(module, network, endpoints, log)
    why = ("proxies/toxiproxy.py is not available" if module is None
           else f"no Toxiproxy API answers at {network.toxiproxy_url}")
    say(f"network: {why}; using in-process delay ({network.latency_ms} ms ± "
        f"{network.jitter_ms} ms per round trip)")
    log.info("network_mode", requested="auto", used="inprocess", reason=why)
    config["mode"] = "inprocess"
    config["requested_mode"] = "auto"
    config["faults"] = []
    if network.faults:
        say("network: the fault schedule needs Toxiproxy and is skipped")
        log.warning("faults_skipped", count=len(network.faults), reason=why)
    return Route(endpoints, "inprocess", config)
