"""A fault-injecting TCP proxy for tests (127.0.0.1 only), run in the test's event loop.

``reset()`` aborts every proxied connection (the client sees a reset); ``blackhole()`` keeps
every socket open but silently drops all bytes, also on connections accepted meanwhile, which
only a timeout or heartbeat can detect; ``recover()`` lets new connections through again
(connections that lost bytes stay dead: their streams are corrupt). ``hold()`` keeps the
server's answers in the proxy (nothing lost) until ``release()``: a read is then "in flight"
for as long as a test needs; ``hold_after(n)`` does so only on the connections accepted after
the first ``n`` (an instance stays stuck opening its next connection).
``delay(seconds, jitter)`` holds every chunk, in each direction, for half of
``seconds +/- jitter`` (a round trip costs about ``seconds``), never reordering.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from urllib.parse import urlsplit, urlunsplit


class _Link:
    __slots__ = ("dead", "number", "tasks", "writers")

    def __init__(self, number: int = 0) -> None:
        self.number = number
        self.dead = False
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``target_host:target_port`` until told otherwise."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._blackholed = False
        self.accepted = 0
        self._holding = False
        self._hold_after: int | None = None
        self._held: list[tuple[asyncio.StreamWriter, bytes]] = []
        self._held_event = asyncio.Event()
        self._delay = (0.0, 0.0)

    @classmethod
    def for_dsn(cls, dsn: str) -> FaultProxy:
        parts = urlsplit(dsn)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432)

    def rewrite(self, dsn: str) -> str:
        """``dsn`` pointed at this proxy instead of the server."""
        parts = urlsplit(dsn)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        new = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
        return urlunsplit(parts._replace(netloc=new))

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        return len(self._links)

    def reset(self) -> None:
        """Abort every current connection with a TCP reset."""
        for link in list(self._links):
            self._abort(link)

    def blackhole(self) -> None:
        """Drop all bytes from now on, keeping sockets open."""
        self._blackholed = True
        for link in self._links:
            link.dead = True

    def recover(self) -> None:
        """Forward new connections again."""
        self._blackholed = False

    def delay(self, seconds: float, jitter: float = 0.0) -> None:
        """Delay every chunk by (seconds +/- jitter) / 2 per direction from now on."""
        self._delay = (seconds, jitter)

    def hold(self) -> None:
        """Keep every answer from the server in the proxy until ``release()``."""
        self._holding = True
        self._held_event.clear()

    @property
    def held_connections(self) -> int:
        """How many connections have answers held right now."""
        return len({id(writer) for writer, _ in self._held})

    async def wait_held(self) -> None:
        """Return once some answer is being held."""
        await self._held_event.wait()

    def release(self) -> None:
        """Deliver the held answers, in order, and stop holding."""
        self._holding = False
        self._hold_after = None
        held, self._held = self._held, []
        for writer, data in held:
            if not writer.is_closing():
                writer.write(data)

    def hold_after(self, connections: int) -> None:
        """Hold the answers on every connection accepted after the first ``connections``
        (counted since the proxy started) until ``release()``; the earlier ones flow."""
        self._hold_after = connections
        self._held_event.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self.reset()
            await self._server.wait_closed()
            self._server = None

    def _abort(self, link: _Link) -> None:
        for writer in link.writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    # Linger 0: close() sends RST instead of FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in link.tasks:
            task.cancel()
        self._links.discard(link)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(self.accepted)
        link.dead = self._blackholed
        link.writers.append(writer)
        self._links.add(link)
        try:
            if link.dead:
                # Accept, then swallow everything: the client's handshake never gets an answer.
                await self._pump(reader, None, link)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(self.target_host,
                                                                     self.target_port)
            except OSError:
                self._abort(link)
                return
            link.writers.append(up_writer)
            loop = asyncio.get_running_loop()
            link.tasks = [loop.create_task(self._pump(reader, up_writer, link)),
                          loop.create_task(self._pump(up_reader, writer, link, held=True))]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            if link in self._links:
                self._links.discard(link)
                for w in link.writers:
                    w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None,
                    link: _Link, *, held: bool = False) -> None:
        loop = asyncio.get_running_loop()
        last = 0.0
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if link.dead or writer is None:
                    continue
                seconds, jitter = self._delay
                if seconds or jitter:
                    due = max(loop.time() + max(0.0, seconds + random.uniform(-jitter, jitter))
                              / 2, last)
                    last = due
                    await asyncio.sleep(due - loop.time())
                    if link.dead:
                        continue
                if held and (self._holding or (self._hold_after is not None
                                               and link.number > self._hold_after)):
                    self._held.append((writer, data))
                    self._held_event.set()
                    continue
                writer.write(data)
                await writer.drain()
        if not link.dead:
            for w in link.writers:
                w.transport.abort()
