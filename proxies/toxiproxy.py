"""Network emulation through Toxiproxy: make sure the proxies exist, add latency/jitter toxics.

Toxiproxy (https://github.com/Shopify/toxiproxy) is a TCP proxy with an HTTP API on port 8474.
:class:`ToxiproxyNetwork` prepares it for one run: each needed proxy (``pgcache-postgres``,
``pgcache-postgres-listener``, ``pgcache-valkey``) is reused when it exists and created when it
does not; latency/jitter toxics are added so that one round trip costs the configured latency;
``teardown()`` removes exactly what ``setup()`` added, and never raises.

How the latency is split: Toxiproxy's latency toxic delays each chunk of one direction by
``latency`` ms plus a uniformly drawn integer in ``[-jitter, jitter)`` ms, and both attributes
are whole milliseconds (a fraction is rejected with 400). A request crosses the ``upstream``
direction and its reply the ``downstream`` one, so a round trip pays both. :func:`split_latency`
picks the whole-millisecond settings whose round-trip mean is nearest the configured latency
and whose round-trip spread is nearest ``+/- jitter``, split as evenly as possible between the
two directions (ties put the extra on the downstream side). Example: 1.5 ms +/- 0.5 ms becomes
upstream 1 ms and downstream 1 ms +/- 1 ms (0 or 1 ms), i.e. round trips of 1 or 2 ms, mean
1.5 ms. 20 ms becomes 10 ms each way. The effective values are in :meth:`metadata`.

Why plain ``urllib`` rather than toxiproxy-python: that client keeps the server address in
process-global class attributes, sets no timeout on any request (a stuck server would hang a
teardown that must finish within the 5 s interrupt budget), does not report a 500 (what
Toxiproxy answers to a port conflict: its ``create`` then fails with a ``KeyError``), and has
no way to update a proxy. The HTTP API is small and documented; :class:`ToxiproxyClient`
speaks it with a timeout on every call and maps each failure to a precise :class:`ProxyError`.
The test suite checks that toxiproxy-python also works against the same API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import socket
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from proxies.faults import Fault, FaultSchedule

DEFAULT_URL = "http://127.0.0.1:8474"
PROXY_POSTGRES = "pgcache-postgres"
PROXY_POSTGRES_LISTENER = "pgcache-postgres-listener"
PROXY_VALKEY = "pgcache-valkey"
PROXY_NAMES = (PROXY_POSTGRES, PROXY_POSTGRES_LISTENER, PROXY_VALKEY)
TOXIC_PREFIX = "pgcache"
STREAMS = ("upstream", "downstream")

_START_HINT = ("start it with `docker compose -f compose.yaml up -d toxiproxy` (or run "
               "toxiproxy-server), point network.toxiproxy_url at it, or use network.mode "
               "inprocess (or auto, which falls back to inprocess)")


class ProxyError(Exception):
    """Root of the network-emulation errors; ``detail``/``hint`` say what and how to fix."""

    def __init__(self, message: str, *, detail: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail
        self.hint = hint

    def __str__(self) -> str:
        parts = [self.args[0]]
        if self.detail:
            parts.append(f"detail: {self.detail}")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class ProxyConfigError(ProxyError, ValueError):
    """An argument given to this package is invalid (raised synchronously, before any I/O)."""

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None,
                 problems: Sequence[str] = ()) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.problems = list(problems) or [message]


class ToxiproxyUnreachableError(ProxyError):
    """No Toxiproxy API answers at the configured URL."""


class UnknownProxyError(ProxyError):
    """A proxy name that Toxiproxy does not know."""


class PortConflictError(ProxyError):
    """Toxiproxy could not listen on a proxy's address because something else holds it."""


class UpstreamUnreachableError(ProxyError):
    """A proxy exists but no server answers through it."""


class ToxiproxyAPIError(ProxyError):
    """Toxiproxy answered with an unexpected error status."""

    def __init__(self, message: str, *, status: int, detail: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.status = status


def _validate_url(url: str) -> tuple[str, int]:
    if not isinstance(url, str):
        raise ProxyConfigError(f"toxiproxy_url must be a string, found {type(url).__name__}")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ProxyConfigError(f"toxiproxy_url {url!r} is not an http(s) URL",
                               hint="write it like http://127.0.0.1:8474")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 8474)
    except ValueError as exc:
        raise ProxyConfigError(f"toxiproxy_url {url!r} has an invalid port") from exc
    return parsed.hostname, port


