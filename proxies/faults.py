"""Faults: a toxic on a route (or a route taken down) from an offset into a pass, for a while.

:class:`Fault` is the one model of a fault, used by the workload (``network.faults``) and by the
schedule that applies it (:class:`proxies.toxiproxy.FaultSchedule`). Its rules are written once,
in :func:`fault_problems`: :func:`parse_faults` reports every problem of workload data at once,
each with its path, and a Fault built directly checks itself with the same function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxies.errors import ConfigProblem, ProxyConfigError
from proxies.routes import ROUTE_NAMES, proxy_name

# Attributes each fault kind accepts (Toxiproxy's toxic attributes; all whole numbers).
FAULT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
    "slow_close": ("delay",),
    "down": (),
}
FAULT_STREAMS = ("upstream", "downstream", "both")
FAULT_KEYS = ("at_s", "duration_s", "proxy", "toxic", "attributes", "stream", "toxicity",
              "label")
_REQUIRED = ("at_s", "duration_s", "proxy", "toxic")


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: ``toxic`` on ``proxy`` from ``at_s`` for ``duration_s`` seconds."""

    at_s: float
    duration_s: float
    proxy: str  # a route name (postgres, postgres-listener, valkey) or a Toxiproxy proxy name
    toxic: str
    attributes: Mapping[str, int] = field(default_factory=dict)
    # Toxiproxy's default direction is downstream (server -> client); "both" adds two toxics.
    stream: str = "downstream"
    toxicity: float = 1.0
    label: str | None = None

    def __post_init__(self) -> None:
        problems = fault_problems({key: getattr(self, key) for key in FAULT_KEYS}, "fault")
        if problems:
            raise ProxyConfigError("invalid fault: " + "; ".join(map(str, problems)),
                                   problems=problems)
        object.__setattr__(self, "attributes", dict(self.attributes))

    @property
    def streams(self) -> tuple[str, ...]:
        """The directions a toxic is added for (none for ``down``)."""
        if self.toxic == "down":
            return ()
        return ("upstream", "downstream") if self.stream == "both" else (self.stream,)

    @property
    def proxy_name(self) -> str:
        """The Toxiproxy proxy name (route names resolved)."""
        return proxy_name(self.proxy)

    def to_dict(self) -> dict[str, Any]:
        """The fault as run metadata and event fields: proxy resolved, no stream for down."""
        return {"at_s": self.at_s, "duration_s": self.duration_s, "proxy": self.proxy_name,
                "toxic": self.toxic, "stream": self.stream if self.toxic != "down" else None,
                "toxicity": self.toxicity, "attributes": dict(self.attributes),
                "label": self.label}


def _is_number(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and math.isfinite(value))


def fault_problems(data: Mapping[str, Any], path: str) -> list[ConfigProblem]:
    """Every problem of one fault's data (a mapping of :data:`FAULT_KEYS`), with its path."""
    problems: list[ConfigProblem] = []

    def bad(key: str, expected: str) -> None:
        problems.append(ConfigProblem(f"{path}.{key}", expected, repr(data.get(key))))

    for key in sorted(set(data) - set(FAULT_KEYS), key=str):
        problems.append(ConfigProblem(f"{path}.{key}", f"one of the known keys "
                                      f"({', '.join(FAULT_KEYS)})", "an unknown key"))
    for key in _REQUIRED:
        if key not in data:
            problems.append(ConfigProblem(f"{path}.{key}", "a value (required)", "nothing"))
    if "at_s" in data and not (_is_number(data["at_s"]) and data["at_s"] >= 0):
        bad("at_s", "a number of seconds >= 0")
    if "duration_s" in data and not (_is_number(data["duration_s"]) and data["duration_s"] > 0):
        bad("duration_s", "a number of seconds > 0")
    if "proxy" in data and not (isinstance(data["proxy"], str) and data["proxy"]):
        bad("proxy", f"a proxy name ({', '.join(ROUTE_NAMES)} or a Toxiproxy proxy name)")
    toxic = data.get("toxic")
    if "toxic" in data and toxic not in FAULT_ATTRIBUTES:
        bad("toxic", f"one of {', '.join(FAULT_ATTRIBUTES)}")
    if data.get("stream", "downstream") not in FAULT_STREAMS:
        bad("stream", f"one of {', '.join(FAULT_STREAMS)}")
    toxicity = data.get("toxicity", 1.0)
    if not (_is_number(toxicity) and 0 <= toxicity <= 1):
        bad("toxicity", "a probability in [0, 1]")
    label = data.get("label")
    if label is not None and not isinstance(label, str):
        bad("label", "a string")
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        bad("attributes", "a mapping of attribute name to whole number")
    elif toxic in FAULT_ATTRIBUTES:
        allowed = FAULT_ATTRIBUTES[toxic]
        for key, value in attributes.items():
            where = f"{path}.attributes.{key}"
            if key not in allowed:
                problems.append(ConfigProblem(
                    where, f"an attribute of {toxic} ({', '.join(allowed) or 'none'})",
                    repr(value)))
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(ConfigProblem(
                    where, "a whole number >= 0 (Toxiproxy takes integers)", repr(value)))
    return problems


def parse_faults(items: Any, path: str = "network.faults") -> tuple[Fault, ...]:
    """Faults from workload data; every problem is reported at once, each with its path."""
    if items is None:
        return ()
    if not isinstance(items, Sequence) or isinstance(items, str):
        problem = ConfigProblem(path, "a list of faults", repr(items))
        raise ProxyConfigError(str(problem), problems=[problem])
    problems: list[ConfigProblem] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            problems.append(ConfigProblem(f"{path}[{i}]", "a mapping", repr(item)))
        else:
            problems.extend(fault_problems(item, f"{path}[{i}]"))
    if problems:
        raise ProxyConfigError(f"{len(problems)} problem(s) in {path}",
                               detail="\n".join(map(str, problems)), problems=problems)
    return tuple(Fault(**dict(item, attributes=item.get("attributes") or {}))
                 for item in items)
