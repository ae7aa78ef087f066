"""Other processes, seen through ``/proc``: whether one still runs, and stopping it.

A pid alone may have been reused by the time we look again, so a process is identified by its
pid, its start time (``/proc/PID/stat``, in clock ticks since boot) and a word of its command
line (the server's binary name).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

STOP_TIMEOUT_S = 10.0


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


def alive(pid: int, name: str | None = None, started: int | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not), is ``name`` (a word of its command line)
    and, when ``started`` is given, is the process that started then."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if stat[stat.rindex(")") + 2:].startswith("Z"):
        return False
    if started is not None and start_ticks(pid) != started:
        return False
    return name is None or name.encode() in cmdline


def terminate(pid: int, sig: int, name: str, started: int | None = None,
              timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop ``pid`` with ``sig`` (its clean shutdown), then SIGKILL if it still runs after
    ``timeout``; nothing when it is not (or no longer) that process."""
    if not alive(pid, name, started):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid, name, started) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # reaps it when it is our child
        time.sleep(0.05)
    if alive(pid, name, started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
