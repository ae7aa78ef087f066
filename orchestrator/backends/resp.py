"""A minimal RESP3 connection to Valkey: pipelined commands and out-of-band push messages.

What the ``valkey-tracking`` backend needs from a client, and nothing more: one TCP connection
on which any number of coroutines send commands without waiting for each other (commands
issued in the same event-loop iteration go out in one write: auto-pipelining, as rueidis
does), replies matched to their commands in order, and RESP3 *push* messages (invalidations,
``tracking-redir-broken``) handed to a callback as they arrive, in their place in the stream.

:class:`RespConnection` is an :class:`asyncio.Protocol`; :func:`open_connection` connects one.
:func:`encode` packs a command; :class:`RespParser` reads replies. A server error reply is
raised as :class:`ReplyError`; a lost connection fails every command in flight with
:class:`ConnectionLost`, after which the connection is unusable (make a new one).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["INCOMPLETE", "ConnectionLost", "Push", "ReplyError", "RespConnection", "RespParser",
           "ServerAddress", "encode", "open_connection", "parse_url"]

Arg = bytes | str | int | float


class ReplyError(Exception):
    """The server answered a command with an error (``-ERR ...``)."""


class ConnectionLost(ConnectionError):
    """The connection closed (or was closed) before the command's reply arrived."""


class RespProtocolError(ConnectionError):
    """The server sent something that is not RESP3 (the connection is closed)."""


class Push(list[Any]):
    """A RESP3 push message: out of band, not the reply of any command."""


def encode(*args: Arg) -> bytes:
    """One command as RESP (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        else:
            data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


# What RespParser.get returns while the buffer holds no complete reply.
INCOMPLETE: Any = object()


class RespParser:
    """Incremental RESP3 reader: :meth:`feed` bytes, :meth:`get` complete replies.

    Bulk and simple strings are ``bytes``, integers ``int``, nulls ``None``, arrays and sets
    lists, maps dicts, pushes :class:`Push`; an error reply is a :class:`ReplyError` value
    (returned, not raised: it may sit inside an EXEC reply).
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def compact(self) -> None:
        """Drop the bytes of the replies already returned."""
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0

    def get(self) -> Any:
        """The next complete reply, or :data:`INCOMPLETE` when the buffer holds none yet."""
        if self._pos >= len(self._buf):
            return INCOMPLETE
        try:
            value, self._pos = self._parse(self._pos)
        except _Incomplete:
            return INCOMPLETE
        return value

    def _parse(self, pos: int) -> tuple[Any, int]:
        buf = self._buf
        end = buf.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        kind = buf[pos]
        nxt = end + 2
        if kind == 36:  # $ bulk string
            size = int(buf[pos + 1:end])
            if size < 0:
                return None, nxt
            stop = nxt + size
            if len(buf) < stop + 2:
                raise _Incomplete
            return bytes(buf[nxt:stop]), stop + 2
        if kind == 43:  # + simple string
            return bytes(buf[pos + 1:end]), nxt
        if kind == 58:  # : integer
            return int(buf[pos + 1:end]), nxt
        if kind in (42, 62, 126):  # * array, > push, ~ set
            count = int(buf[pos + 1:end])
            if count < 0:
                return None, nxt
            items: list[Any] = Push() if kind == 62 else []
            for _ in range(count):
                item, nxt = self._parse(nxt)
                items.append(item)
            return items, nxt
        if kind == 95:  # _ null
            return None, nxt
        if kind == 45:  # - error
            return ReplyError(buf[pos + 1:end].decode("utf-8", "replace")), nxt
        if kind in (37, 124):  # % map, | attribute (metadata before the reply it annotates)
            count = int(buf[pos + 1:end])
            mapping: dict[Any, Any] = {}
            for _ in range(count):
                key, nxt = self._parse(nxt)
                value, nxt = self._parse(nxt)
                mapping[tuple(key) if isinstance(key, list) else key] = value
            if kind == 124:
                return self._parse(nxt)
            return mapping, nxt
        if kind == 35:  # # boolean
            return buf[pos + 1:end] == b"t", nxt
        if kind == 44:  # , double
            return float(buf[pos + 1:end]), nxt
        if kind == 40:  # ( big number
            return int(buf[pos + 1:end]), nxt
        if kind in (33, 61):  # ! blob error, = verbatim string
            size = int(buf[pos + 1:end])
            stop = nxt + size
            if len(buf) < stop + 2:
                raise _Incomplete
            data = bytes(buf[nxt:stop])
            if kind == 33:
                return ReplyError(data.decode("utf-8", "replace")), stop + 2
            return data[4:], stop + 2  # "txt:" / "mkd:" format prefix
        raise RespProtocolError(f"not a RESP3 reply: type byte {chr(kind)!r}")


class _Gather:
    """The replies of several pipelined commands, resolved as one list (first error raised)."""

    __slots__ = ("error", "future", "remaining", "replies")

    def __init__(self, future: asyncio.Future[Any], count: int) -> None:
        self.future = future
        self.remaining = count
        self.replies: list[Any] = []
        self.error: ReplyError | None = None

    def take(self, reply: Any) -> bool:
        """Note one reply; True when it was the last one."""
        if type(reply) is ReplyError and self.error is None:
            self.error = reply
        self.replies.append(reply)
        self.remaining -= 1
        if self.remaining:
            return False
        if not self.future.done():
            if self.error is not None:
                self.future.set_exception(self.error)
            else:
                self.future.set_result(self.replies)
        return True


