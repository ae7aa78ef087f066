"""The routes between an application instance and its servers, and where each one ends.

A worker talks to its servers over three routes, each of which network emulation can delay or
break on its own:

========================  ==========  ==============================  ==========================
route (workload name)     protocol    Toxiproxy proxy                 :class:`Endpoints` field
========================  ==========  ==============================  ==========================
``postgres``              postgres    ``pgcache-postgres``            ``postgres_dsn``
``postgres-listener``     postgres    ``pgcache-postgres-listener``   ``postgres_listener_dsn``
``valkey``                valkey      ``pgcache-valkey``              ``valkey_url``
========================  ==========  ==============================  ==========================

The listener route is pgcache's LISTEN connection: it has a route of its own so that a fault
can target it alone. Everything that needs this table imports it from here, and URLs are
rewritten only by :meth:`Endpoints.rerouted` / :func:`with_address`.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from proxies.errors import ProxyConfigError

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Route:
    """One route: its workload name, the protocol at its end, its proxy and its endpoint."""

    name: str
    protocol: str  # "postgres" | "valkey": what answers at the end of the route
    proxy: str  # the Toxiproxy proxy a run creates (or reuses) for it
    endpoint: str  # the Endpoints field holding its URL


ROUTES: tuple[Route, ...] = (
    Route("postgres", "postgres", "pgcache-postgres", "postgres_dsn"),
    Route("postgres-listener", "postgres", "pgcache-postgres-listener", "postgres_listener_dsn"),
    Route("valkey", "valkey", "pgcache-valkey", "valkey_url"),
)
ROUTE_NAMES: tuple[str, ...] = tuple(r.name for r in ROUTES)
PROXY_NAMES: tuple[str, ...] = tuple(r.proxy for r in ROUTES)
_BY_NAME = {r.name: r for r in ROUTES}


def proxy_name(name: str) -> str:
    """The Toxiproxy proxy a name refers to: a route's proxy, or the name itself."""
    found = _BY_NAME.get(name)
    return found.proxy if found is not None else name


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where an application instance connects, one URL per route."""

    postgres_dsn: str
    valkey_url: str
    postgres_listener_dsn: str

    def url(self, route: str) -> str:
        """The URL of the route called ``route`` (empty when this instance does not use it)."""
        url: str = getattr(self, _BY_NAME[route].endpoint)
        return url

    def rerouted(self, addresses: Mapping[str, Address]) -> Endpoints:
        """These endpoints with each route named in ``addresses`` pointed at its address."""
        return dataclasses.replace(self, **{
            r.endpoint: with_address(self.url(r.name), addresses[r.name])
            for r in ROUTES if r.name in addresses})


def url_address(url: str) -> Address:
    """The (host, port) a postgresql:// DSN or redis:// URL connects to."""
    parts = urllib.parse.urlsplit(url)
    default = 6379 if parts.scheme.startswith(("redis", "valkey")) else 5432
    return parts.hostname or "127.0.0.1", parts.port or default


def with_address(url: str, address: Address) -> str:
    """``url`` (a postgresql:// DSN or redis:// URL) with its host and port replaced."""
    parts = urllib.parse.urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = format_hostport(*address)
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def format_hostport(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_hostport(value: str) -> Address:
    """(host, port) of a ``HOST:PORT`` text; ProxyConfigError when it is not one."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ProxyConfigError(f"{value!r} is not a HOST:PORT address")
    return host.strip("[]"), int(port)
