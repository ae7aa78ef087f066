"""The shared listener: one LISTEN per host, relayed to every instance on it.

PostgreSQL pays for every notification once per listening session: ~20 us of server CPU per
NOTIFY per listener (measured), so with one listener per instance the cost of every write
grows with the number of instances. With ``shared_listener=True`` the instances of a host
(of one user, on one channel and route) share one listener instead:

- the first process to need it binds a Unix socket in Linux's abstract namespace, named
  after the listener's address, channel and user, and runs the relay: a ``Listener`` on
  PostgreSQL, and a heartbeat of its own; every process (that one too) connects to the
  socket once, and its instances share that link: each notification crosses the socket and
  is decoded once per process, then applied by each instance to its own local cache. Peers
  must run as the same user (checked with ``SO_PEERCRED``).
- The relay forwards every notification to every client, in order, on one stream each. Its
  own heartbeat coming back proves that everything committed before it was sent has been
  forwarded: the relay sends that proof (the heartbeat's send time; ``CLOCK_MONOTONIC`` is
  system-wide) after it, and each client renews its lease from it. So instances send no
  heartbeats of their own, and PostgreSQL's cost per write no longer depends on how many
  instances listen.
- When the relay loses PostgreSQL it tells its clients (each flushes and bypasses, as when
  its own listener is lost) and, when LISTEN is back, that it is ready again. When a client
  loses the relay (the host instance closed or died, the socket broke) it flushes and
  bypasses, reconnects, and if nobody answers, becomes the relay itself; nothing it installs
  afterwards predates the new relay's LISTEN. The relay lives as long as some instance of
  its process uses it.
- A client that falls too far behind (8 MiB unread) is disconnected rather than buffered
  without bound; it flushes and reconnects.

Frames: one type byte, a 4-byte big-endian length, the body. ``N`` a notification payload,
``P`` a proof (the send time, as text), ``L`` the relay's listener is lost, ``R`` it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from ._connect import cut_transport
from ._listener import Backoff, Listener
from ._notifier import Notifier
from ._payload import FOREIGN, Notice, decode, own_prefix, own_seq
from ._settings import CacheSettings
from ._stats import Counters

log = logging.getLogger("pgcache")

Connection = Any  # asyncpg.Connection
Connector = Callable[[], Awaitable[Connection]]

_HEADER = struct.Struct(">cI")
_MAX_BEHIND = 8 << 20
_CRED = struct.Struct("3i")


def relay_address(settings: CacheSettings) -> str:
    """The abstract socket the relay of these settings' listener route and channel binds."""
    dsn = settings.listener_dsn or settings.dsn
    parts = urlsplit(dsn)
    route = f"{parts.hostname}:{parts.port}/{parts.path}|{parts.username}|" \
            f"{settings.notify_channel}|{os.getuid()}"
    digest = hashlib.sha256(route.encode()).hexdigest()[:32]
    return f"\0pgcache-relay-{digest}"


def _frame(kind: bytes, body: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(body)) + body


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    if sock is None or sys.platform != "linux":
        return False
    _pid, uid, _gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                   _CRED.size))
    return bool(uid == os.getuid())


