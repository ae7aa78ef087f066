"""Embedded servers kept running between runs: ``python -m orchestrator services up|down|status``.

``services up`` starts embedded PostgreSQL and Valkey that outlive the command and records
them in ``state.json`` under :func:`services_dir`; runs use them whenever ``POSTGRES_DSN`` /
``VALKEY_URL`` are not set; ``services down`` stops them (``--purge`` also deletes their
data, never the results).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

from orchestrator.services.embedded import (
    STOP_TIMEOUT_S,
    EmbeddedPostgres,
    EmbeddedValkey,
    make_dir,
)

STATE_FILE = "state.json"


def services_dir() -> Path:
    """Where kept-running servers live: ``$PGCACHE_SERVICES_DIR`` or ``./.services``."""
    return Path(os.environ.get("PGCACHE_SERVICES_DIR", ".services"))


def _alive(pid: int, name: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return name.encode() in cmdline


def read_state(base: Path | None = None) -> dict[str, dict[str, object]]:
    """The recorded kept-running servers still alive (name -> pid, port, url, data_dir)."""
    path = (base or services_dir()) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    alive = {}
    for name, entry in state.items():
        binary = "postgres" if name == "postgres" else "valkey-server"
        if isinstance(entry, dict) and _alive(int(entry["pid"]), binary):
            alive[name] = entry
    return alive


def services_up(base: Path | None = None) -> dict[str, dict[str, object]]:
    """Start embedded PostgreSQL and Valkey that outlive this process; record them."""
    base = base or services_dir()
    make_dir(base)
    state = read_state(base)
    if "postgres" not in state:
        pg = EmbeddedPostgres(base / "postgres")
        pg.start()
        state["postgres"] = {"pid": pg.pid, "port": pg.port, "url": pg.dsn,
                             "data_dir": str(pg.data_dir)}
        pg.detach()
    if "valkey" not in state:
        vk = EmbeddedValkey(base / "valkey")
        vk.start()
        state["valkey"] = {"pid": vk.pid, "port": vk.port, "url": vk.url,
                           "data_dir": str(vk.data_dir)}
        vk.detach()
    (base / STATE_FILE).write_text(json.dumps(state, indent=2))
    return state


def _terminate(pid: int, sig: int, name: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid, name) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(pid, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def services_down(base: Path | None = None, *, purge: bool = False) -> list[str]:
    """Stop the kept-running servers; with ``purge`` also delete their data. Never results."""
    base = base or services_dir()
    stopped = []
    state = read_state(base)
    if "valkey" in state:
        _terminate(int(state["valkey"]["pid"]), signal.SIGTERM, "valkey-server")  # type: ignore[call-overload]
        stopped.append("valkey")
    if "postgres" in state:
        _terminate(int(state["postgres"]["pid"]), signal.SIGINT, "postgres")  # type: ignore[call-overload]
        stopped.append("postgres")
    with contextlib.suppress(OSError):
        (base / STATE_FILE).unlink()
    if purge:
        for name in ("postgres", "valkey"):
            shutil.rmtree(base / name, ignore_errors=True)
        with contextlib.suppress(OSError):
            base.rmdir()
    return stopped
