"""Backend adapters and the registry that names them.

``TYPES`` maps a backend type to a factory ``(name, options, endpoints) -> Backend``;
``PRESETS`` maps the seed's backend names to a type and its options. Adding a backend is one
module implementing :class:`orchestrator.backends.base.Backend` plus one line here.
Adapters are imported lazily so that validating a workload never needs a database driver.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.backends.base import Backend, Endpoints, GetResult, InvalidationHook

BackendFactory = Callable[[str, Mapping[str, Any], Endpoints], Backend]

# type -> "module:attribute" of its factory (a class or a function).
_FACTORIES: dict[str, str] = {
    "null": "orchestrator.backends.null:NullBackend",
    "pgcache": "orchestrator.backends.postgres:PgCacheBackend",
    "valkey": "orchestrator.backends.valkey:ValkeyBackend",
}
# valkey-client-cache (issue 5) registers here once its module exists.
if importlib.util.find_spec("orchestrator.backends.valkey_client_cache") is not None:
    _FACTORIES["valkey-client-cache"] = (
        "orchestrator.backends.valkey_client_cache:ValkeyClientCacheBackend")

TYPES: tuple[str, ...] = tuple(sorted(_FACTORIES))

PRESETS: dict[str, tuple[str, Mapping[str, Any]]] = {
    "postgres-cache": ("pgcache", {}),
    "postgres-no-local-cache": ("pgcache", {"local_max_entries": 0}),
    "postgres-no-notify": ("pgcache", {"disable_notify": True}),
    "valkey": ("valkey", {}),
    "null": ("null", {}),
}
if "valkey-client-cache" in _FACTORIES:
    PRESETS["valkey-client-cache"] = ("valkey-client-cache", {})

# Options the orchestrator sets itself, per type.
_RESERVED = {"pgcache": {"dsn", "listener_dsn"}, "valkey": {"url"}}


def factory(kind: str) -> BackendFactory:
    """The factory of a backend type (imports its module)."""
    module_name, _, attribute = _FACTORIES[kind].partition(":")
    made: BackendFactory = getattr(importlib.import_module(module_name), attribute)
    return made


def create_backend(name: str, kind: str, options: Mapping[str, Any],
                   endpoints: Endpoints) -> Backend:
    """A new, unconnected adapter for one application instance."""
    return factory(kind)(name, options, endpoints)


def option_issues(kind: str, options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Problems with a backend's options: (option, expected, found) for each."""
    issues: list[tuple[str, str, str]] = []
    reserved = _RESERVED.get(kind, set())
    allowed: set[str] | None = None
    if kind == "pgcache":
        try:
            settings = importlib.import_module("pgcache").CacheSettings
            allowed = {f.name for f in dataclasses.fields(settings)}
        except (ImportError, AttributeError, TypeError):
            allowed = None  # pgcache not importable here: CacheSettings will check at run time
    elif kind == "valkey":
        from redis.asyncio import Redis

        allowed = set(inspect.signature(Redis.__init__).parameters) - {"self"}
    elif kind == "null":
        allowed = set()
    for key in options:
        if key in reserved:
            issues.append((str(key), "an option the orchestrator does not set itself",
                           f"{key!r} (set from the services / network emulation)"))
        elif allowed is not None and key not in allowed:
            known = ", ".join(sorted(a for a in allowed if a not in reserved)) or "none"
            issues.append((str(key), f"a {kind} option ({known})", f"{key!r}"))
    return issues


__all__ = [
    "PRESETS",
    "TYPES",
    "Backend",
    "BackendFactory",
    "Endpoints",
    "GetResult",
    "InvalidationHook",
    "create_backend",
    "factory",
    "option_issues",
]
