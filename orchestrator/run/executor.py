"""How workers are started: the :class:`Executor` seam every executor implements.

A run first reserves room for its workers: ``async with executor.reserve(processes) as
placement`` says where each worker slot goes (:class:`Placement`: which node, which host),
for every pass of the run; :func:`loopback_problem` uses it to refuse server addresses that
workers on other hosts could not reach. Then the parent runs each pass through the executor:
``async with executor.workers(specs) as workers``
starts one worker per :class:`~orchestrator.run.protocol.WorkerSpec`, and leaving the block
stops whatever still runs (:class:`~orchestrator.run.protocol.Stop`, then a kill after the
grace period) and reaps every worker, also when the block raises, so that no worker outlives
its pass. Each :class:`WorkerHandle` gives the parent the worker's typed messages, its exit
code, and a way to send it messages or kill it. Nothing here is specific to where workers run:
:mod:`orchestrator.run.local_executor` runs them as child processes of this host,
:mod:`orchestrator.run.ray_executor` as Ray actors on a cluster.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.run.protocol import ParentMessage, Stop, WorkerMessage, WorkerSpec
from proxies import Endpoints

STOP_GRACE_S = 4.0  # how long a stopped worker may take to write its data and exit


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one worker slot runs."""

    node: str  # the executor's name for the node ("local": this host)
    host: str  # the host's name


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the run's worker slots go, slot ``i`` for the worker of process ``i``."""

    slots: tuple[Slot, ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(sorted({slot.host for slot in self.slots}))

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({slot.node for slot in self.slots}))

    def describe(self) -> dict[str, Any]:
        return {"nodes": len(self.nodes), "hosts": list(self.hosts),
                "slots": [[slot.node, slot.host] for slot in self.slots]}


def local_only(url: str) -> bool:
    """Whether ``url`` (a postgresql:// DSN, a redis:// URL) names a server only this host can
    reach: a loopback address, ``localhost``, or a Unix socket."""
    if url.startswith("unix:"):
        return True
    if "://" in url:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        host = (query.get("host") or [parts.hostname or ""])[0]
    else:  # a key=value DSN
        fields = dict(word.partition("=")[::2] for word in url.split())
        host = fields.get("host", "")
    host = host.strip("[]").lower()
    if not host or host.startswith("/") or host == "localhost" or host.endswith(".localhost"):
        return True  # no host: a Unix socket, as libpq defaults
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_problem(endpoints: Endpoints, placement: Placement,
                     parent_host: str | None = None) -> str | None:
    """Why the workers cannot reach these servers, or None: a server named by a loopback
    address is reachable from its own host only, so it is refused as soon as a worker runs on
    another host than the parent's (or the workers are on more than one host)."""
    here = parent_host or socket.gethostname()
    elsewhere = [host for host in placement.hosts if host != here]
    if not elsewhere:
        return None
    local = [(name, url) for name, url in (("POSTGRES_DSN", endpoints.postgres_dsn),
                                            ("VALKEY_URL", endpoints.valkey_url),
                                            ("the listener DSN",
                                             endpoints.postgres_listener_dsn))
             if url and local_only(url)]
    if not local:
        return None
    names = ", ".join(dict.fromkeys(name for name, _ in local))
    return (f"the workers are placed on {len(placement.nodes)} node(s) of "
            f"{len(placement.hosts)} host(s) ({', '.join(placement.hosts)}; this is {here}), "
            f"but {names} names a server by a loopback address ({local[0][1]}), which only "
            "its own host can reach: a worker elsewhere would connect to its own machine. "
            "Set POSTGRES_DSN and VALKEY_URL to servers every node can reach (e.g. managed "
            "PostgreSQL and Valkey), and with Toxiproxy, network.proxies to addresses every "
            "node can reach")


class WorkerHandle(Protocol):
    """One started worker, as the parent sees it."""

    @property
    def process(self) -> int:
        """The worker's slot (``WorkerSpec.process``)."""

    @property
    def exit_code(self) -> int | None:
        """None while the worker runs; then 0 for a clean exit, anything else for a failure."""

    def messages(self) -> AsyncIterator[WorkerMessage]:
        """The worker's messages, until it stops talking (read by one consumer)."""

    def send(self, message: ParentMessage) -> None:
        """Deliver a message if the worker still listens (a finished worker ignores it)."""

    def kill(self) -> None:
        """End the worker at once (what it did not write is lost)."""

    def describe(self) -> dict[str, Any]:
        """Where the worker runs, for the parent's log (e.g. its pid)."""

    def failure_detail(self) -> str:
        """What the worker said before it failed (e.g. the end of its stderr), or ''."""


class _Stoppable(Protocol):
    def send(self, message: ParentMessage) -> None: ...

    def close_input(self) -> None: ...


def ask_to_stop(workers: Sequence[_Stoppable], grace_s: float) -> float:
    """Tell every worker to stop and end its input (how every executor begins to stop a
    pass); returns the time.monotonic() at which their grace period ends."""
    for worker in workers:
        worker.send(Stop())
        worker.close_input()
    return time.monotonic() + grace_s


class Executor(Protocol):
    """Reserves room for a run's workers; starts the workers of one pass, and stops and reaps
    them when the pass ends."""

    def reserve(self, processes: int) -> contextlib.AbstractAsyncContextManager[Placement]:
        """Room for ``processes`` workers in every pass of the run, released on exit."""

    def workers(self, specs: Sequence[WorkerSpec]) -> contextlib.AbstractAsyncContextManager[
            Sequence[WorkerHandle]]:
        """Start one worker per spec; on exit, stop, kill after the grace period, reap."""
