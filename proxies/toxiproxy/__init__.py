"""Network emulation through Toxiproxy: real TCP, latency toxics, fault schedules.

``client``: the HTTP API.
``latency``: a round trip split into whole-millisecond toxics.
``network``: one run's proxies and latency toxics.
``schedule``: faults applied at their offsets.
``route``: what the orchestrator opens for a run (all of the above).
"""

from proxies.toxiproxy.client import DEFAULT_URL, ToxiproxyClient, available
from proxies.toxiproxy.latency import DirectionLatency, LatencySplit, split_latency
from proxies.toxiproxy.network import ToxiproxyNetwork
from proxies.toxiproxy.route import EventLog, ToxiproxyRoute, open_route, probe
from proxies.toxiproxy.schedule import FaultSchedule

__all__ = [
    "DEFAULT_URL",
    "DirectionLatency",
    "EventLog",
    "FaultSchedule",
    "LatencySplit",
    "ToxiproxyClient",
    "ToxiproxyNetwork",
    "ToxiproxyRoute",
    "available",
    "open_route",
    "probe",
    "split_latency",
]
