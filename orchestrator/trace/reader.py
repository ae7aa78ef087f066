"""Reading a trace: its lines, streamed, as typed operations with their intended times.

:class:`TraceReader` is iterable (again from the start each time) and counts as it goes:
lines read, operations yielded, operations skipped per word (outside memcached's
vocabulary), bad lines. A bad line is a :class:`~orchestrator.trace.errors.TraceError` with
the file and line number under ``on_bad_line: fail`` (the default), and counted (its first
few kept, with their line numbers) under ``skip``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.trace.errors import TraceError
from orchestrator.trace.formats import (
    FORMAT_CHOICES,
    GENERIC_HEADER,
    LineProblem,
    TraceFormat,
    parse_line,
)
from orchestrator.trace.ops import TraceOp, instance_for
from orchestrator.trace.streams import read_lines

_HEADER = GENERIC_HEADER.encode()
# Bounds on what is counted per distinct thing, so that a hostile file cannot grow them: the
# words beyond MAX_WORDS are counted together under OTHER_WORDS, and only the first
# KEPT_BAD_LINES bad lines are kept (all are counted).
MAX_WORDS = 32
OTHER_WORDS = "(other)"
KEPT_BAD_LINES = 10
_CACHED_CLIENTS = 65_536
MAX_INSTANCES = 100_000  # the summary keeps a count per instance


class BadLinePolicy(enum.Enum):
    """What a bad line does: fail the read, or be skipped and counted."""

    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class BadLine:
    """A skipped bad line: where, what was expected, what was found."""

    line: int
    expected: str
    found: str

    def __str__(self) -> str:
        return f"line {self.line:,}: expected {self.expected}, found {self.found}"


class TraceReader:
    """The operations of a trace file (plain, ``.gz`` or ``.zst``), streamed.

    ``fmt`` is ``auto``, ``twitter`` or ``generic`` (see :mod:`orchestrator.trace.formats`);
    ``instances`` the number of application instances the client ids are mapped onto (see
    :func:`~orchestrator.trace.ops.instance_for`).
    """

    def __init__(self, path: Path | str, *, fmt: str = "auto",
                 on_bad_line: BadLinePolicy | str = BadLinePolicy.FAIL, instances: int = 1,
                 source: str | None = None) -> None:
        self.path = Path(path)
        self.source = source or str(path)
        if fmt not in FORMAT_CHOICES:
            raise TraceError(self.source, f"format one of {', '.join(FORMAT_CHOICES)}",
                             repr(fmt))
        try:
            self.on_bad_line = BadLinePolicy(on_bad_line)
        except ValueError:
            raise TraceError(self.source, "on_bad_line fail or skip",
                             repr(on_bad_line)) from None
        if isinstance(instances, bool) or not isinstance(instances, int) or not (
                1 <= instances <= MAX_INSTANCES):
            raise TraceError(self.source, f"instances as a whole number from 1 to "
                             f"{MAX_INSTANCES:,}", repr(instances))
        self.requested_format = fmt
        self.instances = instances
        self._reset()

    def _reset(self) -> None:
        self.format: TraceFormat | None = None
        self.lines = 0
        self.ops = 0
        self.skipped_ops: dict[str, int] = {}
        self.bad_lines = 0
        self.bad_examples: list[BadLine] = []

    @property
    def skipped(self) -> int:
        """Operations skipped (outside memcached's vocabulary), all words together."""
        return sum(self.skipped_ops.values())

    def _bad(self, line: int, problem: LineProblem) -> None:
        if self.on_bad_line is BadLinePolicy.FAIL:
            raise TraceError(self.source, problem.expected, problem.found, line=line)
        self.bad_lines += 1
        if len(self.bad_examples) < KEPT_BAD_LINES:
            self.bad_examples.append(BadLine(line, problem.expected, problem.found))

    def _skip(self, word: str) -> None:
        counts = self.skipped_ops
        if word not in counts and len(counts) >= MAX_WORDS:
            word = OTHER_WORDS
        counts[word] = counts.get(word, 0) + 1

    def _first_format(self, first: bytes) -> TraceFormat:
        header = first.removeprefix(b"\xef\xbb\xbf").strip() == _HEADER  # a BOM is no field
        if self.requested_format == "generic" and not header:
            raise TraceError(self.source, f"the generic format's header {GENERIC_HEADER!r}",
                             repr(first[:200].decode("utf-8", "replace")), line=1)
        if header and self.requested_format != "twitter":
            return TraceFormat.GENERIC
        return TraceFormat.TWITTER

    def __iter__(self) -> Iterator[TraceOp]:
        self._reset()
        origin: int | None = None
        instances = self.instances
        placed: dict[str, int] = {}
        number = 0
        for number, raw in enumerate(read_lines(self.path, self.source), start=1):
            self.lines = number
            if number == 1:
                self.format = self._first_format(raw)
                if self.format is TraceFormat.GENERIC:
                    continue
            fmt = self.format
            assert fmt is not None
            try:
                fields = parse_line(raw.decode("utf-8"), fmt)
            except UnicodeDecodeError as exc:
                self._bad(number, LineProblem("UTF-8 text", f"{exc.reason} at byte {exc.start}"))
                continue
            except LineProblem as problem:
                self._bad(number, problem)
                continue
            if origin is None:
                origin = fields.timestamp_ms
            if fields.kind is None:
                self._skip(fields.op)
                continue
            instance = placed.get(fields.client)
            if instance is None:
                instance = instance_for(fields.client, instances)
                if len(placed) < _CACHED_CLIENTS:
                    placed[fields.client] = instance
            self.ops += 1
            yield TraceOp(fields.timestamp_ms - origin, fields.kind, fields.op, fields.key,
                          fields.key_size, fields.value_size, fields.client, fields.ttl_s,
                          instance, number)
        self.lines = number
