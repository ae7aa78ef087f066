"""A run's routes through Toxiproxy: :func:`open_route` sets them up, :class:`ToxiproxyRoute`
runs the fault schedule of each pass and takes everything down at the end.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from proxies.errors import UpstreamUnreachableError
from proxies.faults import Fault
from proxies.routes import (
    ROUTE_NAMES,
    ROUTES,
    Address,
    Endpoints,
    format_hostport,
    proxy_name,
    url_address,
)
from proxies.toxiproxy.network import ToxiproxyNetwork
from proxies.toxiproxy.schedule import FaultSchedule

# Postgres answers an SSLRequest with one byte ('S' or 'N'); Valkey answers PING (or NOAUTH).
_PROBES = {"postgres": struct.pack("!ii", 8, 80877103), "valkey": b"PING\r\n"}


def probe(address: Address, protocol: str, timeout_s: float = 2.0) -> str | None:
    """None when a server of ``protocol`` answers at ``address``, else why not.

    Through Toxiproxy this checks the whole path: Toxiproxy accepts every connection, then
    closes it at once when it cannot reach the upstream.
    """
    try:
        with socket.create_connection(address, timeout=timeout_s) as sock:
            sock.sendall(_PROBES[protocol])
            answer = sock.recv(64)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if answer else "the connection was closed without an answer"


class EventLog(Protocol):
    """Where a route reports what it did (a structlog logger fits)."""

    def info(self, event: str, **fields: Any) -> Any: ...

    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...


class ToxiproxyRoute:
    """The routes of one run through Toxiproxy, and the fault schedule of each pass.

    ``endpoints`` go through Toxiproxy; ``metadata`` describes what was set up (for the run's
    metadata). ``start_faults`` starts the fault schedule in a thread of its own, offsets
    counted from ``start_ns``, every fault event carrying ``fields``; ``stop_faults`` undoes
    what is still applied; ``close`` does that and removes the latency toxics and created
    proxies. ``close`` never raises: the problems it meets are logged.
    """

    def __init__(self, network: ToxiproxyNetwork, endpoints: Endpoints,
                 metadata: dict[str, Any], faults: Sequence[Fault], log: EventLog) -> None:
        self.network = network
        self.endpoints = endpoints
        self.metadata = metadata
        self.faults = tuple(faults)
        self.log = log
        self.schedule: FaultSchedule | None = None

    def start_faults(self, start_ns: int, **fields: Any) -> None:
        self.stop_faults()
        if not self.faults:
            return

        def on_event(name: str, event: dict[str, Any]) -> None:
            self.log.info(name, **fields, **event)

        self.schedule = FaultSchedule(self.network.client, self.faults, on_event)
        self.schedule.start_in_thread(start_ns)

    def stop_faults(self) -> None:
        schedule, self.schedule = self.schedule, None
        if schedule is None:
            return
        for problem in schedule.stop(timeout_s=3.0):
            self.log.warning("fault_cleanup_problem", problem=problem)
        if schedule.error is not None:
            self.log.error("fault_schedule_failed", error=str(schedule.error))

    def close(self) -> None:
        self.stop_faults()
        for problem in self.network.teardown():
            self.log.warning("toxiproxy_teardown_problem", problem=problem)


def open_route(endpoints: Endpoints, *, url: str, log: EventLog, latency_ms: float = 0.0,
               jitter_ms: float = 0.0, listen: Mapping[str, str] | None = None,
               faults: Sequence[Fault] = ()) -> ToxiproxyRoute:
    """Prepare the Toxiproxy at ``url`` for a run and route ``endpoints`` through it.

    ``listen`` maps a route name to the listen address of a proxy this run creates (default:
    a port Toxiproxy picks). An existing proxy whose upstream differs from the run's endpoint
    is kept as configured when a server answers through it (the compose stack's proxies
    forward to ``postgres:5432`` / ``valkey:6379``, names only Toxiproxy's container can
    resolve), and re-pointed at the run's endpoint otherwise. Every route is probed through
    Toxiproxy before this returns; on any failure what was set up is taken down again.
    """
    listen_addresses = {proxy_name(name): address
                        for name, address in (listen or {}).items() if name in ROUTE_NAMES}
    ctl = ToxiproxyNetwork(url, listen_addresses=listen_addresses)
    cleaned = ctl.clear_leftovers([r.proxy for r in ROUTES])
    existing = ctl.client.proxies()
    upstreams: dict[str, Address | None] = {}
    for r in ROUTES:
        target = url_address(endpoints.url(r.name))
        info = existing.get(r.proxy)
        keep = (info is not None and info.get("upstream") != format_hostport(*target)
                and probe(ctl.client_address(info), r.protocol, ctl.client.timeout_s) is None)
        upstreams[r.proxy] = None if keep else target
    addresses = ctl.setup(upstreams, latency_ms, jitter_ms)
    try:
        for r in ROUTES:
            why = probe(addresses[r.proxy], r.protocol, ctl.client.timeout_s + latency_ms / 1000)
            if why is not None:
                upstream = ctl.metadata()["proxies"][r.proxy]["upstream"]
                raise UpstreamUnreachableError(
                    f"no {r.protocol} server answers through Toxiproxy proxy {r.proxy!r} "
                    f"({format_hostport(*addresses[r.proxy])} -> {upstream})", detail=why,
                    hint="the upstream must be reachable from where Toxiproxy runs: inside "
                         "the compose stack that is postgres:5432 / valkey:6379 (see "
                         "proxies/toxiproxy.json) and the compose services must be up; with "
                         "a local toxiproxy-server it is the run's own server address")
        if faults:
            FaultSchedule(ctl.client, faults, lambda name, fields: None).check()
    except BaseException:
        ctl.teardown()
        raise
    routed = endpoints.rerouted({r.name: addresses[r.proxy] for r in ROUTES})
    metadata = dict(ctl.metadata(), cleaned=cleaned)
    log.info("toxiproxy_ready", url=ctl.client.url, version=metadata["toxiproxy_version"],
             proxies=metadata["proxies"], split=metadata["split"])
    return ToxiproxyRoute(ctl, routed, metadata, faults, log)
