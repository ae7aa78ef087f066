"""A watchdog that stops embedded servers when their owner is gone, even killed with SIGKILL.

The owner (a run, a test session) starts one watchdog process, ``python -m
orchestrator.services.watchdog``, in a session of its own (a Ctrl-C for the owner does not
reach it), and holds the only write end of the watchdog's stdin: pipes are not inherited by
the owner's other children. Over it, one JSON line each, the owner names every server it
starts (``{"watch": {"pid", "started", "signal", "name"}}``) and every directory to delete
(``{"remove": PATH}``), and finally, once it has stopped them itself, ``{"release": true}``.
When the pipe ends without a release, the owner is gone: the watchdog stops each server with
its clean shutdown signal (SIGKILL after a grace period), deletes the directories and exits.

If the watchdog itself is killed with its owner, the servers remain; the claim file of their
directory (:mod:`orchestrator.services.strays`) lets ``services status`` list them and
``services cleanup`` (``make benchmark-cleanup``) remove them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestrator.services.processes import start_ticks, terminate

WATCHDOG_MODULE = "orchestrator.services.watchdog"


class Watchdog:
    """The owner's side of a watchdog process."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.started = start_ticks(proc.pid)

    @classmethod
    def start(cls) -> Watchdog:
        proc = subprocess.Popen(
            [sys.executable, "-m", WATCHDOG_MODULE], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        return cls(proc)

    def _tell(self, message: dict[str, Any]) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            return
        # A watchdog that died cannot be told; the claim file still names the servers.
        with contextlib.suppress(OSError, ValueError):
            stdin.write(json.dumps(message).encode() + b"\n")
            stdin.flush()

    def watch(self, pid: int, sig: int, name: str) -> None:
        """Stop process ``pid`` (binary ``name``) with ``sig`` if the owner dies."""
        self._tell({"watch": {"pid": pid, "started": start_ticks(pid), "signal": int(sig),
                              "name": name}})

    def remove(self, path: Path) -> None:
        """Delete ``path`` (after stopping the servers) if the owner dies."""
        self._tell({"remove": str(path)})

    def release(self) -> None:
        """The owner stopped everything itself: the watchdog exits without acting."""
        self._tell({"release": True})
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _watch(lines: Any) -> int:
    """Read the owner's messages until it releases us (0) or is gone (then act, 1)."""
    servers: list[dict[str, Any]] = []
    paths: list[str] = []
    for line in lines:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if message.get("release"):
            return 0
        if "watch" in message:
            servers.append(message["watch"])
        if "remove" in message:
            paths.append(str(message["remove"]))
    for server in reversed(servers):
        terminate(int(server["pid"]), int(server["signal"]), str(server["name"]),
                  server.get("started"))
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    return 1


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the end of the pipe means "act"
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return _watch(sys.stdin.buffer)


if __name__ == "__main__":
    sys.exit(main())
