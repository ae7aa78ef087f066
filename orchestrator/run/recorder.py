"""How a load task records its operations: one CSV line each (``OPS_COLUMNS``).

A :class:`TaskRecorder` records one task's operations in one phase into its worker's
:class:`~orchestrator.results.logs.CsvRecorder` (or nothing: a warm-up is not measured). A
task calls it after every operation, so the common case is one f-string: the columns up to
the latency are the recorder's, the operation gives the rest (hit, local, version, server
version) as its ``tail`` (:func:`read_tail`, :func:`write_tail`); failures take the slow,
general path (:func:`~orchestrator.results.logs.csv_row`), their error text redacted.
"""

from __future__ import annotations

from orchestrator.backends.base import GetResult
from orchestrator.redaction import redact
from orchestrator.results.logs import CsvRecorder, csv_field, csv_row


def error_text(exc: BaseException) -> str:
    """An exception as recorded: ``Type: message``, passwords redacted, at most 300
    characters."""
    return redact(f"{type(exc).__name__}: {exc}")[:300]


def read_tail(result: GetResult) -> str:
    """The hit, local, version and server version of a read: the version is the write id
    its value starts with (``b"3:12:57|..."``)."""
    value = result.value
    if value is None:
        return "0,0,,"
    return f"1,{1 if result.local else 0},{value[:value.find(b'|')].decode()},"


def write_tail(write_id: str, server_version: int | None) -> str:
    """The columns after the latency of a write (or of a loader execution: its load id)."""
    return f",,{write_id},{'' if server_version is None else server_version}"


class TaskRecorder:
    """Records task ``task``'s operations into ``target``; with ``target`` None (a
    warm-up), nothing. Generated keys are prefix + digits: with ``quoted`` False (a prefix
    that needs no CSV quoting) they are written bare."""

    __slots__ = ("failed", "flush_at", "ok", "quoted", "target", "task")

    def __init__(self, target: CsvRecorder | None, task: int, quoted: bool) -> None:
        self.target = target
        self.task = task
        self.quoted = quoted
        self.flush_at = target.flush_at if target is not None else 0
        if target is None:
            self.ok = _ignore_ok
            self.failed = _ignore_failed
        else:
            self.ok = self._ok
            self.failed = self._failed

    def _ok(self, op: str, key: str, start_ns: int, end_ns: int, tail: str) -> None:
        """Record an operation that succeeded, from ``start_ns`` to ``end_ns``."""
        target = self.target
        assert target is not None
        rows = target.rows
        rows.append(f"{self.task},{op},{csv_field(key) if self.quoted else key},"
                    f"{start_ns},{end_ns - start_ns},{tail},\n")
        if len(rows) >= self.flush_at:
            target.flush()

    def _failed(self, op: str, key: str, start_ns: int, end_ns: int, exc: BaseException,
                version: str | None = None) -> None:
        """Record an operation that failed with ``exc``."""
        target = self.target
        assert target is not None
        target.rows.append(csv_row(self.task, op, key, start_ns, end_ns - start_ns,
                                   version=version, error=error_text(exc)))
        if len(target.rows) >= self.flush_at:
            target.flush()

    def flush(self) -> None:
        """Append the lines buffered so far to the file."""
        if self.target is not None:
            self.target.flush()


def _ignore_ok(op: str, key: str, start_ns: int, end_ns: int, tail: str) -> None:
    return None


def _ignore_failed(op: str, key: str, start_ns: int, end_ns: int, exc: BaseException,
                   version: str | None = None) -> None:
    return None
