"""The log files a run writes: operations and invalidations as CSV, events as JSON lines.

Workers and the parent write these files while a pass runs; :mod:`orchestrator.results.store`
ingests them into DuckDB after it. Their names and formats are defined here, once.

Operations are the bulk of the data (hundreds of thousands per second per worker), so they do
not go through structlog one by one: the worker's loop formats each operation as one CSV line
(an f-string: ~0.4 us, where the csv module takes ~2 us) into an in-memory buffer, and the
buffer is appended to ``*.ops.csv`` (columns ``OPS_COLUMNS``) in whole chunks with a single
``os.write`` — a worker killed mid-run leaves a file whose every line is intact. Keys are
written bare when the key prefix needs no CSV quoting (generated keys are prefix + digits) and
quoted otherwise; error texts are always quoted. DuckDB's ``read_csv`` ingests the files in
bulk.

Invalidation arrivals are frequent too: they go the same way to ``*.invalidations.csv``
(columns ``INVALIDATION_COLUMNS``) and are ingested as ``invalidation`` events. Both go through
a :class:`CsvRecorder`.

Every other event (phases, local flushes, stats, errors, the parent's progress) is a structlog
event rendered as one JSON line: ``{"ts", "ts_ns", "level", "event", "run_id", "backend",
"repetition", "process", "data": {...the rest...}}``. A worker's event file is flushed every
0.25 s and at exit (not after every event), so a worker killed with SIGKILL loses at most its
last quarter second of events.

Every file is appended to through an :class:`AppendOnlyFile`: a chunk that cannot be written
(the disk is full, a file size limit, a file system gone read-only) is taken back, so the file
keeps whole lines only, and the error is kept for the writer to report; writing never raises
into the worker's loop or a log call. ``run.json`` (:data:`RUN_RECORD`) keeps the run's row as
it started, so that ``ingest`` can load a log directory into a database that never saw the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import structlog

from orchestrator.redaction import redact_data

PARENT_EVENTS = "parent.events.jsonl"  # the parent's events, in the run's log directory
RUN_RECORD = "run.json"  # the run's metadata (its ``runs`` row as it started), for ``ingest``

# Each file's columns, in order, with the DuckDB type the ingest reads them as.
OPS_COLUMNS: dict[str, str] = {
    "task": "INTEGER", "op": "VARCHAR", "key": "VARCHAR", "start_ns": "BIGINT",
    "latency_ns": "BIGINT", "hit": "TINYINT", "local": "TINYINT", "version": "VARCHAR",
    "server_version": "BIGINT", "error": "VARCHAR",
}


def csv_field(text: str) -> str:
    """``text`` as one CSV field (quoted when it must be)."""
    if any(c in text for c in ',"\n\r') or text == "":
        return '"' + text.replace('"', '""') + '"'
    return text


def needs_quoting(text: str) -> bool:
    return any(c in text for c in ',"\n\r')


def csv_row(task: int, op: str, key: str, start_ns: int, latency_ns: int,
            hit: int | None = None, local: int | None = None, version: str | None = None,
            server_version: int | None = None, error: str | None = None) -> str:
    """One operation as a CSV line in OPS_COLUMNS order (the slow, general path)."""
    def opt(value: object) -> str:
        return "" if value is None else str(value)

    return (f"{task},{op},{csv_field(key)},{start_ns},{latency_ns},{opt(hit)},{opt(local)},"
            f"{'' if version is None else csv_field(version)},{opt(server_version)},"
            f"{'' if error is None else csv_field(error)}\n")

# Invalidation arrivals (worker -> ``<stem>.invalidations.csv``): one CSV line each, buffered
# like operations (a structlog event per arrival cost ~7% of a worker's CPU in read-heavy
# runs). The ingest turns each line into an ``events`` row, event ``invalidation``, data
# ``{key, server_version, ts_ns}``: the same contract as a structlog event would have.
INVALIDATION_COLUMNS: dict[str, str] = {
    "key": "VARCHAR", "server_version": "BIGINT", "ts_ns": "BIGINT", "wall_ns": "BIGINT",
}


# A worker's clock offsets (``<stem>.clock.csv``), written by the parent when the worker runs on
# a clock of its own (another host): one line per measurement, at the start and at the end of
# the pass. ``offset_ns`` maps the worker's clock onto the parent's (parent = worker + offset),
# measured at ``worker_ns`` on the worker's clock, within +/- ``uncertainty_ns`` (half the best
# round trip of ``round_trips`` exchanges). The ingest maps every timestamp of the worker with
# it; a worker without this file shares the parent's clock.
CLOCK_COLUMNS: dict[str, str] = {
    "stage": "VARCHAR", "worker_ns": "BIGINT", "offset_ns": "BIGINT", "uncertainty_ns": "BIGINT",
    "round_trip_ns": "BIGINT", "round_trips": "INTEGER", "node": "VARCHAR", "host": "VARCHAR",
}


# A pass's server-cost samples (``<backend>.r<rep>.server_cost.csv``), kept beside the
# workers' files so that ``ingest`` finds them when the database could not take them.
SERVER_COST_COLUMNS: dict[str, str] = {
    "ts_ns": "BIGINT", "ts": "TIMESTAMP", "server": "VARCHAR", "metric": "VARCHAR",
    "value": "DOUBLE",
}


def server_cost_path(log_dir: Path, backend: str, repetition: int) -> Path:
    return log_dir / f"{backend}.r{repetition}.server_cost.csv"


def worker_stem(backend: str, repetition: int, process: int) -> str:
    """The common name of one application instance's files for one pass:
    ``<backend>.r<rep>.p<process>``, ``process`` being the instance's number (the worker
    process's own, with one instance per process)."""
    return f"{backend}.r{repetition}.p{process}"


