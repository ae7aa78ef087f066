"""What a trace line becomes: a typed operation with its intended time, and the mapping of
memcached's operations and of client ids onto what the benchmark does."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass


class OpKind(enum.Enum):
    """What the benchmark does for an operation."""

    GET = "get"
    WRITE = "write"  # a set of a value of the line's value size (incr/decr too)
    DELETE = "delete"


# memcached's vocabulary (the operations the Twitter traces name), mapped explicitly. A word
# outside it (touch, gat, ...) is counted per word and skipped, never guessed at.
OP_KINDS: dict[str, OpKind] = {
    "get": OpKind.GET,
    "gets": OpKind.GET,
    "set": OpKind.WRITE,
    "add": OpKind.WRITE,
    "replace": OpKind.WRITE,
    "cas": OpKind.WRITE,
    "append": OpKind.WRITE,
    "prepend": OpKind.WRITE,
    "incr": OpKind.WRITE,
    "decr": OpKind.WRITE,
    "delete": OpKind.DELETE,
}


@dataclass(frozen=True, slots=True)
class TraceOp:
    """One operation of a trace, in the order of the file.

    ``offset_ms`` is its intended time: milliseconds after the trace's first line (negative
    where a line is earlier than the first, as out-of-order lines can be). ``op`` is the
    trace's own word (``cas``), ``kind`` what is done. ``ttl_s`` is 0 for no expiry.
    ``instance`` is the application instance its client is mapped to (see
    :func:`instance_for`); ``line`` its line number in the file (1-based).
    """

    offset_ms: int
    kind: OpKind
    op: str
    key: str
    key_size: int
    value_size: int
    client: str
    ttl_s: int
    instance: int
    line: int


def instance_for(client: str, instances: int) -> int:
    """The application instance (0 .. instances-1) of a client id: the same for a given
    number of instances in every file, run and process, whatever the order of the lines.

    A client id that is a decimal integer (the Twitter traces' are) goes to ``id % instances``,
    so that consecutive ids spread evenly; any other id to the first 8 bytes of its BLAKE2b
    digest, as an unsigned big-endian integer, modulo ``instances``.
    """
    if instances < 1:
        raise ValueError(f"instances must be >= 1, found {instances}")
    if client.isascii() and client.isdigit():
        return int(client) % instances
    digest = hashlib.blake2b(client.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % instances
