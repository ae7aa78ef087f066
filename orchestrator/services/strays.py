"""Embedded servers left behind: the claim file each server folder carries, and finding and
removing the strays (``services status``, ``services cleanup``, ``make benchmark-cleanup``).

Embedded servers started for a run (or a test session) live in a temporary folder
``pgcache-services-*`` (in ``$TMPDIR``, default ``/tmp``). Its ``owner.json`` names the
process that owns them and its watchdog (pid and start time, so that a reused pid is not
mistaken for them) and each server started there. The watchdog stops them when the owner dies;
a folder whose owner is gone but which still exists is a *stray* (the watchdog was killed too,
or the machine lost power), and whatever servers of it still run are stopped by
:func:`clean_strays`, which then deletes the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.services.processes import alive, start_ticks, terminate
from orchestrator.services.watchdog import WATCHDOG_MODULE

CLAIM = "owner.json"
PREFIX = "pgcache-services-"


def claim(root: Path, watchdog_pid: int | None, watchdog_started: int | None) -> None:
    """Mark ``root`` as this process's servers' folder."""
    _write(root, {"owner": {"pid": os.getpid(), "started": start_ticks(os.getpid())},
                  "watchdog": {"pid": watchdog_pid, "started": watchdog_started},
                  "servers": {}})


def add_server(root: Path, name: str, pid: int, sig: int, binary: str) -> None:
    """Record a server started in ``root``."""
    data = _read(root) or {"servers": {}}
    data["servers"][name] = {"pid": pid, "started": start_ticks(pid), "signal": int(sig),
                             "binary": binary}
    _write(root, data)


def _read(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / CLAIM).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(root: Path, data: dict[str, Any]) -> None:
    path = root / CLAIM
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=1))
    partial.replace(path)


@dataclass(frozen=True, slots=True)
class Stray:
    """A servers' folder whose owner is gone, and its servers that still run."""

    root: Path
    owner_pid: int
    running: tuple[tuple[str, int], ...]  # (server name, pid)

    def describe(self) -> str:
        servers = ", ".join(f"{name} (pid {pid})" for name, pid in self.running)
        return (f"stray: {servers or 'no server running'}, left by process {self.owner_pid} "
                f"(gone), data in {self.root}")


def _server_alive(entry: dict[str, Any]) -> bool:
    return alive(int(entry["pid"]), str(entry["binary"]), entry.get("started"))


def find_strays(base: Path | None = None) -> list[Stray]:
    """The servers' folders under ``base`` (default: the temporary directory) whose owner is
    gone."""
    found = []
    for root in sorted(Path(base or tempfile.gettempdir()).glob(f"{PREFIX}*")):
        data = _read(root)
        if data is None or not isinstance(data.get("owner"), dict):
            continue  # not claimed (yet): an owner still starting, or an older version's
        owner, watchdog = data["owner"], data.get("watchdog") or {}
        if alive(int(owner["pid"]), None, owner.get("started")):
            continue
        if watchdog.get("pid") and alive(int(watchdog["pid"]), WATCHDOG_MODULE,
                                         watchdog.get("started")):
            continue  # the watchdog is stopping them
        servers = data.get("servers") or {}
        running = tuple((name, int(entry["pid"])) for name, entry in servers.items()
                        if _server_alive(entry))
        found.append(Stray(root, int(owner["pid"]), running))
    return found


def clean_strays(strays: Sequence[Stray]) -> None:
    """Stop the strays' servers (their clean shutdown, then SIGKILL) and delete their
    folders."""
    for stray in strays:
        data = _read(stray.root) or {}
        for entry in (data.get("servers") or {}).values():
            terminate(int(entry["pid"]), int(entry["signal"]), str(entry["binary"]),
                      entry.get("started"))
        shutil.rmtree(stray.root, ignore_errors=True)
