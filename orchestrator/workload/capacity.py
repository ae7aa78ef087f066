"""Whether this machine can hold what a workload asks of it: worker processes for its CPUs,
and their memory.

A workload is valid or not wherever it runs; whether it fits depends on the machine, so this
is checked apart from :mod:`orchestrator.workload.validation` (a worker re-validates its
spec, and a run given ``--force`` must still start its workers). ``validate``, ``run`` and
``suite`` check it before anything starts and refuse with exit 2; ``--force`` lets it through.
Workers run on this host only with ``executor: local``; on Ray, the cluster decides.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import WorkloadError
from orchestrator.workload.model import ExecutorKind, Workload
from proxies import ConfigProblem

# Worker processes per CPU: more only time-share the cores, and what they measure is the
# scheduler's queue.
PROCESSES_PER_CPU = 8
# A worker process's memory, its first application instance included: its peak resident set
# (VmHWM) was 46-47 MiB for each of the null, postgres-cache and valkey-tracking backends
# (1 instance, 500 ops/s, 6 s), shared libraries counted in full.
WORKER_MIB = 48
# Each further application instance (pgcache: its pool, listener and local cache; valkey-
# tracking: its connections): 16 instances in one worker peaked 3.5-6 MiB above one, for
# 2,000 keys of 256 bytes; rounded up to 1 MiB, plus the local cache's values below.
INSTANCE_MIB = 1
# A local cache entry beyond its value: key, version, expiry, LRU links.
ENTRY_OVERHEAD_BYTES = 200
# The workers' share of the machine's memory; the rest is the servers', the page cache's and
# everything else's.
MEMORY_SHARE = 0.5
_MIB = 1024 * 1024
_DEFAULT_LOCAL_ENTRIES = 4096  # pgcache's and valkey-tracking's local_max_entries
_LOCAL_CACHE_TYPES = ("pgcache", "valkey-tracking")


@dataclass(frozen=True, slots=True)
class Machine:
    """What this host has for the workers."""

    cpus: int
    memory_bytes: int | None  # MemTotal; None where it cannot be read

    @classmethod
    def this(cls) -> Machine:
        cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count()) or 1
        return cls(cpus, _mem_total())

    @property
    def max_processes(self) -> int:
        return PROCESSES_PER_CPU * self.cpus

    @property
    def memory_limit_bytes(self) -> int | None:
        return None if self.memory_bytes is None else int(self.memory_bytes * MEMORY_SHARE)


def _mem_total(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _local_entries(w: Workload) -> int:
    """Entries one instance's local cache can hold, for the backend that holds most (the
    backends run one after another)."""
    most = 0
    for spec in w.backends:
        if spec.type in _LOCAL_CACHE_TYPES:
            entries = spec.options.get("local_max_entries", _DEFAULT_LOCAL_ENTRIES)
            if isinstance(entries, int) and not isinstance(entries, bool):
                most = max(most, min(entries, w.keyspace))
    return most


def memory_estimate_bytes(w: Workload) -> int:
    """The workers' memory: each process, each further instance, each instance's local cache
    filled with the largest values."""
    instances = w.instance_count
    cache = _local_entries(w) * (w.value_size_max + ENTRY_OVERHEAD_BYTES)
    return (w.process_count * WORKER_MIB * _MIB + (instances - w.process_count) * INSTANCE_MIB
            * _MIB + instances * cache)


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def capacity_issues(w: Workload, machine: Machine, where: str = "") -> list[ConfigProblem]:
    """What of ``w`` this machine cannot hold, each at its YAML path (``where`` + path)."""
    if w.executor != ExecutorKind.LOCAL:
        return []
    issues = []
    if w.process_count > machine.max_processes:
        issues.append(ConfigProblem(
            where + "processes",
            f"at most {machine.max_processes} worker processes on this machine "
            f"({PROCESSES_PER_CPU} per CPU, {machine.cpus} CPUs; --force runs more)",
            f"{w.process_count}"))
    limit = machine.memory_limit_bytes
    estimate = memory_estimate_bytes(w)
    if limit is not None and estimate > limit:
        path = "instances_per_process" if w.instances_per_process > 1 else "processes"
        issues.append(ConfigProblem(
            where + path,
            f"workers that fit in {_gib(limit)} ({MEMORY_SHARE:.0%} of this machine's "
            f"{_gib(machine.memory_bytes or 0)}; --force runs them anyway)",
            f"{w.process_count} processes x {w.instances_per_process} instances, about "
            f"{_gib(estimate)} ({WORKER_MIB} MiB a process, {INSTANCE_MIB} MiB an instance, "
            "and the local caches)"))
    return issues


def check_capacity(workloads: Sequence[tuple[str, Workload]], source: str,
                   machine: Machine | None = None) -> None:
    """WorkloadError (exit 2) listing what this machine cannot hold of ``workloads`` (each
    with the prefix of its paths: "" for a workload file, "point ...: " for a suite)."""
    machine = machine or Machine.this()
    issues = [issue for prefix, w in workloads
              for issue in capacity_issues(w, machine, prefix)]
    if issues:
        raise WorkloadError(source, issues)
