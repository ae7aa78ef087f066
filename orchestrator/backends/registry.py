"""The backend registry: every backend type, the routes its client uses, and the preset names.

``TYPES`` maps a backend type (a workload's ``type:``) to its :class:`BackendType`;
``PRESETS`` maps the preset names a workload may list to a type and its options. Adding a
backend is one module implementing :class:`orchestrator.backends.base.Backend` plus one entry
in ``TYPES``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from orchestrator.backends.base import Backend
from orchestrator.backends.null import NullBackend
from orchestrator.backends.postgres import PgCacheBackend
from orchestrator.backends.stampede import RECIPE_OPTIONS, recipe_option_issues
from orchestrator.backends.valkey import ValkeyBackend
from orchestrator.backends.valkey_client_cache import ValkeyClientCacheBackend
from orchestrator.backends.valkey_tracking import ValkeyTrackingBackend
from orchestrator.backends.valkey_tracking import option_issues as tracking_option_issues
from orchestrator.errors import BackendError
from pgcache import CacheSettings
from proxies import ROUTES, Endpoints

BackendFactory = Callable[[str, Mapping[str, Any], Endpoints], Backend]


@dataclass(frozen=True, slots=True)
class BackendType:
    """One backend type: how to build its client and which routes that client uses."""

    name: str
    factory: BackendFactory
    routes: tuple[str, ...]  # route names (proxies.ROUTE_NAMES); network emulation sits on them
    # Options the orchestrator sets itself (from the services / network emulation).
    reserved: frozenset[str] = frozenset()

    @property
    def servers(self) -> frozenset[str]:
        """The servers this type needs: the protocols at the end of its routes."""
        return frozenset(r.protocol for r in ROUTES if r.name in self.routes)


TYPES: dict[str, BackendType] = {t.name: t for t in (
    BackendType("null", NullBackend, ()),
    BackendType("pgcache", PgCacheBackend, ("postgres", "postgres-listener"),
                frozenset({"dsn", "listener_dsn"})),
    BackendType("valkey", ValkeyBackend, ("valkey",), frozenset({"url"})),
    BackendType("valkey-client-cache", ValkeyClientCacheBackend, ("valkey",)),
    BackendType("valkey-tracking", ValkeyTrackingBackend, ("valkey",)),
)}

PRESETS: dict[str, tuple[str, Mapping[str, Any]]] = {
    "postgres-cache": ("pgcache", {}),
    # One LISTEN per host (per network route), relayed to its instances over a Unix socket.
    "postgres-cache-shared": ("pgcache", {"shared_listener": True}),
    "postgres-no-local-cache": ("pgcache", {"local_max_entries": 0}),
    "postgres-no-notify": ("pgcache", {"disable_notify": True}),
    "valkey": ("valkey", {}),
    "valkey-lock": ("valkey", {"get_or_set": "lock"}),
    "valkey-client-cache": ("valkey-client-cache", {}),
    "valkey-tracking": ("valkey-tracking", {}),
    "null": ("null", {}),
}


def create_backend(name: str, backend_type: str, options: Mapping[str, Any],
                   endpoints: Endpoints) -> Backend:
    """A new, unconnected adapter for one application instance."""
    return TYPES[backend_type].factory(name, options, endpoints)


# Where an option check points a backend: never contacted (checks build clients, never
# connect them).
_NOWHERE = Endpoints("postgresql://check@127.0.0.1:1/check", "redis://127.0.0.1:1/0",
                     "postgresql://check@127.0.0.1:1/check")


def option_issues(backend_type: str, options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Problems with a backend's options: (option, expected, found) for each.

    Names first (reserved by the orchestrator, or unknown to the client); then the values, by
    the code the backend itself runs on them: its constructor (pgcache's ``CacheSettings``
    names the bad field; ``valkey-client-cache`` checks its own options) and, for ``valkey``,
    redis-py building its client and a connection (no I/O). What a client checks only when it
    connects cannot be checked here.
    """
    issues: list[tuple[str, str, str]] = []
    reserved = TYPES[backend_type].reserved
    allowed: set[str] | None = None
    if backend_type == "pgcache":
        allowed = {f.name for f in dataclasses.fields(CacheSettings)}
    elif backend_type == "valkey":
        allowed = set(inspect.signature(Redis.__init__).parameters) - {"self"} | RECIPE_OPTIONS
    elif backend_type == "null":
        allowed = set()
    elif backend_type == "valkey-tracking":
        return tracking_option_issues(options)
    if backend_type in ("valkey", "valkey-client-cache"):
        issues += recipe_option_issues(options)
    for key in options:
        if key in reserved:
            issues.append((str(key), "an option the orchestrator does not set itself",
                           f"{key!r} (set from the services / network emulation)"))
        elif allowed is not None and key not in allowed:
            known = ", ".join(sorted(a for a in allowed if a not in reserved)) or "none"
            issues.append((str(key), f"a {backend_type} option ({known})", f"{key!r}"))
    if not issues:
        issues = _value_issues(backend_type, options)
    return issues


def _value_issues(backend_type: str, options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """What the backend's own code says about the option values, one bad field at a time."""
    issues: list[tuple[str, str, str]] = []
    remaining = dict(options)
    while True:
        try:
            create_backend("(check)", backend_type, remaining, _NOWHERE)
            if backend_type == "valkey":
                client_options = {k: v for k, v in remaining.items() if k not in RECIPE_OPTIONS}
                pool: Any = Redis.from_url(_NOWHERE.valkey_url, **client_options).connection_pool
                pool.make_connection()
            return issues
        except Exception as exc:  # whatever the client's checks raise is the answer
            cause = exc.__cause__ if isinstance(exc, BackendError) else exc
            field = getattr(cause, "field", None)
            message = getattr(cause, "message", None) or str(exc)
            if isinstance(field, str) and field in remaining:
                issues.append((field, f"a value {backend_type} accepts ({message})",
                               _value_text(remaining.pop(field))))
                continue
            issues.append(("", f"options {backend_type} accepts", f"{type(exc).__name__}: "
                           f"{message}"))
            return issues


def _value_text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
