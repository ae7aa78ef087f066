"""The workload model: what a benchmark run does, validated once, immutable afterwards.

A workload is a YAML mapping (see ``workloads/*.yaml`` and the README for every key).
:mod:`orchestrator.workload.loading` reads it and applies command-line overrides, and
:func:`orchestrator.workload.validation.parse_workload` turns the data into the frozen
:class:`Workload` below, reporting every problem at once.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.workload.thresholds import Threshold
from proxies import Fault
from proxies.toxiproxy import DEFAULT_URL


# The closed sets of values a workload names. Each member equals its string (StrEnum), so the
# YAML, the JSON a worker gets and the results keep the plain words.
class NetworkMode(enum.StrEnum):
    """How the network between workers and servers is emulated."""

    NONE = "none"  # workers connect directly
    INPROCESS = "inprocess"  # each worker delays its own round trips
    TOXIPROXY = "toxiproxy"  # real TCP through Toxiproxy
    AUTO = "auto"  # Toxiproxy when its API answers, in-process otherwise


class ExecutorKind(enum.StrEnum):
    """Where the workers run."""

    LOCAL = "local"  # child processes of this host
    RAY = "ray"  # Ray actors on a cluster


class PlacementStrategy(enum.StrEnum):
    """How ``executor: ray`` spreads its bundles of workers over the nodes (Ray's names)."""

    SPREAD = "SPREAD"  # as far as the cluster allows
    STRICT_SPREAD = "STRICT_SPREAD"  # each bundle on a node of its own, or no run


class ReadOp(enum.StrEnum):
    """What a reader task does."""

    GET = "get"
    GET_OR_SET = "get_or_set"  # with the workload's loader on a miss


# Their words, for validation messages and argparse choices.
NETWORK_MODES = tuple(m.value for m in NetworkMode)
EXECUTORS = tuple(e.value for e in ExecutorKind)
PLACEMENT_STRATEGIES = tuple(s.value for s in PlacementStrategy)
READ_OPS = tuple(r.value for r in ReadOp)
DISTRIBUTIONS = ("uniform", "zipfian", "hotspot")
LOADER_TYPES = ("sleep", "query")


@dataclass(frozen=True, slots=True)
class KeyDistribution:
    """How tasks pick keys: uniform, zipfian (skew ``theta``) or hotspot."""

    kind: str = "uniform"
    theta: float = 0.99
    # hotspot: ``hot_ops`` of all operations go to the first ``hot_fraction`` of the keys.
    hot_fraction: float = 0.2
    hot_ops: float = 0.8


@dataclass(frozen=True, slots=True)
class LoaderSpec:
    """What ``get_or_set``'s loader costs on a miss.

    ``sleep``: a fixed delay of ``ms`` in the worker. ``query``: a query against the origin
    table in PostgreSQL (``orchestrator.run.origin``) that reads ``rows`` of its rows and, with
    ``ms`` > 0, also sleeps that long on the server (``pg_sleep``).
    """

    type: str = "sleep"
    ms: float = 10.0
    rows: int = 1


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One backend of the run: a preset name, or a named type with options."""

    name: str
    type: str  # the backend type (a key of orchestrator.backends.registry.TYPES)
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "options": dict(self.options)}


@dataclass(frozen=True, slots=True)
class Network:
    """Network emulation between each worker and the servers."""

    mode: NetworkMode = NetworkMode.NONE
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    toxiproxy_url: str = DEFAULT_URL
    proxies: Mapping[str, str] = field(default_factory=dict)  # route name -> listen address
    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        # A model built by hand from the word ("toxiproxy") holds the member too.
        object.__setattr__(self, "mode", NetworkMode(self.mode))

    def to_dict(self) -> dict[str, Any]:
        """The run's metadata (``runs.network``) as far as the workload knows it."""
        return {
            "mode": self.mode.value, "latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms,
            "toxiproxy_url": self.toxiproxy_url, "proxies": dict(self.proxies),
            "faults": [fault.to_dict() for fault in self.faults],
        }


@dataclass(frozen=True, slots=True)
class WorkerPlacement:
    """Where ``executor: ray`` puts the workers: a placement group of one bundle per
    ``workers_per_node`` workers, spread over the nodes by ``strategy``."""

    strategy: PlacementStrategy = PlacementStrategy.SPREAD
    workers_per_node: int = 1
    cpus_per_worker: float = 1.0  # CPUs each worker's actor reserves (0: none)

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", PlacementStrategy(self.strategy))

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy.value, "workers_per_node": self.workers_per_node,
                "cpus_per_worker": self.cpus_per_worker}


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
    # Application instances per worker process, each with its own backend client; the
    # workload's tasks are split over every instance of every process.
    instances_per_process: int
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
    read_op: ReadOp  # what readers do: get, or get_or_set with ``loader`` on a miss
    loader: LoaderSpec
    backends: tuple[BackendSpec, ...]
    repeat: int
    network: Network
    thresholds: Mapping[str, tuple[Threshold, ...]]  # backend name or "*" -> conditions
    # The share of a backend's operations that may fail without failing the run.
    allowed_error_rate: float
    executor: ExecutorKind  # worker processes on this host, or Ray actors on a cluster
    ray_address: str  # executor ray: the cluster to connect to ("auto", "ray://head:10001")
    placement: WorkerPlacement  # executor ray: where the actors go
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

    @property
    def instance_count(self) -> int:
        """Application instances in all: worker processes x instances per process."""
        return self.process_count * self.instances_per_process
