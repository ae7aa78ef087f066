"""How workers are started: the :class:`Executor` seam, and local processes behind it.

The parent runs a pass through an executor: ``async with executor.workers(specs) as workers``
starts one worker per :class:`~orchestrator.run.protocol.WorkerSpec`, and leaving the block
stops whatever still runs (:class:`~orchestrator.run.protocol.Stop`, then a kill after the
grace period) and reaps every worker, also when the block raises, so that no worker outlives
its pass. Each :class:`WorkerHandle` gives the parent the worker's typed messages, its exit
code, and a way to send it messages or kill it. Nothing here is specific to processes except
:class:`LocalProcessExecutor`, which runs each worker as ``python -m orchestrator.run.worker
SPEC.json`` on this host and speaks the protocol over its stdin/stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from orchestrator.redaction import redact_data
from orchestrator.run.protocol import (
    ParentMessage,
    ProtocolError,
    Stop,
    WorkerMessage,
    WorkerSpec,
    decode,
    encode,
)

STOP_GRACE_S = 4.0  # how long a stopped worker may take to write its data and exit


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


class Executor(Protocol):
    """Starts the workers of one pass, and stops and reaps them when the pass ends."""

    def workers(self, specs: Sequence[WorkerSpec]) -> contextlib.AbstractAsyncContextManager[
            Sequence[WorkerHandle]]:
        """Start one worker per spec; on exit, stop, kill after the grace period, reap."""


class _LocalWorker:
    """A worker in a child process of this one, its protocol on stdin/stdout."""

    def __init__(self, process: int, proc: asyncio.subprocess.Process,
                 stderr_path: Path) -> None:
        self._process = process
        self.proc = proc
        self.stderr_path = stderr_path

    @property
    def process(self) -> int:
        return self._process

    @property
    def exit_code(self) -> int | None:
        return self.proc.returncode

    async def messages(self) -> AsyncIterator[WorkerMessage]:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                message = decode(line)
            except ProtocolError:
                continue  # not ours (e.g. a library printing to stdout): the parent ignores it
            if isinstance(message, WorkerMessage):
                yield message

    def send(self, message: ParentMessage) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing() and self.proc.returncode is None:
            # The worker may exit at any moment: a message it can no longer read is moot.
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                stdin.write(encode(message))

    def close_input(self) -> None:
        """End the worker's input: a worker whose input ends stops by itself."""
        if self.proc.stdin is not None:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                self.proc.stdin.close()

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def describe(self) -> dict[str, Any]:
        return {"pid": self.proc.pid}

    def failure_detail(self, lines: int = 15) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


class LocalProcessExecutor:
    """Runs each worker as a child process on this host (``python -m orchestrator.run.worker
    -``).

    The spec is the first line of the worker's stdin (it holds the servers' passwords, which
    never touch the disk); ``<log_dir>/<stem>.spec.json`` keeps a copy with the passwords
    redacted, for the record. The worker's stderr goes to ``<log_dir>/<stem>.stderr``; a worker
    whose stdin closes (the parent died) stops by itself.
    """

    def __init__(self, *, python: str = sys.executable, grace_s: float = STOP_GRACE_S) -> None:
        self.python = python
        self.grace_s = grace_s

    @contextlib.asynccontextmanager
    async def workers(self, specs: Sequence[WorkerSpec]) -> AsyncIterator[
            Sequence[WorkerHandle]]:
        started: list[_LocalWorker] = []
        try:
            for spec in specs:
                started.append(await self._start(spec))
            yield started
        finally:
            await self._stop(started)

    async def _start(self, spec: WorkerSpec) -> _LocalWorker:
        log_dir = Path(spec.log_dir)
        record = redact_data(json.loads(spec.to_json()))
        (log_dir / f"{spec.stem}.spec.json").write_text(json.dumps(record))
        stderr_path = log_dir / f"{spec.stem}.stderr"
        with open(stderr_path, "ab") as stderr:  # noqa: ASYNC230 - handed to the child
            proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "orchestrator.run.worker", "-",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        assert proc.stdin is not None
        proc.stdin.write(spec.to_json().encode() + b"\n")
        return _LocalWorker(spec.process, proc, stderr_path)

    async def _stop(self, workers: Sequence[_LocalWorker]) -> None:
        """Ask every worker still running to stop; kill and reap whatever does not."""
        for worker in workers:
            worker.send(Stop())
            worker.close_input()
        deadline = time.monotonic() + self.grace_s
        for worker in workers:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(worker.proc.wait(), remaining)
            except TimeoutError:
                worker.kill()
                await worker.proc.wait()
