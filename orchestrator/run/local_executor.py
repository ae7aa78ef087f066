"""Workers as child processes of this host: :class:`LocalProcessExecutor`, the default
executor behind the :class:`~orchestrator.run.executor.Executor` seam.

Each worker runs as ``python -m orchestrator.run.worker -`` and speaks the protocol
(:mod:`orchestrator.run.protocol`) over its stdin/stdout; leaving a pass's block asks each to
stop, kills what has not exited after the grace period, and reaps every one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from orchestrator.redaction import redact_data
from orchestrator.run.executor import STOP_GRACE_S, Placement, Slot, WorkerHandle, ask_to_stop
from orchestrator.run.protocol import (
    ParentMessage,
    WorkerMessage,
    WorkerProtocolError,
    WorkerSpec,
    decode,
    encode,
)


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
            except WorkerProtocolError:
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
    async def reserve(self, processes: int) -> AsyncIterator[Placement]:
        """Every worker on this host: nothing to reserve."""
        yield Placement(tuple(Slot("local", socket.gethostname()) for _ in range(processes)))

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
        deadline = ask_to_stop(workers, self.grace_s)
        for worker in workers:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(worker.proc.wait(), remaining)
            except TimeoutError:
                worker.kill()
                await worker.proc.wait()
