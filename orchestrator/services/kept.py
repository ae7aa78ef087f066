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
from pathlib import Path

from orchestrator.services.embedded import EmbeddedPostgres, EmbeddedValkey, make_dir
from orchestrator.services.processes import alive, terminate

STATE_FILE = "state.json"


def services_dir() -> Path:
    """Where kept-running servers live: ``$PGCACHE_SERVICES_DIR`` or ``./.services``, made
    absolute (PostgreSQL runs in its data folder, where a relative socket directory is not)."""
    return Path(os.environ.get("PGCACHE_SERVICES_DIR", ".services")).absolute()


def read_state(base: Path | None = None) -> dict[str, dict[str, object]]:
    """The recorded kept-running servers still alive (name -> pid, port, url, data_dir)."""
    path = (base or services_dir()) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    running = {}
    for name, entry in state.items():
        binary = "postgres" if name == "postgres" else "valkey-server"
        if isinstance(entry, dict) and alive(int(entry["pid"]), binary):
            running[name] = entry
    return running


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


def services_down(base: Path | None = None, *, purge: bool = False) -> list[str]:
    """Stop the kept-running servers; with ``purge`` also delete their data. Never results."""
    base = base or services_dir()
    stopped = []
    state = read_state(base)
    if "valkey" in state:
        terminate(int(state["valkey"]["pid"]), signal.SIGTERM, "valkey-server")  # type: ignore[call-overload]
        stopped.append("valkey")
    if "postgres" in state:
        terminate(int(state["postgres"]["pid"]), signal.SIGINT, "postgres")  # type: ignore[call-overload]
        stopped.append("postgres")
    with contextlib.suppress(OSError):
        (base / STATE_FILE).unlink()
    if purge:
        for name in ("postgres", "valkey"):
            shutil.rmtree(base / name, ignore_errors=True)
        with contextlib.suppress(OSError):
            base.rmdir()
    return stopped
