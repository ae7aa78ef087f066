"""A run's log directory as a whole, loaded into a results database later: ``ingest LOG_DIR``.

The runner ingests each pass as it ends. When it could not (the disk filled up, the file
system went read-only, the parent was killed), the log directory still holds everything that
was written, and :func:`ingest_log_dir` loads it, as often as asked (each load replaces the
last):

* ``run.json``: the run's ``runs`` row as the run started (passwords redacted); used when the
  database has no row for the run;
* per worker, ``<stem>.spec.json`` (its backend, repetition, process and instances per
  process) with, per application instance, its ``.ops.csv`` and ``.invalidations.csv``, and
  the worker's ``.events.jsonl`` (under its first instance's stem); per pass,
  ``<backend>.r<rep>.server_cost.csv``, the servers' cost samples;
* ``parent.events.jsonl``, the parent's timeline. Its ``run_finished`` event gives the run's
  status; a run that recorded no end (its parent died, or could not write) is ``failed``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import UsageError
from orchestrator.results import store
from orchestrator.results.logs import (
    PARENT_EVENTS,
    RUN_RECORD,
    WorkerFiles,
    instance_files,
    server_cost_path,
)
from orchestrator.results.store import RunRecord, RunStatus


@dataclass(frozen=True, slots=True)
class Ingested:
    """What one ``ingest`` loaded."""

    run_id: str
    passes: tuple[tuple[str, int, int], ...]  # (backend, repetition, operations)
    status: str


def _specs(log_dir: Path) -> dict[tuple[str, int], list[WorkerFiles]]:
    """The workers' files of each pass, from their spec copies."""
    passes: dict[tuple[str, int], list[WorkerFiles]] = {}
    for path in sorted(log_dir.glob("*.spec.json")):
        try:
            spec = json.loads(path.read_text())
            backend, repetition = str(spec["backend"]["name"]), int(spec["repetition"])
            per_process = int(spec.get("instances_per_process", 1))
            first = int(spec["process"]) * per_process
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{path}: not a worker spec this version can read ({exc})") \
                from exc
        passes.setdefault((backend, repetition), []).extend(
            instance_files(log_dir, backend, repetition, first, per_process))
    return passes


def _parent_end(log_dir: Path) -> tuple[str | None, dt.datetime | None]:
    """The status the run recorded at its end (its ``run_finished`` event), if it did, and
    the time of the parent's last event."""
    status: str | None = None
    last: dt.datetime | None = None
    try:
        lines = (log_dir / PARENT_EVENTS).read_text(errors="replace").splitlines()
    except OSError:
        return None, None
    for line in lines:
        try:
            event = json.loads(line)
            last = dt.datetime.fromisoformat(event["ts"])
        except (ValueError, KeyError, TypeError):
            continue  # e.g. a line cut short by a full disk
        if event.get("event") == "run_finished":
            status = str(event.get("data", {}).get("status"))
    return (status if status in set(RunStatus) else None), last


def ingest_log_dir(conn: Any, log_dir: Path) -> Ingested:
    """Load a run's log directory into the results database ``conn``."""
    if not log_dir.is_dir():
        raise UsageError(f"{log_dir} is not a directory; give a run's log directory, e.g. "
                         "results/logs/RUN_ID")
    run_id = log_dir.name
    row = store.run_info(conn, run_id)
    if not row:
        try:
            record = RunRecord.from_json((log_dir / RUN_RECORD).read_text())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{log_dir}: the database has no run {run_id} and "
                             f"{RUN_RECORD} cannot be read ({exc}); is this a run's log "
                             "directory?") from exc
        if record.run_id != run_id:
            raise UsageError(f"{log_dir / RUN_RECORD} is the record of run {record.run_id}, "
                             f"not of {run_id} (the directory's name)")
        store.record_run_start(conn, record)
    passes = []
    for (backend, repetition), files in _specs(log_dir).items():
        rows = store.ingest_pass(conn, run_id, backend, repetition, files)
        cost = server_cost_path(log_dir, backend, repetition)
        if cost.exists():
            store.ingest_server_cost(conn, run_id, backend, repetition, cost)
        passes.append((backend, repetition, rows))
    store.ingest_parent_events(conn, run_id, log_dir / PARENT_EVENTS)
    recorded, last = _parent_end(log_dir)
    status = recorded or (
        row["status"] if row and row.get("status") != RunStatus.RUNNING else RunStatus.FAILED)
    fields: dict[str, Any] = {"status": status}
    if (not row or row.get("finished_at") is None) and last is not None:
        fields["finished_at"] = last
    store.update_run(conn, run_id, **fields)
    return Ingested(run_id, tuple(passes), str(status))