def _validate_timeout(timeout_s: float) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not (
            0 < timeout_s <= 60):
        raise ProxyConfigError(f"timeout_s must be a number in (0, 60], found {timeout_s!r}")
    return float(timeout_s)


class ToxiproxyClient:
    """Toxiproxy's HTTP API, one instance per server, a timeout on every request."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout_s: float = 2.0) -> None:
        self.host, self.port = _validate_url(url)
        self.url = url.rstrip("/")
        self.timeout_s = _validate_timeout(timeout_s)

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     "User-Agent": "pgcache-proxies"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            message = raw.decode(errors="replace").strip()
            with contextlib.suppress(ValueError, KeyError, TypeError):
                message = str(json.loads(raw)["error"])
            raise ToxiproxyAPIError(f"Toxiproxy at {self.url} answered {exc.code} to "
                                    f"{method} {path}: {message}", status=exc.code,
                                    detail=message) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ToxiproxyUnreachableError(
                f"Toxiproxy is unreachable at {self.url}", detail=f"{method} {path}: {reason}",
                hint=_START_HINT) from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace").strip()

    # -- read -------------------------------------------------------------------------------
    def version(self) -> str:
        """The server's version (older servers answer plain text, newer ones JSON)."""
        answer = self._request("GET", "/version")
        if isinstance(answer, dict):
            return str(answer.get("version", ""))
        return str(answer)

    def proxies(self) -> dict[str, dict[str, Any]]:
        answer = self._request("GET", "/proxies")
        return dict(answer) if isinstance(answer, dict) else {}

    def proxy(self, name: str) -> dict[str, Any]:
        return dict(self._call_on_proxy(name, "GET", f"/proxies/{_quote(name)}"))

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        answer = self._call_on_proxy(proxy, "GET", f"/proxies/{_quote(proxy)}/toxics")
        return list(answer) if isinstance(answer, list) else []

    # -- write ------------------------------------------------------------------------------
    def create_proxy(self, name: str, listen: str, upstream: str,
                     enabled: bool = True) -> dict[str, Any]:
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        try:
            return dict(self._request("POST", "/proxies", body))
        except ToxiproxyAPIError as exc:
            raise _refine(exc, name, listen) from None

    def update_proxy(self, name: str, **fields: Any) -> dict[str, Any]:
        # POST, not PATCH: every 2.x server takes POST (2.6+ also PATCH, and logs POST as
        # deprecated).
        try:
            return dict(self._call_on_proxy(name, "POST", f"/proxies/{_quote(name)}", fields))
        except ToxiproxyAPIError as exc:
            raise _refine(exc, name, str(fields.get("listen", "its listen address"))) from None

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Enable a proxy, or disable it: Toxiproxy then closes its listener and connections."""
        self.update_proxy(name, enabled=enabled)

    def delete_proxy(self, name: str) -> None:
        self._call_on_proxy(name, "DELETE", f"/proxies/{_quote(name)}")

    def add_toxic(self, proxy: str, *, name: str, type: str, stream: str = "downstream",
                  attributes: Mapping[str, int] | None = None,
                  toxicity: float = 1.0) -> dict[str, Any]:
        body = {"name": name, "type": type, "stream": stream, "toxicity": toxicity,
                "attributes": dict(attributes or {})}
        return dict(self._call_on_proxy(proxy, "POST", f"/proxies/{_quote(proxy)}/toxics",
                                        body))

    def remove_toxic(self, proxy: str, name: str, *, missing_ok: bool = False) -> bool:
        """Remove a toxic; with ``missing_ok`` a toxic or proxy already gone returns False."""
        try:
            self._call_on_proxy(proxy, "DELETE",
                                f"/proxies/{_quote(proxy)}/toxics/{_quote(name)}")
        except (UnknownProxyError, ToxiproxyAPIError) as exc:
            if missing_ok and (isinstance(exc, UnknownProxyError) or exc.status == 404):
                return False
            raise
        return True

    def _call_on_proxy(self, name: str, method: str, path: str, body: Any = None) -> Any:
        try:
            return self._request(method, path, body)
        except ToxiproxyAPIError as exc:
            if exc.status == 404 and exc.detail == "proxy not found":
                try:
                    known = ", ".join(sorted(self.proxies())) or "none"
                except ProxyError:
                    known = "(could not list them)"
                raise UnknownProxyError(
                    f"Toxiproxy at {self.url} has no proxy named {name!r}",
                    detail=f"it has: {known}",
                    hint="check the proxy name in the fault schedule, or let the run create "
                         "it (network.mode toxiproxy creates pgcache-postgres, "
                         "pgcache-postgres-listener and pgcache-valkey)") from None
            raise


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _refine(exc: ToxiproxyAPIError, name: str, listen: str) -> ProxyError:
    text = (exc.detail or "").lower()
    if "address already in use" in text or "bind" in text:
        return PortConflictError(
            f"Toxiproxy cannot listen on {listen} for proxy {name!r}: the port is taken",
            detail=exc.detail,
            hint="stop whatever holds that port (another Toxiproxy proxy: see GET /proxies), "
                 "or choose another port (network.toxiproxy_ports), or 0 to let Toxiproxy "
                 "pick a free one")
    return exc


def available(url: str = DEFAULT_URL, timeout_s: float = 0.5) -> bool:
    """Whether a Toxiproxy API answers at ``url`` within ``timeout_s`` (for mode auto)."""
    try:
        ToxiproxyClient(url, timeout_s=timeout_s).version()
    except ProxyError:
        return False
    return True


# -- latency split ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DirectionLatency:
    """Whole-millisecond latency toxic attributes for one direction."""

    latency: int
    jitter: int

    def delays(self) -> range:
        """Every delay (ms) Toxiproxy may draw, each equally likely, before clamping at 0."""
        if self.jitter == 0:
            return range(self.latency, self.latency + 1)
        return range(self.latency - self.jitter, self.latency + self.jitter)

    @property
    def mean_ms(self) -> float:
        values = [max(0, d) for d in self.delays()]
        return sum(values) / len(values)

    @property
    def low_ms(self) -> int:
        return max(0, self.delays()[0])

    @property
    def high_ms(self) -> int:
        return max(0, self.delays()[-1])


@dataclass(frozen=True, slots=True)
class LatencySplit:
    """How a round-trip latency is spread over the two directions of a proxy."""

    upstream: DirectionLatency
    downstream: DirectionLatency

    @property
    def mean_ms(self) -> float:
        return self.upstream.mean_ms + self.downstream.mean_ms

    @property
    def jitter_ms(self) -> float:
        """Half the range of round-trip delays (requested as ``+/- jitter``)."""
        low = self.upstream.low_ms + self.downstream.low_ms
        high = self.upstream.high_ms + self.downstream.high_ms
        return (high - low) / 2

    def as_dict(self) -> dict[str, Any]:
        return {"upstream": {"latency": self.upstream.latency, "jitter": self.upstream.jitter},
                "downstream": {"latency": self.downstream.latency,
                               "jitter": self.downstream.jitter},
                "round_trip_mean_ms": self.mean_ms, "round_trip_jitter_ms": self.jitter_ms}


def _check_ms(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and 0 <= value <= 60_000):
        raise ProxyConfigError(f"{name} must be a number of milliseconds in [0, 60000], "
                               f"found {value!r}")
    return float(value)


def split_latency(latency_ms: float, jitter_ms: float = 0.0) -> LatencySplit:
    """Whole-ms toxic settings whose round trip is nearest ``latency_ms`` +/- ``jitter_ms``."""
    latency = _check_ms("latency_ms", latency_ms)
    jitter = _check_ms("jitter_ms", jitter_ms)
    if jitter > latency:
        raise ProxyConfigError(f"jitter_ms ({jitter_ms}) must not exceed latency_ms "
                               f"({latency_ms}): a round trip cannot take negative time")

    def near(value: float) -> range:
        return range(max(0, math.floor(value) - 1), math.ceil(value) + 2)

    jitters = sorted({0, 1, *near(jitter / 2)})
    best: tuple[tuple[float, ...], LatencySplit] | None = None
    for up_latency in near(latency / 2):
        for down_latency in near(latency - up_latency):
            for up_jitter in jitters:
                for down_jitter in jitters:
                    split = LatencySplit(DirectionLatency(up_latency, up_jitter),
                                         DirectionLatency(down_latency, down_jitter))
                    score = (round(abs(split.mean_ms - latency), 9),
                             round(abs(split.jitter_ms - jitter), 9),
                             abs(up_latency - down_latency), abs(up_jitter - down_jitter),
                             up_latency > down_latency, up_jitter > down_jitter)
                    if best is None or score < best[0]:
                        best = (score, split)
    assert best is not None
    return best[1]


# -- the run's network ---------------------------------------------------------------------
Address = tuple[str, int]


def _format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_hostport(value: str) -> Address:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ProxyConfigError(f"{value!r} is not a HOST:PORT address")
    return host.strip("[]"), int(port)


def route_url(url: str, address: Address) -> str:
    """``url`` (a postgresql:// DSN or redis:// URL) with its host and port replaced."""
    parts = urllib.parse.urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = _format_hostport(*address)
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class ToxiproxyNetwork:
    """One run's use of a Toxiproxy server: proxies ensured, latency toxics added, then removed.

    ``setup(upstreams, latency_ms, jitter_ms)`` returns, per proxy name, the address clients
    must connect to: the Toxiproxy URL's host (or ``client_host``) and the proxy's listen port
    (with the compose stack the container's listen ports are published on the host).
    """

    def __init__(self, url: str = DEFAULT_URL, *, timeout_s: float = 2.0,
                 listen_host: str = "127.0.0.1",
                 listen_addresses: Mapping[str, str] | None = None,
                 client_host: str | None = None, toxic_prefix: str = TOXIC_PREFIX) -> None:
        self.client = ToxiproxyClient(url, timeout_s=timeout_s)
        if not isinstance(listen_host, str) or not listen_host:
            raise ProxyConfigError(f"listen_host must be a host name or address, found "
                                   f"{listen_host!r}")
        listen = dict(listen_addresses or {})
        for name, address in listen.items():
            try:
                _, port = _parse_hostport(address) if isinstance(address, str) else ("", -1)
            except ProxyConfigError:
                port = -1
            if not 0 <= port <= 65535:
                raise ProxyConfigError(f"listen address for {name!r} must be HOST:PORT with a "
                                       f"port in [0, 65535] (0 = Toxiproxy picks), found "
                                       f"{address!r}")
        if client_host is not None and (not isinstance(client_host, str) or not client_host):
            raise ProxyConfigError(f"client_host must be a host name, found {client_host!r}")
        if not isinstance(toxic_prefix, str) or not toxic_prefix.replace("-", "").isalnum():
            raise ProxyConfigError(f"toxic_prefix must be letters, digits and '-', found "
                                   f"{toxic_prefix!r}")
        self.listen_host = listen_host
        self.listen_addresses = listen
        self.client_host = client_host or self.client.host
        self.toxic_prefix = toxic_prefix
        self._lock = threading.Lock()
        self._version: str | None = None
        self._split: LatencySplit | None = None
        self._requested: tuple[float, float] = (0.0, 0.0)
        self._proxies: dict[str, dict[str, Any]] = {}
        self._added: list[tuple[str, str]] = []  # (proxy, toxic) added by setup
        self._created: list[str] = []
        self._toxics: list[dict[str, Any]] = []
        self._active = False

    def client_address(self, info: Mapping[str, Any]) -> Address:
        """Where a client connects to reach a proxy described by Toxiproxy's ``info``."""
        _, port = _parse_hostport(str(info["listen"]))
        return self.client_host, port

    def clear_leftovers(self, names: Iterable[str]) -> list[str]:
        """Remove ``{toxic_prefix}-*`` toxics and re-enable the named proxies; say what was done.

        An interrupted run (SIGKILL, power loss) can leave its toxics or a disabled proxy
        behind; a new run starts from a clean state.
        """
        done: list[str] = []
        existing = self.client.proxies()
        for name in names:
            info = existing.get(name)
            if info is None:
                continue
            for toxic in info.get("toxics") or []:
                toxic_name = str(toxic.get("name", ""))
                if toxic_name.startswith(f"{self.toxic_prefix}-"):
                    self.client.remove_toxic(name, toxic_name, missing_ok=True)
                    done.append(f"removed leftover toxic {toxic_name!r} from {name!r}")
            if not info.get("enabled", True):
                self.client.set_enabled(name, True)
                done.append(f"re-enabled proxy {name!r}")
        return done

    def setup(self, upstreams: Mapping[str, Address | None], latency_ms: float = 0.0,
              jitter_ms: float = 0.0) -> dict[str, Address]:
        """Ensure each proxy exists and carries the latency toxics; return client addresses.

        ``upstreams`` maps a proxy name to the (host, port) it must forward to, as Toxiproxy
        sees it; an existing proxy with another upstream is re-pointed. ``None`` means "use the
        proxy as configured" (e.g. the compose stack's ``proxies/toxiproxy.json``), and it must
        exist. Leftover ``{toxic_prefix}-*`` toxics from an interrupted run are removed and a
        disabled proxy is re-enabled. New proxies listen on ``listen_addresses[name]``, or on
        ``listen_host`` with a port Toxiproxy picks.
        """
        split = split_latency(latency_ms, jitter_ms)
        wanted: dict[str, Address | None] = {}
        for name, upstream in upstreams.items():
            if upstream is not None and (
                    not isinstance(upstream, tuple) or len(upstream) != 2
                    or not isinstance(upstream[0], str)
                    or isinstance(upstream[1], bool) or not isinstance(upstream[1], int)):
                raise ProxyConfigError(f"upstream of {name!r} must be (host, port) or None, "
                                       f"found {upstream!r}")
            wanted[name] = upstream
        with self._lock:
            if self._active:
                raise ProxyConfigError("setup() was already called; call teardown() first")
            self._version = self.client.version()
            self._split, self._requested = split, (float(latency_ms), float(jitter_ms))
            self._proxies, self._toxics = {}, []
            existing = self.client.proxies()
            addresses: dict[str, Address] = {}
            self._active = True
            try:
                for name, upstream in wanted.items():
                    info, action = self._ensure(name, upstream, existing.get(name))
                    cleaned = self.clear_leftovers([name])
                    address = self.client_address(info)
                    addresses[name] = address
                    self._proxies[name] = {"listen": info["listen"],
                                           "upstream": info["upstream"], "action": action,
                                           "client_address": _format_hostport(*address),
                                           "cleaned": cleaned}
                    self._add_latency(name, split)
            except BaseException:
                self._teardown_locked()
                raise
            return addresses

    def _ensure(self, name: str, upstream: Address | None,
                info: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
        if upstream is None:
            if info is None:
                raise UnknownProxyError(
                    f"Toxiproxy at {self.client.url} has no proxy named {name!r}",
                    hint="add it to proxies/toxiproxy.json (the compose stack's -config "
                         "file), or give its upstream so that the run creates it")
            return info, "reused"
        target = _format_hostport(*upstream)
        if info is None:
            listen = self.listen_addresses.get(name) or _format_hostport(self.listen_host, 0)
            self._created.append(name)
            try:
                return self.client.create_proxy(name, listen, target), "created"
            except BaseException:
                self._created.remove(name)
                raise
        if info.get("upstream") == target:
            return info, "reused"
        # Same listen address, new upstream: Toxiproxy restarts the proxy.
        return self.client.update_proxy(name, upstream=target), "repointed"

    def _add_latency(self, name: str, split: LatencySplit) -> None:
        for stream, direction in (("upstream", split.upstream),
                                  ("downstream", split.downstream)):
            if direction.latency == 0 and direction.jitter == 0:
                continue
            toxic_name = f"{self.toxic_prefix}-latency-{stream}"
            attributes = {"latency": direction.latency, "jitter": direction.jitter}
            self._added.append((name, toxic_name))
            self.client.add_toxic(name, name=toxic_name, type="latency", stream=stream,
                                  attributes=attributes)
            self._toxics.append({"proxy": name, "name": toxic_name, "type": "latency",
                                 "stream": stream, "toxicity": 1.0, "attributes": attributes})

    def teardown(self) -> list[str]:
        """Remove the toxics setup() added and the proxies it created; idempotent, never raises.

        Returns the problems met (e.g. Toxiproxy already gone), for the caller to log.
        """
        with self._lock:
            return self._teardown_locked()

    def _teardown_locked(self) -> list[str]:
        problems: list[str] = []
        while self._added:
            proxy, toxic = self._added.pop()
            try:
                self.client.remove_toxic(proxy, toxic, missing_ok=True)
            except ProxyError as exc:
                problems.append(f"removing toxic {toxic!r} from {proxy!r}: {exc.args[0]}")
        while self._created:
            proxy = self._created.pop()
            try:
                self.client.delete_proxy(proxy)
            except UnknownProxyError:
                pass
            except ProxyError as exc:
                problems.append(f"deleting proxy {proxy!r}: {exc.args[0]}")
        self._active = False
        return problems

    def metadata(self) -> dict[str, Any]:
        """The network configuration of this run, for the run's metadata."""
        return {
            "mode": "toxiproxy",
            "toxiproxy_url": self.client.url,
            "toxiproxy_version": self._version,
            "latency_ms": self._requested[0],
            "jitter_ms": self._requested[1],
            "split": self._split.as_dict() if self._split else None,
            "proxies": {name: dict(info) for name, info in self._proxies.items()},
            "toxics": [dict(t, attributes=dict(t["attributes"])) for t in self._toxics],
        }


# -- the orchestrator's seam -------------------------------------------------------------------
# Short route names used by workloads -> Toxiproxy proxy names, and the protocol each speaks.
ROUTES = {
    "postgres": (PROXY_POSTGRES, "postgres"),
    "postgres-listener": (PROXY_POSTGRES_LISTENER, "postgres"),
    "valkey": (PROXY_VALKEY, "valkey"),
}
_ENDPOINT_FIELDS = {"postgres": "postgres_dsn", "postgres-listener": "postgres_listener_dsn",
                    "valkey": "valkey_url"}
# Postgres answers an SSLRequest with one byte ('S' or 'N'); Valkey answers PING (or NOAUTH).
_PROBES = {"postgres": struct.pack("!ii", 8, 80877103), "valkey": b"PING\r\n"}


def url_address(url: str) -> Address:
    """The (host, port) a postgresql:// DSN or redis:// URL connects to."""
    parts = urllib.parse.urlsplit(url)
    default = 6379 if parts.scheme.startswith(("redis", "valkey")) else 5432
    return parts.hostname or "127.0.0.1", parts.port or default


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


class _Log(Protocol):
    def info(self, event: str, **fields: Any) -> Any: ...

    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...


class ToxiproxyRoute:
    """The parent-side route of a run in network mode ``toxiproxy``.

    ``endpoints`` go through Toxiproxy; ``config`` is the network part of the run's metadata.
    The runner calls ``pass_started`` when a backend's measurement starts (the fault schedule
    starts, in a thread of its own, offsets counted from ``measure_start_ns``),
    ``pass_finished`` when it ends (remaining faults are undone), and ``close`` at the end of
    the run, also on failure or interrupt (faults undone, latency toxics and created proxies
    removed). Fault events are logged with ``backend`` and ``repetition`` from the schedule's
    thread.
    """

    worker_mode = "none"

    def __init__(self, network: ToxiproxyNetwork, endpoints: Any, config: dict[str, Any],
                 faults: Sequence[Fault], log: _Log) -> None:
        self.network = network
        self.endpoints = endpoints
        self.config = config
        self.faults = list(faults)
        self.log = log
        self.schedule: FaultSchedule | None = None

    def pass_started(self, backend: str, repetition: int, measure_start_ns: int) -> None:
        self._stop_schedule()
        if not self.faults:
            return
        from proxies.faults import FaultSchedule

        def on_event(name: str, fields: dict[str, Any]) -> None:
            self.log.info(name, backend=backend, repetition=repetition, **fields)

        self.schedule = FaultSchedule(self.network.client, self.faults, on_event)
        self.schedule.start_in_thread(measure_start_ns)

    def pass_finished(self, backend: str, repetition: int) -> None:
        self._stop_schedule()

    def _stop_schedule(self) -> None:
        schedule, self.schedule = self.schedule, None
        if schedule is None:
            return
        for problem in schedule.stop(timeout_s=3.0):
            self.log.warning("fault_cleanup_problem", problem=problem)
        if schedule.error is not None:
            self.log.error("fault_schedule_failed", error=str(schedule.error))

    def close(self) -> None:
        self._stop_schedule()
        for problem in self.network.teardown():
            self.log.warning("toxiproxy_teardown_problem", problem=problem)


def open_route(network: Any, endpoints: Any, log: _Log) -> ToxiproxyRoute:
    """Prepare Toxiproxy for a run and route ``endpoints`` through it.

    ``network`` is the workload's network model (``latency_ms``, ``jitter_ms``,
    ``toxiproxy_url``, ``proxies`` = short route name -> listen address for proxies this run
    creates, ``faults``); ``endpoints`` a dataclass with ``postgres_dsn``,
    ``postgres_listener_dsn`` and ``valkey_url``. An existing proxy whose upstream differs
    from the run's endpoint is kept as configured when a server answers through it (the compose
    stack's proxies forward to ``postgres:5432`` / ``valkey:6379``, names only Toxiproxy's
    container can resolve), and re-pointed at the run's endpoint otherwise.
    """
    listen = {ROUTES[short][0]: address for short, address in dict(network.proxies).items()
              if short in ROUTES}
    ctl = ToxiproxyNetwork(network.toxiproxy_url, listen_addresses=listen)
    faults: list[Fault] = list(network.faults)
    names = [name for name, _ in ROUTES.values()]
    cleaned = ctl.clear_leftovers(names)
    existing = ctl.client.proxies()
    upstreams: dict[str, Address | None] = {}
    for short, (name, protocol) in ROUTES.items():
        target = url_address(getattr(endpoints, _ENDPOINT_FIELDS[short]))
        info = existing.get(name)
        keep = (info is not None and info.get("upstream") != _format_hostport(*target)
                and probe(ctl.client_address(info), protocol, ctl.client.timeout_s) is None)
        upstreams[name] = None if keep else target
    addresses = ctl.setup(upstreams, network.latency_ms, network.jitter_ms)
    try:
        for name, protocol in ROUTES.values():
            why = probe(addresses[name], protocol,
                        ctl.client.timeout_s + network.latency_ms / 1000)
            if why is not None:
                upstream = ctl.metadata()["proxies"][name]["upstream"]
                raise UpstreamUnreachableError(
                    f"no {protocol} server answers through Toxiproxy proxy {name!r} "
                    f"({_format_hostport(*addresses[name])} -> {upstream})", detail=why,
                    hint="the upstream must be reachable from where Toxiproxy runs: inside "
                         "the compose stack that is postgres:5432 / valkey:6379 (see "
                         "proxies/toxiproxy.json) and the compose services must be up; with "
                         "a local toxiproxy-server it is the run's own server address")
        if faults:
            from proxies.faults import FaultSchedule

            FaultSchedule(ctl.client, faults, lambda name, fields: None).check()
    except BaseException:
        ctl.teardown()
        raise
    routed = dataclasses.replace(endpoints, **{
        _ENDPOINT_FIELDS[short]: route_url(getattr(endpoints, _ENDPOINT_FIELDS[short]),
                                           addresses[name])
        for short, (name, _) in ROUTES.items()})
    config = dict(network.to_dict()) if hasattr(network, "to_dict") else {}
    config["mode"] = "toxiproxy"
    config["toxiproxy"] = dict(ctl.metadata(), cleaned=cleaned)
    config["faults"] = [
        {"at_s": f.at_s, "duration_s": f.duration_s, "proxy": f.proxy_name, "toxic": f.toxic,
         "stream": f.stream if f.toxic != "down" else None, "toxicity": f.toxicity,
         "attributes": dict(f.attributes),
         "label": f.label} for f in faults]
    log.info("toxiproxy_ready", url=ctl.client.url, version=ctl.metadata()["toxiproxy_version"],
             proxies=ctl.metadata()["proxies"], split=ctl.metadata()["split"])
    return ToxiproxyRoute(ctl, routed, config, faults, log)