class RelayServer:
    """The relay: one listener on PostgreSQL, every client of the host fed from it."""

    def __init__(self, settings: CacheSettings, address: str, *,
                 connect_listener: Connector, connect_notifier: Connector,
                 relay_id: str) -> None:
        self._settings = settings
        self._address = address
        self._clients: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._listening = False
        self._sent: dict[int, float] = {}  # heartbeat seq -> monotonic time sent
        self._seq = 0
        self._own = own_prefix(relay_id)
        self._listener = Listener(settings, connect_listener, on_payload=self._payload,
                                  on_lost=self._lost, on_ready=self._ready)
        self._notifier = Notifier(settings, connect_notifier, relay_id,
                                  next_seq=self._next_seq, counters=Counters(),
                                  heartbeat_every=settings.local_lease_seconds / 4)

    async def start(self) -> bool:
        """Bind the socket and LISTEN; False if another relay has the socket already."""
        try:
            self._server = await asyncio.start_unix_server(self._accept, path=self._address)
        except OSError:
            return False
        try:
            await self._listener.start()
            await self._notifier.start()
            self._ready()  # clients that connected while LISTEN was being set up wait for it
        except BaseException:
            await self.close()
            raise
        return True

    def _next_seq(self) -> int:
        self._seq += 1
        self._sent[self._seq] = time.monotonic()
        if len(self._sent) > 64:
            for old in list(self._sent)[:32]:
                del self._sent[old]
        return self._seq

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not _same_user(writer):
            writer.close()
            return
        self._clients.add(writer)
        if self._listening:
            writer.write(_frame(b"R"))
        try:
            await reader.read()  # clients send nothing: this returns when they go
        except OSError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    def _broadcast(self, frame: bytes) -> None:
        for writer in list(self._clients):
            if writer.transport.get_write_buffer_size() > _MAX_BEHIND:
                log.warning("pgcache relay: a client fell %d bytes behind; disconnecting it",
                            _MAX_BEHIND)
                self._clients.discard(writer)
                writer.transport.abort()
                continue
            writer.write(frame)

    def _payload(self, payload: str) -> None:
        if payload.startswith(self._own):
            seq = own_seq(payload, self._own)
            sent = self._sent.pop(seq, None) if seq is not None else None
            if sent is not None:
                self._broadcast(_frame(b"P", repr(sent).encode()))
            return
        self._broadcast(_frame(b"N", payload.encode()))

    def _lost(self, reason: str) -> None:
        self._listening = False
        self._broadcast(_frame(b"L", reason.encode()))

    def _ready(self) -> None:
        self._listening = True
        self._sent.clear()  # heartbeats sent while deaf prove nothing
        self._broadcast(_frame(b"R"))
        self._notifier.kick()

    def abandon(self) -> None:
        """Cut the PostgreSQL sessions and the clients without the event loop they belong
        to (which may be closed)."""
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(RuntimeError):
                server.close()
        for writer in list(self._clients):
            cut_transport(writer.transport)
        self._clients.clear()
        self._notifier.abandon()
        self._listener.abandon()

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._clients):
            writer.transport.abort()
        self._clients.clear()
        await self._notifier.close(drain_timeout=0)
        await self._listener.close()
        if server is not None:
            with contextlib.suppress(Exception):  # closing only: nothing is pending on it
                await server.wait_closed()


class Subscriber(Protocol):
    """What a relay link tells each instance of its process (``Coherence`` and the lease)."""

    instance_id: str

    def on_notice(self, notice: Notice) -> None: ...

    def on_echo(self, seq: int) -> None: ...

    def on_lost(self, reason: str) -> None: ...

    def on_ready(self) -> None: ...

    def on_proof(self, at: float) -> None: ...


