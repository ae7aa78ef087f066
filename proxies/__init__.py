"""Network emulation between the benchmark's workers and the servers.

The lower layer of the benchmark: it knows routes, faults and proxies, never the orchestrator.

``routes``: the three routes, the endpoints and URL rewriting.
``faults``: the fault model and its validation.
``inprocess``: an asyncio TCP relay inside each worker that delays every byte.
``toxiproxy``: real TCP through Toxiproxy with latency/jitter and fault toxics.
``errors``: one root, :class:`ProxyError`, and the one problem class of every config check.
"""

from proxies.errors import (
    ConfigProblem,
    PortConflictError,
    ProxyConfigError,
    ProxyError,
    ToxiproxyAPIError,
    ToxiproxyUnreachableError,
    UnknownProxyError,
    UpstreamUnreachableError,
)
from proxies.faults import FAULT_ATTRIBUTES, FAULT_STREAMS, Fault, parse_faults
from proxies.inprocess import DelayClock, InProcessNetwork
from proxies.routes import PROXY_NAMES, ROUTE_NAMES, ROUTES, Address, Endpoints, Route

__all__ = [
    "FAULT_ATTRIBUTES",
    "FAULT_STREAMS",
    "PROXY_NAMES",
    "ROUTES",
    "ROUTE_NAMES",
    "Address",
    "ConfigProblem",
    "DelayClock",
    "Endpoints",
    "Fault",
    "InProcessNetwork",
    "PortConflictError",
    "ProxyConfigError",
    "ProxyError",
    "Route",
    "ToxiproxyAPIError",
    "ToxiproxyUnreachableError",
    "UnknownProxyError",
    "UpstreamUnreachableError",
    "parse_faults",
]
