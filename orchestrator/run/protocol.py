"""What the parent and a worker tell each other: the worker's spec and typed messages.

A worker is a function of (workload, backend, slot, seed) that writes a log stream. The parent
gives it a :class:`WorkerSpec`; then they exchange messages, one JSON object per line:

  worker -> parent: :class:`Ready` (connected), :class:`Progress` (every 0.25 s),
                    :class:`Failed` (why it stops: said over the channel, which needs no
                    disk, before the exit code says that it failed),
                    :class:`Done` (buffers written, backend closed)
  parent -> worker: :class:`Go` (the start barrier: a common start, on the worker's clock),
                    :class:`Stop` (finish the operations in flight, write, exit)

:func:`encode` and :func:`decode` are the only translation to and from the wire; both sides
use them. The executor decides how the lines travel: a local process's stdin/stdout
(:mod:`orchestrator.run.local_executor`), or Ray actor calls
(:mod:`orchestrator.run.ray_executor`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from orchestrator.errors import WorkerError
from orchestrator.redaction import learn_secrets
from orchestrator.results.logs import WorkerFiles, instance_files, worker_stem
from orchestrator.workload.model import BackendSpec, NetworkMode
from proxies import Endpoints


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything one worker needs for one pass; JSON-serialisable."""

    run_id: str
    backend: BackendSpec
    repetition: int
    process: int
    processes: int
    workload: dict[str, Any]  # the workload's data; the worker validates it again
    endpoints: Endpoints  # through the network emulation the parent set up, if any
    network_mode: NetworkMode  # what the worker itself does: none or inprocess
    log_dir: str
    # Added to every timestamp the worker records (its clock runs this far ahead): an
    # artificial skew, for tests of the clock mapping; 0 in every real run.
    clock_skew_ns: int = 0
    # Application instances this worker runs, each with its own backend client. They are
    # numbered process x instances_per_process + i: the number the ops and events record as
    # ``process`` (the worker's own number when it runs one).
    instances_per_process: int = 1

    @property
    def instances(self) -> range:
        """The numbers of this worker's application instances."""
        first = self.process * self.instances_per_process
        return range(first, first + self.instances_per_process)

    @property
    def instance_count(self) -> int:
        """Application instances of the pass, over every worker."""
        return self.processes * self.instances_per_process

    @property
    def stem(self) -> str:
        """The common name of this worker's own files in ``log_dir`` (spec, stderr, events):
        its first instance's."""
        return worker_stem(self.backend.name, self.repetition, self.instances[0])

    def files(self) -> list[WorkerFiles]:
        """The files of each of this worker's instances (its events in the first one's)."""
        return instance_files(Path(self.log_dir), self.backend.name, self.repetition,
                              self.instances[0], self.instances_per_process)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        """The spec, its passwords told to redaction: the process that reads a spec writes
        events and errors that must not carry them."""
        data = json.loads(text)
        learn_secrets(data["endpoints"], data["workload"])
        return cls(**dict(data, backend=BackendSpec(**data["backend"]),
                          endpoints=Endpoints(**data["endpoints"]),
                          network_mode=NetworkMode(data["network_mode"])))


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker is connected and waits for :class:`Go`."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Operations recorded and errors met so far."""

    ops: int
    errors: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The worker fails, for this reason (e.g. its files could not be written)."""

    error: str


@dataclass(frozen=True, slots=True)
class Done:
    """The worker finished: its files are complete."""

    ops: int
    errors: int


@dataclass(frozen=True, slots=True)
class Go:
    """Start the tasks at ``start_ns`` on the worker's clock (``time.perf_counter_ns()``,
    system-wide on Linux). The parent decides it on its own clock; an executor whose workers
    run on other hosts maps it onto each worker's clock with the offset it measured."""

    start_ns: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the tasks: finish the operations in flight, write what was measured, exit."""


WorkerMessage = Ready | Progress | Failed | Done
ParentMessage = Go | Stop
Message = WorkerMessage | ParentMessage

_TYPES: dict[str, type[Message]] = {
    "ready": Ready, "progress": Progress, "failed": Failed, "done": Done, "go": Go,
    "stop": Stop}
_NAMES = {cls: name for name, cls in _TYPES.items()}
# The types a message field may have, by annotation.
_FIELD_TYPES: dict[str, type[int] | type[str]] = {"int": int, "str": str}


class WorkerProtocolError(WorkerError):
    """A line that is not a message of this protocol."""


def encode(message: Message) -> bytes:
    """One message as a JSON line: ``{"type": "progress", "ops": 10, "errors": 0}``."""
    return (json.dumps({"type": _NAMES[type(message)], **asdict(message)}) + "\n").encode()


def decode(line: bytes | str) -> Message:
    """The message of one JSON line; :class:`WorkerProtocolError` when it is not one."""
    try:
        data = json.loads(line)
        cls = _TYPES[data.pop("type")]
        values: dict[str, Any] = {f.name: _FIELD_TYPES[str(f.type)](data[f.name])
                                  for f in fields(cls)}
        return cls(**values)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WorkerProtocolError(f"not a worker protocol message: {line!r:.200}") from exc
