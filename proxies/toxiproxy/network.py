"""One run's Toxiproxy network: its proxies ensured, latency toxics added, then removed.

:class:`ToxiproxyNetwork` prepares a Toxiproxy server for one run: each needed proxy is reused
when it exists and created when it does not; latency/jitter toxics are added so that one round
trip costs the configured latency (see :mod:`proxies.toxiproxy.latency`); ``teardown()``
removes exactly what ``setup()`` added, and never raises. The effective values are in
:meth:`ToxiproxyNetwork.metadata`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from proxies.errors import ProxyConfigError, ProxyError, UnknownProxyError
from proxies.routes import Address, format_hostport, parse_hostport
from proxies.toxiproxy.client import DEFAULT_URL, ToxiproxyClient
from proxies.toxiproxy.latency import LatencySplit, split_latency

TOXIC_PREFIX = "pgcache"


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
                _, port = parse_hostport(address) if isinstance(address, str) else ("", -1)
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
        _, port = parse_hostport(str(info["listen"]))
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
                                           "client_address": format_hostport(*address),
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
        target = format_hostport(*upstream)
        if info is None:
            listen = self.listen_addresses.get(name) or format_hostport(self.listen_host, 0)
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
