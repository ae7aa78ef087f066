"""Whether the server at a configured address speaks the protocol it is meant to.

A run's clients give up on a server that accepts connections but never answers only after
their connect timeouts (PostgreSQL's address pointed at Valkey's port cost a run three of them
in a row, 16 s), and then say only "timed out" or "connection closed". Before anything
connects, each external address gets one opening message of its protocol, answered at once by
any real server whatever its authentication: PostgreSQL's SSLRequest (one byte back, ``S`` or
``N``) and Valkey's ``PING`` (a RESP reply: ``+PONG``, or ``-NOAUTH ...``). What else answers
is told by the other protocol's opening, on a second connection, when the first one failed.

Only a server that accepted the connection is judged: an address where nothing listens, or
that cannot be reached, is left to the clients, which already say so at once.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from orchestrator.errors import ServiceError

# How long a server has to answer the opening message. A real one answers within
# milliseconds; this leaves room for a loaded machine and a slow network.
ANSWER_TIMEOUT_S = 2.5
_CONNECT_TIMEOUT_S = 2.5
# The second opening only names what answered the first one wrongly: a shorter wait.
_OTHER_TIMEOUT_S = 1.0
_SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
_PING = b"*1\r\n$4\r\nPING\r\n"
_RESP_TYPES = b"+-:$*_,#!=(%~|>"


@dataclass(frozen=True, slots=True)
class Address:
    """A TCP address to probe, and how to name it without credentials."""

    host: str
    port: int
    shown: str  # e.g. "127.0.0.1:5432/cache_proto"


def postgres_address(dsn: str) -> Address | None:
    """The one TCP address of a ``postgresql://`` DSN; None when there is not exactly one
    (a Unix socket, several hosts, the keyword form): such a DSN is left to the client."""
    try:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgres", "postgresql") or "host=" in parts.query:
            return None
        host, port = parts.hostname, parts.port or 5432
    except ValueError:
        return None
    if not host or "," in parts.netloc or host.startswith("/"):
        return None
    database = parts.path.lstrip("/") or parts.username or "postgres"
    return Address(host, port, f"{host}:{port}/{database}")


def valkey_address(url: str) -> Address | None:
    """The TCP address of a ``redis://`` or ``valkey://`` URL; None for TLS (``rediss://``) or
    a Unix socket, left to the client."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "valkey"):
            return None
        host, port = parts.hostname, parts.port or 6379
    except ValueError:
        return None
    if not host:
        return None
    return Address(host, port, f"{host}:{port}")


def _exchange(address: Address, message: bytes,
              timeout_s: float = ANSWER_TIMEOUT_S) -> bytes | None:
    """The first bytes the server sends back to ``message``: b"" if it closed the connection
    without a word, None if it said nothing within ``timeout_s``. OSError if it could not be
    reached."""
    with socket.create_connection((address.host, address.port),
                                  timeout=_CONNECT_TIMEOUT_S) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.sendall(message)
            return sock.recv(64)
        except TimeoutError:
            return None
        except ConnectionError:  # reset: it refused the message
            return b""


def _looks_like(reply: bytes | None) -> str | None:
    """What a reply to some opening message says the server is."""
    if not reply:
        return None
    if reply[:1] in (b"S", b"N"):
        return "PostgreSQL"
    if reply.startswith(b"HTTP/"):
        return "an HTTP server"
    if reply[:1] in _RESP_TYPES:
        return "Valkey or Redis"
    return None


def _other(address: Address, message: bytes) -> str:
    """What answers at ``address``, told by another opening message (best effort)."""
    with contextlib.suppress(OSError):
        seen = _looks_like(_exchange(address, message, _OTHER_TIMEOUT_S))
        if seen:
            return f"; {seen} answers there"
    return ""


def _what_came(reply: bytes | None, waited: float) -> str:
    if reply is None:
        return f"it accepted the connection but sent nothing back in {waited:.1f} s"
    if not reply:
        return "it closed the connection without an answer"
    return f"it answered {reply[:24]!r}"


def check_postgres(dsn: str, source: str) -> None:
    """ServiceError unless the server at ``dsn`` answers as PostgreSQL does; ``source`` says
    where the DSN came from (``$POSTGRES_DSN``)."""
    address = postgres_address(dsn)
    if address is None:
        return
    started = time.monotonic()
    try:
        reply = _exchange(address, _SSL_REQUEST)
    except OSError:
        return  # nothing listens, or it cannot be reached: the client says so at once
    if reply and (reply[:1] in (b"S", b"N") or reply[:1] == b"E"):
        return  # E: a server too old for SSLRequest, still PostgreSQL
    raise ServiceError(
        f"PostgreSQL at {address.shown} (from {source}) is not PostgreSQL: "
        f"{_what_came(reply, time.monotonic() - started)} to PostgreSQL's first message"
        f"{_other(address, _PING)}; point {source} at a PostgreSQL server's port")


def check_valkey(url: str, source: str) -> None:
    """ServiceError unless the server at ``url`` answers as Valkey does."""
    address = valkey_address(url)
    if address is None:
        return
    started = time.monotonic()
    try:
        reply = _exchange(address, _PING)
    except OSError:
        return
    if reply and reply[:1] in (b"+", b"-"):
        return  # +PONG, or -NOAUTH / -ERR: a Valkey (or Redis) server either way
    raise ServiceError(
        f"Valkey at {address.shown} (from {source}) is not Valkey: "
        f"{_what_came(reply, time.monotonic() - started)} to a PING"
        f"{_other(address, _SSL_REQUEST)}; point {source} at a Valkey server's port")