class RespConnection(asyncio.Protocol):
    """One RESP3 connection: pipelined commands, push messages to ``on_push``."""

    def __init__(self, on_push: Callable[[Push], None] | None = None,
                 on_lost: Callable[[RespConnection], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._parser = RespParser()
        self._waiting: deque[asyncio.Future[Any] | _Gather] = deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._on_push = on_push
        self._on_lost = on_lost
        self.closed = False
        self.closed_event = asyncio.Event()

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        waiting = self._waiting
        try:
            while (reply := parser.get()) is not INCOMPLETE:
                if type(reply) is Push:
                    if self._on_push is not None:
                        self._on_push(reply)
                    continue
                entry = waiting[0]
                if type(entry) is _Gather:
                    if entry.take(reply):
                        waiting.popleft()
                    continue
                waiting.popleft()
                if not entry.done():  # type: ignore[union-attr]
                    if type(reply) is ReplyError:
                        entry.set_exception(reply)  # type: ignore[union-attr]
                    else:
                        entry.set_result(reply)  # type: ignore[union-attr]
        except (RespProtocolError, IndexError, ValueError) as exc:
            self.abort(RespProtocolError(f"unexpected data from the server: {exc}"))
            return
        parser.compact()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionLost(f"connection to Valkey lost: {exc}" if exc
                                  else "connection to Valkey closed"))
        if self._on_lost is not None:
            self._on_lost(self)
        self.closed_event.set()

    # -- commands -----------------------------------------------------------------------------
    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Send one encoded command; the future resolves to its reply."""
        if self.closed:
            raise ConnectionLost("connection to Valkey is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiting.append(future)
        self._write(packed)
        return future

    def send_many(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Send ``count`` encoded commands at once; the future resolves to their replies."""
        if self.closed:
            raise ConnectionLost("connection to Valkey is closed")
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        self._waiting.append(_Gather(future, count))
        self._write(packed)
        return future

    def send_unanswered(self, packed: bytes) -> None:
        """Send commands whose only answers are push messages (RESP3 SUBSCRIBE)."""
        if self.closed:
            raise ConnectionLost("connection to Valkey is closed")
        self._write(packed)

    async def call(self, *args: Arg) -> Any:
        """Send one command and wait for its reply."""
        return await self.send(encode(*args))

    def _write(self, packed: bytes) -> None:
        out = self._out
        out.append(packed)
        if len(out) == 1:
            # Commands sent during this iteration of the loop leave in one write.
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        out = self._out
        if out and self._transport is not None and not self.closed:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    @property
    def in_flight(self) -> int:
        """Commands sent whose reply has not arrived yet."""
        return len(self._waiting)

    # -- closing ------------------------------------------------------------------------------
    def _fail(self, error: Exception) -> None:
        self.closed = True
        waiting, self._waiting = self._waiting, deque()
        for entry in waiting:
            future = entry.future if type(entry) is _Gather else entry
            if not future.done():  # type: ignore[union-attr]
                future.set_exception(error)  # type: ignore[union-attr]
                future.exception()  # type: ignore[union-attr]  # nobody may be waiting

    def abort(self, error: Exception | None = None) -> None:
        """Close at once; commands in flight fail with ``error`` (default: ConnectionLost)."""
        if error is not None:
            self._fail(error)
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    async def close(self) -> None:
        """Close the connection and wait until it is closed."""
        self.closed = True
        if self._transport is not None:
            self._transport.close()
            await self.closed_event.wait()


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where a ``redis://`` / ``valkey://`` URL points, and how to log in."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_url(url: str) -> ServerAddress:
    """``redis://[user[:password]@]host[:port][/db]`` (``valkey://`` too); ValueError if not."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "valkey"):
        raise ValueError(f"expected a redis:// or valkey:// URL, got {url!r}")
    path = parts.path.strip("/")
    return ServerAddress(host=parts.hostname or "127.0.0.1", port=parts.port or 6379,
                         db=int(path) if path else 0,
                         username=unquote(parts.username) if parts.username else None,
                         password=unquote(parts.password) if parts.password else None)


def hello(address: ServerAddress) -> bytes:
    """HELLO 3 (with AUTH when the URL has credentials) and SELECT when db is not 0."""
    args: list[Arg] = ["HELLO", 3]
    if address.password is not None:
        args += ["AUTH", address.username or "default", address.password]
    packed = encode(*args)
    if address.db:
        packed += encode("SELECT", address.db)
    return packed


async def open_connection(address: ServerAddress, *, connect_timeout: float,
                          on_push: Callable[[Push], None] | None = None,
                          on_lost: Callable[[RespConnection], None] | None = None,
                          setup: Sequence[bytes] = ()) -> tuple[RespConnection, list[Any]]:
    """Connect, say HELLO 3 (and SELECT), then send ``setup`` (encoded commands) at once.

    Returns the connection and the replies to ``setup``; the connection is closed again if
    connecting or any of these commands fails.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(connect_timeout):
        _, conn = await loop.create_connection(lambda: RespConnection(on_push, on_lost),
                                               address.host, address.port)
        try:
            greeting = hello(address)
            count = 2 if address.db else 1
            await conn.send_many(greeting, count)
            replies: list[Any] = []
            if setup:
                replies = await conn.send_many(b"".join(setup), len(setup))
        except BaseException:
            conn.abort()
            raise
    return conn, replies