@dataclass(frozen=True, slots=True)
class WorkerFiles:
    """The files one worker writes during one pass."""

    process: int
    ops: Path  # <stem>.ops.csv, OPS_COLUMNS
    events: Path  # <stem>.events.jsonl, structlog events
    invalidations: Path  # <stem>.invalidations.csv, INVALIDATION_COLUMNS
    clock: Path  # <stem>.clock.csv, CLOCK_COLUMNS (written by the parent, when measured)

    @classmethod
    def of(cls, log_dir: Path, stem: str, process: int) -> WorkerFiles:
        return cls(process, log_dir / f"{stem}.ops.csv", log_dir / f"{stem}.events.jsonl",
                   log_dir / f"{stem}.invalidations.csv", log_dir / f"{stem}.clock.csv")

    @property
    def streams(self) -> tuple[Path, ...]:
        """The files the worker itself writes (the clock file is the parent's)."""
        return (self.ops, self.events, self.invalidations)


def instance_files(log_dir: Path, backend: str, repetition: int, first: int,
                   count: int) -> list[WorkerFiles]:
    """The files of a worker's ``count`` application instances, numbered from ``first``: each
    instance writes its own operations and invalidation arrivals; the worker's events go to
    the first one's events file (and only there), and its clock offsets, which hold for every
    instance, to the first one's clock file."""
    clock = WorkerFiles.of(log_dir, worker_stem(backend, repetition, first), first).clock
    return [dataclasses.replace(WorkerFiles.of(log_dir, worker_stem(backend, repetition, number),
                                               number), clock=clock)
            for number in range(first, first + count)]


# An event line's fields: these at the top, everything else under "data".
_CORE = ("ts", "ts_ns", "level", "event", "run_id", "backend", "repetition", "process")
EVENT_COLUMNS: dict[str, str] = {
    "ts": "TIMESTAMP", "ts_ns": "BIGINT", "level": "VARCHAR", "event": "VARCHAR",
    "backend": "VARCHAR", "repetition": "INTEGER", "process": "INTEGER", "data": "JSON",
}


