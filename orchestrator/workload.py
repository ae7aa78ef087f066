"""The workload model: what a benchmark run does, validated once, immutable afterwards.

A workload is a YAML mapping (see ``workloads/*.yaml`` and the README for every key). It is
loaded into plain data, command-line overrides (``--set path=value``) are applied to that data,
and :func:`orchestrator.validation.parse_workload` turns it into the frozen :class:`Workload`
below, reporting every problem at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import Issue, UsageError, WorkloadError

# The fault model is the fault schedule's own (one definition, checked by Toxiproxy's rules).
from proxies.faults import FAULT_ATTRIBUTES
from proxies.faults import Fault as Fault

OPS = ("get", "set", "delete")
NETWORK_MODES = ("none", "inprocess", "toxiproxy", "auto")
PROXY_NAMES = ("postgres", "postgres-listener", "valkey")
TOXICS = tuple(FAULT_ATTRIBUTES)
DISTRIBUTIONS = ("uniform", "zipfian", "hotspot")
DEFAULT_TOXIPROXY_URL = "http://127.0.0.1:8474"


@dataclass(frozen=True, slots=True)
class KeyDistribution:
    """How tasks pick keys: uniform, zipfian (skew ``theta``) or hotspot."""

    kind: str = "uniform"
    theta: float = 0.99
    # hotspot: ``hot_ops`` of all operations go to the first ``hot_fraction`` of the keys.
    hot_fraction: float = 0.2
    hot_ops: float = 0.8


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One backend of the run: a preset name, or a named type with options."""

    name: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Network:
    """Network emulation between each worker and the servers."""

    mode: str = "none"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    toxiproxy_url: str = DEFAULT_TOXIPROXY_URL
    proxies: Mapping[str, str] = field(default_factory=dict)
    faults: tuple[Fault, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms,
            "toxiproxy_url": self.toxiproxy_url, "proxies": dict(self.proxies),
            "faults": [
                {"at_s": f.at_s, "duration_s": f.duration_s, "proxy": f.proxy,
                 "toxic": f.toxic, "attributes": dict(f.attributes), "stream": f.stream,
                 "toxicity": f.toxicity, "label": f.label}
                for f in self.faults
            ],
        }


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-kind numbers for writers and readers (think time in ms, or target ops/s)."""

    writes: float | None = None
    reads: float | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    """A validated workload. ``raw`` is the data it was parsed from (after overrides)."""

    name: str
    description: str
    seed: int
    processes: int | None  # None = auto: one worker process per CPU
    writers: int
    readers: int
    write_iterations: int
    read_iterations: int
    duration_s: float | None  # when set, tasks run for this long and iterations are ignored
    warmup_s: float
    keyspace: int
    key_prefix: str
    key_distribution: KeyDistribution
    value_size_min: int
    value_size_max: int
    ttl_s: float
    think_time_ms: Rates
    target_rate: Rates  # total ops/s over all tasks of a kind; None = closed loop
    delete_ratio: float
    prefill: bool  # write every key once (unmeasured) before each pass
    backends: tuple[BackendSpec, ...]
    repeat: int
    network: Network
    thresholds: Mapping[str, tuple[str, ...]]
    raw: Mapping[str, Any]
    source: str = "<workload>"
    text: str = ""

    @property
    def process_count(self) -> int:
        """Worker processes: as set, or one per CPU this process may run on."""
        if self.processes is not None:
            return self.processes
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0)) or 1
        return os.cpu_count() or 1

    def backend(self, name: str) -> BackendSpec:
        for spec in self.backends:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def select_backends(self, names: list[str]) -> tuple[BackendSpec, ...]:
        """The workload's backends restricted to ``names`` (presets may be named too)."""
        from orchestrator.validation import backend_spec_for

        chosen: list[BackendSpec] = []
        issues = []
        for i, name in enumerate(names):
            try:
                chosen.append(self.backend(name))
            except KeyError:
                spec = backend_spec_for(name)
                if spec is None:
                    issues.append(Issue(f"--backends[{i}]", "a backend of the workload or a "
                                        "preset name", repr(name)))
                else:
                    chosen.append(spec)
        if issues:
            raise WorkloadError(self.source, issues)
        return tuple(chosen)


def read_workload_text(path: str | Path) -> tuple[str, Any]:
    """Read a workload file: its text and its parsed YAML data."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(source, [Issue("(file)", "a readable YAML file",
                                           exc.strerror or str(exc))]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkloadError(source, [Issue(where, "valid YAML", str(problem))]) from exc
    return text, data


def apply_overrides(data: Any, overrides: list[str]) -> Any:
    """Apply ``path=value`` overrides (dotted path, YAML value) to a copy of ``data``."""
    import copy

    result = copy.deepcopy(data) if data is not None else {}
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise UsageError(f"--set {item!r}: expected path=value, e.g. network.latency_ms=1.5")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise UsageError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
        target = result
        parts = path.strip().split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(target, list):
                if not part.isdigit() or int(part) >= len(target):
                    raise UsageError(f"--set {item!r}: {'.'.join(parts[:depth + 1])} is not an "
                                     f"index of a list of {len(target)} items")
                if last:
                    target[int(part)] = value
                else:
                    target = target[int(part)]
            elif isinstance(target, dict):
                if last:
                    target[part] = value
                else:
                    if target.get(part) is None:
                        target[part] = {}
                    target = target[part]
            else:
                raise UsageError(f"--set {item!r}: {'.'.join(parts[:depth])} is not a mapping")
    return result


def load_workload(path: str | Path, overrides: list[str] | None = None) -> Workload:
    """Read, override and validate a workload file; raise WorkloadError listing every issue."""
    from orchestrator.validation import parse_workload

    text, data = read_workload_text(path)
    if overrides:
        data = apply_overrides(data, overrides)
        text += "\n# overrides (--set):\n" + "".join(f"#   {o}\n" for o in overrides)
    return parse_workload(data, source=str(path), text=text,
                          default_name=Path(path).stem)
