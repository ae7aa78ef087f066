"""Toxiproxy's HTTP API: :class:`ToxiproxyClient`, a timeout on every call, precise errors.

Toxiproxy (https://github.com/Shopify/toxiproxy) is a TCP proxy with an HTTP API on port 8474.

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
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from proxies.errors import (
    PortConflictError,
    ProxyConfigError,
    ProxyError,
    ToxiproxyAPIError,
    ToxiproxyUnreachableError,
    UnknownProxyError,
)

DEFAULT_URL = "http://127.0.0.1:8474"

_START_HINT = ("start it with `docker compose -f compose.yaml up -d toxiproxy` (or run "
               "toxiproxy-server), point network.toxiproxy_url at it, or use network.mode "
               "inprocess (or auto, which falls back to inprocess)")


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