class AppendOnlyFile:
    """A file appended to in whole chunks, each with one ``os.write`` loop.

    A chunk that cannot be written (the disk is full, the file too large, the file system gone
    read-only) is taken back: the file is cut to its size before the chunk, so it keeps only
    whole lines, the error is kept in :attr:`error`, and the file is closed; what was written
    before stays, to be ingested later.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: OSError | None = None
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, data: bytes) -> bool:
        """Write ``data`` at the end; False (and nothing written) when it could not be."""
        fd = self._fd
        if fd is None:
            return False
        size = -1
        try:
            size = os.fstat(fd).st_size
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            return True
        except OSError as exc:
            self.error = OSError(exc.errno, exc.strerror, str(self.path))  # name the file
            if size >= 0:
                with contextlib.suppress(OSError):  # the file keeps what it had either way
                    os.ftruncate(fd, size)
            self.close()
            return False

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):  # every byte was written (or taken back)
                os.close(fd)


class CsvRecorder:
    """Buffers CSV lines (operations, invalidation arrivals) and appends them to one file in
    whole chunks. When a chunk cannot be written it is dropped (counted in :attr:`lost`),
    ``on_error`` is called once, and later chunks are dropped too: the file keeps the whole
    lines written before."""

    def __init__(self, path: Path, flush_at: int = 16384,
                 on_error: Callable[[OSError], None] | None = None) -> None:
        self.path = path
        self.rows: list[str] = []
        self.flush_at = flush_at
        self.flushed = 0
        self.lost = 0
        self.on_error = on_error
        self._file = AppendOnlyFile(path)

    @property
    def count(self) -> int:
        return self.flushed + len(self.rows)

    @property
    def error(self) -> OSError | None:
        return self._file.error

    def flush(self) -> None:
        rows = self.rows
        if not rows:
            return
        failed_before = self._file.error is not None
        if self._file.append("".join(rows).encode()):
            self.flushed += len(rows)
        else:
            self.lost += len(rows)
            if not failed_before and self._file.error is not None and self.on_error:
                self.on_error(self._file.error)
        rows.clear()

    def close(self) -> None:
        self.flush()
        self._file.close()


def _now_wall() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ",
                                                                  timespec="microseconds")


class _Stamp:
    """Adds the wall-clock ``ts`` and the monotonic ``ts_ns`` (kept if the caller set one)."""

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.clock = clock

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        event["ts"] = _now_wall()
        event.setdefault("ts_ns", self.clock())
        return event


class _Context:
    """Adds the fixed context of this log stream (run, backend, repetition, process)."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        self.context = dict(context)

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        for key, value in self.context.items():
            event.setdefault(key, value)
        return event


def _nest(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """Moves every non-core field under ``data`` so the ingest reads a fixed set of columns."""
    data = {key: event.pop(key) for key in [k for k in event if k not in _CORE]}
    event["data"] = data
    return event


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """No password in an event (a DSN in a message, a backend's ``password`` option...)."""
    redacted: Mapping[str, Any] = redact_data(event)
    return redacted


def _dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(obj, default=str, separators=(",", ":"))


class BufferedStream:
    """A text stream of events, appended to its file in whole chunks when :meth:`sync` is
    called (or at each ``flush`` with ``autosync``): structlog's WriteLogger flushes after every
    event, which would cost a system call per event in a worker. Like :class:`CsvRecorder`, a
    chunk that cannot be written is taken back and remembered in :attr:`error`; writing never
    raises, so no log call can fail the caller."""

    def __init__(self, path: Path, *, autosync: bool = False) -> None:
        self._file = AppendOnlyFile(path)
        self._parts: list[str] = []
        self._autosync = autosync

    @property
    def error(self) -> OSError | None:
        return self._file.error

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        if self._autosync:
            self.sync()

    def sync(self) -> None:
        if self._parts:
            data = "".join(self._parts).encode("utf-8", "surrogatepass")
            self._parts.clear()
            self._file.append(data)

    def close(self) -> None:
        self.sync()
        self._file.close()


class LibraryRecords(logging.Handler):
    """Turns the standard-library log records of a library (pgcache logs through
    ``logging.getLogger("pgcache")``) into this process's structlog events: event
    ``<logger>_log`` with the record's level and message."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record whose arguments do not fit its format
            message = str(record.msg)
        structlog.get_logger().log(record.levelno, f"{record.name}_log", message=message,
                                   logger=record.name)


_LIBRARY_HANDLER = LibraryRecords(logging.INFO)


def configure_events(stream: TextIO | BufferedStream, context: Mapping[str, Any],
                     clock: Callable[[], int] = time.perf_counter_ns) -> None:
    """Route this process's structlog events, as JSON lines, to ``stream``, and pgcache's
    log records (INFO and up) into them; ``clock`` stamps their ``ts_ns``."""
    library = logging.getLogger("pgcache")
    if _LIBRARY_HANDLER not in library.handlers:
        library.addHandler(_LIBRARY_HANDLER)
        library.setLevel(logging.INFO)
        library.propagate = False
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _Context(context),
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            _Stamp(clock),
            _nest,
            _redact,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=stream),  # type: ignore[arg-type]
        wrapper_class=structlog.make_filtering_bound_logger(0),
        cache_logger_on_first_use=False,
    )