class RelayLink:
    """This process's link to its host's relay, shared by every instance of the process
    that uses it: one socket, and each notification read and decoded once, whatever the
    number of instances; each instance then applies it to its own local cache.

    The link starts the relay in this process when nobody else runs it, and owns it: the
    relay lives as long as the link, which lives as long as some instance uses it.
    """

    _links: ClassVar[dict[tuple[int, str], RelayLink]] = {}

    def __init__(self, settings: CacheSettings, address: str,
                 host: Callable[[], Awaitable[RelayServer | None]]) -> None:
        self._settings = settings
        self._address = address
        self._key = (id(asyncio.get_running_loop()), address)
        self._host = host  # try to start the relay here: the server, or None if taken
        self._relay: RelayServer | None = None
        self._subscribers: dict[str, Subscriber] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ready_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._starting: asyncio.Future[None] | None = None
        self.reconnects = 0
        self.connected = False  # the relay is reached and listening

    @classmethod
    async def join(cls, settings: CacheSettings, subscriber: Subscriber,
                   host: Callable[[], Awaitable[RelayServer | None]]) -> RelayLink:
        """The process's link to the relay of ``settings`` (started on first use), with
        ``subscriber`` receiving from it."""
        address = relay_address(settings)
        key = (id(asyncio.get_running_loop()), address)
        link = cls._links.get(key)
        if link is None:
            link = cls._links[key] = RelayLink(settings, address, host)
            link._starting = asyncio.ensure_future(link._start())
        assert link._starting is not None
        try:
            await asyncio.shield(link._starting)
        except BaseException:
            if not link._subscribers:
                await link.leave(subscriber)
            raise
        # From here on the subscriber hears every frame; what came before it concerns no
        # copy of its own, and its lease starts with the next proof.
        link._subscribers[subscriber.instance_id] = subscriber
        if link.connected:
            subscriber.on_ready()
        return link

    async def _start(self) -> None:
        await self._reach()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pgcache-relay")
        async with asyncio.timeout(self._settings.connect_timeout):
            await self._ready_event.wait()

    async def leave(self, subscriber: Subscriber) -> None:
        """``subscriber`` no longer listens; the last one out closes the link (and the
        relay, if it runs here)."""
        self._subscribers.pop(subscriber.instance_id, None)
        if self._subscribers:
            return
        if self._links.get(self._key) is self:
            del self._links[self._key]
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        if self._writer is not None:
            self._writer.transport.abort()
            self._writer = None
        self.connected = False
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.close()

    def abandon(self, subscriber: Subscriber) -> None:
        """``leave`` without the event loop the link belongs to (which may be closed)."""
        self._subscribers.pop(subscriber.instance_id, None)
        if self._subscribers:
            return
        if self._links.get(self._key) is self:
            del self._links[self._key]
        self._task = self._starting = None
        if self._writer is not None:
            cut_transport(self._writer.transport)
            self._writer = None
        self.connected = False
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.abandon()

    @property
    def runs_relay(self) -> bool:
        """Whether the host's relay runs in this process."""
        return self._relay is not None

    async def _reach(self) -> None:
        for _ in range(3):
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(self._address)
                return
            except OSError:
                if self._relay is None:
                    self._relay = await self._host()
                    if self._relay is not None:
                        log.info("pgcache: this process runs the host's relay")
                        continue  # this process runs the relay now: connect to it
                await asyncio.sleep(0.01)  # another process is starting it
        raise OSError(f"could not reach or start the pgcache relay at {self._address!r}")

    async def _read_frames(self) -> str:
        """Apply frames until the stream ends; the reason it ended."""
        reader = self._reader
        assert reader is not None
        while True:
            try:
                head = await reader.readexactly(_HEADER.size)
                kind, length = _HEADER.unpack(head)
                body = await reader.readexactly(length) if length else b""
            except (asyncio.IncompleteReadError, OSError):
                return "relay connection closed"
            subscribers = list(self._subscribers.values())
            if kind == b"N":
                self._dispatch(body.decode(), subscribers)
            elif kind == b"P":
                at = float(body)
                for subscriber in subscribers:
                    subscriber.on_proof(at)
            elif kind == b"R":
                self.connected = True
                self._ready_event.set()
                for subscriber in subscribers:
                    subscriber.on_ready()
            elif kind == b"L":
                self.connected = False
                for subscriber in subscribers:
                    subscriber.on_lost(f"relay: {body.decode()}")

    def _dispatch(self, payload: str, subscribers: list[Subscriber]) -> None:
        notice = decode(payload)
        if notice is None:
            for subscriber in subscribers:
                subscriber.on_notice(FOREIGN._replace(items=[payload]))
            return
        own = self._subscribers.get(notice.sender)
        for subscriber in subscribers:
            if subscriber is own:
                subscriber.on_echo(notice.seq)
            else:
                subscriber.on_notice(notice)

    async def _run(self) -> None:
        backoff = Backoff(self._settings.reconnect_backoff_min_seconds,
                          self._settings.reconnect_backoff_max_seconds)
        while True:
            reason = await self._read_frames()
            if self._writer is not None:
                self._writer.transport.abort()
            self.connected = False
            for subscriber in list(self._subscribers.values()):
                subscriber.on_lost(reason)
            log.warning("pgcache lost its relay (%s): local copies are bypassed until it is "
                        "back", reason)
            while True:
                await asyncio.sleep(backoff.next_delay())
                try:
                    await self._reach()
                except Exception as exc:
                    log.info("pgcache relay: reconnect failed (%r)", exc)
                    continue
                break
            backoff.reset()
            self.reconnects += 1
