"""The two trace formats, a line of each parsed into its fields and written from them.

Both are CSV lines of seven fields, ``timestamp, key, key size, value size, client id,
operation, TTL``, without quoting (the key is anonymized text without commas):

- **twitter**: twitter/cache-trace's format, the timestamp in whole seconds; no header.
- **generic**: the same fields, the timestamp in whole milliseconds; the file's first line is
  the header :data:`GENERIC_HEADER`, which is how a file says it is generic.

Sizes are bytes, the TTL whole seconds (0: no expiry), every number a whole decimal number
>= 0. ``format: auto`` (the default) reads a file whose first line is the header as generic
and any other as twitter; ``twitter`` or ``generic`` insists (a generic file without its
header is an error, and a header line in a twitter file a bad line).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from orchestrator.trace.ops import OP_KINDS, OpKind


class TraceFormat(enum.Enum):
    """How a trace's lines are written."""

    TWITTER = "twitter"
    GENERIC = "generic"


FORMAT_CHOICES = ("auto", "twitter", "generic")
GENERIC_HEADER = "timestamp_ms,key,key_size,value_size,client_id,operation,ttl_s"
FIELD_COUNT = 7
_WORD = re.compile(r"[a-z][a-z0-9_]*")


class LineProblem(Exception):
    """What is wrong with a line: what was expected, what was found (no place: the reader
    knows the file and the line)."""

    def __init__(self, expected: str, found: str) -> None:
        super().__init__(f"expected {expected}, found {found}")
        self.expected = expected
        self.found = found


@dataclass(frozen=True, slots=True)
class Fields:
    """A well-formed line. ``kind`` is None for an operation outside memcached's
    vocabulary (a word such as ``touch``): counted and skipped by the reader."""

    timestamp_ms: int
    key: str
    key_size: int
    value_size: int
    client: str
    op: str
    kind: OpKind | None
    ttl_s: int


def _number(text: str, field: str) -> int:
    # int() alone would take " 5", "+5" and "5_000"; a trace's numbers are plain digits.
    if not (text.isascii() and text.isdigit()):
        raise LineProblem(f"{field} as a whole number >= 0", repr(text))
    return int(text)


def parse_line(text: str, fmt: TraceFormat) -> Fields:
    """The fields of one line (without its line ending); :class:`LineProblem` if malformed.

    A field that cannot be parsed (a wrong field count, a number that is not one, an empty
    key or client id, an operation that is not a word) makes a bad line; a well-formed line
    whose operation is a word outside memcached's vocabulary is not bad: its ``kind`` is None.
    """
    parts = text.split(",")
    if len(parts) != FIELD_COUNT:
        raise LineProblem(f"{FIELD_COUNT} comma-separated fields", f"{len(parts)} in {text!r}")
    stamp, key, key_size, value_size, client, op, ttl = parts
    kind = OP_KINDS.get(op)
    if (kind is not None and key and client and (stamp + key_size + value_size + ttl).isascii()
            and stamp.isdigit() and key_size.isdigit() and value_size.isdigit()
            and ttl.isdigit()):  # the common line, checked at once; the rest says what is wrong
        t = int(stamp)
        return Fields(t * 1000 if fmt is TraceFormat.TWITTER else t, key, int(key_size),
                      int(value_size), client, op, kind, int(ttl))
    unit = "timestamp in seconds" if fmt is TraceFormat.TWITTER else "timestamp in ms"
    timestamp = _number(stamp, unit)
    if not key:
        raise LineProblem("a key", "an empty field")
    sizes = _number(key_size, "key size"), _number(value_size, "value size")
    if not client:
        raise LineProblem("a client id", "an empty field")
    word = op.lower()
    if not _WORD.fullmatch(word):
        raise LineProblem("an operation (get, set, delete, ...)", repr(op))
    ttl_s = _number(ttl, "TTL in seconds")
    return Fields(timestamp * 1000 if fmt is TraceFormat.TWITTER else timestamp, key,
                  sizes[0], sizes[1], client, word, OP_KINDS.get(word), ttl_s)


def format_line(fmt: TraceFormat, timestamp_ms: int, key: str, key_size: int,
                value_size: int, client: str, op: str, ttl_s: int) -> str:
    """One line (with its newline); a twitter line's timestamp is cut to whole seconds."""
    stamp = timestamp_ms // 1000 if fmt is TraceFormat.TWITTER else timestamp_ms
    return f"{stamp},{key},{key_size},{value_size},{client},{op},{ttl_s}\n"
