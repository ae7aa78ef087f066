"""A TEST STAND-IN for Toxiproxy's server; the product never ships or uses it.

Toxiproxy's server cannot be installed on the machines the tests run on, so this module speaks
Toxiproxy 2.x's HTTP API as its README and ``api.go`` document it and really forwards TCP on
127.0.0.1, with toxics applied per stream direction. It runs in a background thread with its
own asyncio event loop: ``with ToxiproxyStandIn() as server: server.url``.

HTTP API (status codes and JSON shapes as in Toxiproxy 2.6+):

- ``GET /version`` 200 ``{"version": ...}``; ``POST /reset`` 204 (enable every proxy, remove
  every toxic);
- ``GET /proxies`` 200 ``{name: proxy}``; ``POST /proxies`` 201 proxy, 409 name taken, 400
  missing ``name``/``upstream`` or bad body, 500 when the listen address cannot be bound
  (``listen tcp HOST:PORT: bind: address already in use``), like Go's ``net.Listen``;
- ``POST /populate`` 201 ``{"proxies": [...]}`` (same name with other listen/upstream is
  replaced, identical ones are untouched);
- ``GET|POST|PATCH|DELETE /proxies/{proxy}`` 200/200/200/204, 404 unknown proxy;
- ``GET|POST /proxies/{proxy}/toxics`` 200 list / 200 toxic, 409 toxic name taken, 400 bad
  type, stream or attribute type (attributes are Go ``int64``: a fraction is a 400);
- ``GET|POST|PATCH|DELETE /proxies/{proxy}/toxics/{toxic}`` 200/200/200/204, 404 unknown.

A proxy is ``{"name", "listen", "upstream", "enabled", "toxics": [...]}``; a toxic is
``{"name", "type", "stream", "toxicity", "attributes"}``; errors are
``{"error": message, "status": code}``.

Toxics, applied to the data of one direction (``upstream`` = client to server, ``downstream``
= server to client), in the order they were added; ``toxicity`` is drawn once per connection
and toxic as Toxiproxy does:

- ``latency`` (exact): each chunk is delivered ``latency`` ms plus an integer in
  ``[-jitter, jitter)`` ms after it arrived (never before an earlier chunk, never negative);
- ``timeout`` (exact): data is dropped; the connection is closed after ``timeout`` ms, or
  held open forever when 0; removing the toxic closes the connections it held (Toxiproxy's
  ``Cleanup``), new connections then work;
- ``reset_peer`` (exact): on the first data after ``timeout`` ms both sockets are closed with
  SO_LINGER 0, so the client sees "connection reset by peer";
- ``bandwidth`` (approximate): chunks are paced at ``rate`` KB/s;
- ``slicer`` (approximate): chunks are cut into ``average_size`` +/- ``size_variation``
  byte pieces, ``delay`` microseconds apart;
- ``limit_data`` (exact): the connection is closed once ``bytes`` have passed;
- ``slow_close`` (approximate): closing is delayed by ``delay`` ms;
- ``down`` is not a toxic: ``POST /proxies/{proxy}`` with ``{"enabled": false}`` closes the
  listener and every connection; ``true`` listens again on the same address.

Not modelled: Toxiproxy's per-toxic chunk buffers, metrics, ``/metrics``, TLS, HTTP toxics.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import heapq
import itertools
import json
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

VERSION = "2.9.0-standin"

# Attribute names and defaults of each toxic type (all Go int64 in Toxiproxy).
TOXIC_TYPES: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
}
STREAMS = ("upstream", "downstream")
_READ_SIZE = 32 * 1024


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Clock:
    """Wakes coroutines at absolute ``loop.time()`` deadlines with a Linux timerfd.

    Go's timers, which Toxiproxy uses, are precise to microseconds; asyncio's round each wait
    up to whole milliseconds (about +0.5 ms per delayed chunk), and on a busy test machine the
    kernel wakes a sleeping thread late by a fairly steady amount. Both would distort the
    latency a test measures, so the timer is armed early by the median recent wake-up lateness
    and a deadline that close is treated as reached: on average chunks leave on time. Falls
    back to asyncio's timers where timerfd is unavailable.
    """

    _SLACK_NS = 20_000
    _MAX_EARLY_NS = 5_000_000

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._libc: Any = None
        self._fd = -1
        self._armed_at = 0
        self._learn = False
        self._lateness: collections.deque[int] = collections.deque(maxlen=31)
        self._early_ns = 0
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK: 1 ns for this thread
            fd = libc.timerfd_create(1, 0o4000 | 0o2000000)  # MONOTONIC, NONBLOCK|CLOEXEC
            if fd >= 0:
                self._libc, self._fd = libc, fd
                loop.add_reader(fd, self._fire)
        except (OSError, AttributeError):
            self._fd = -1

    async def sleep_until(self, deadline: float) -> None:
        if self._fd < 0:
            await asyncio.sleep(max(0.0, deadline - self._loop.time()))
            return
        when = int(deadline * 1e9)
        future: asyncio.Future[None] = self._loop.create_future()
        heapq.heappush(self._heap, (when, next(self._seq), future))
        if self._heap[0][2] is future:
            self._arm(when)
        await future

    def _arm(self, when_ns: int) -> None:
        at = when_ns - self._early_ns
        self._learn = at > time.monotonic_ns()
        self._armed_at = at
        spec = _Itimerspec()
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(max(at, 1), 1_000_000_000)
        self._libc.timerfd_settime(self._fd, 1, ctypes.byref(spec), None)  # ABSTIME

    def _fire(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        now = time.monotonic_ns()
        if self._learn and now >= self._armed_at:
            self._lateness.append(now - self._armed_at)
            ordered = sorted(self._lateness)
            self._early_ns = min(ordered[len(ordered) // 2], self._MAX_EARLY_NS)
            self._learn = False
        limit = now + max(self._SLACK_NS, self._early_ns)
        while self._heap and self._heap[0][0] <= limit:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)
        if self._heap:
            self._arm(self._heap[0][0])

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


class ApiError(Exception):
    """An API error answered as ``{"error": message, "status": status}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _bad_body(detail: str) -> ApiError:
    return ApiError(f"bad request body: {detail}", 400)


@dataclass(eq=False)
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {"attributes": dict(self.attributes), "name": self.name, "type": self.type,
                "stream": self.stream, "toxicity": self.toxicity}


def _parse_attributes(kind: str, raw: Any, base: dict[str, int]) -> dict[str, int]:
    if raw is None:
        return dict(base)
    if not isinstance(raw, dict):
        raise _bad_body("json: cannot unmarshal attributes into a struct")
    attrs = dict(base)
    for key, value in raw.items():
        if key not in attrs:
            continue  # Go's decoder ignores unknown fields
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_body(f"json: cannot unmarshal {type(value).__name__} into Go struct "
                            f"field {kind}.{key} of type int64")
        if isinstance(value, float) and not value.is_integer():
            raise _bad_body(f"json: cannot unmarshal number {value} into Go struct field "
                            f"{kind}.{key} of type int64")
        attrs[key] = int(value)
    return attrs


def _toxicity(raw: Any, default: float) -> float:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _bad_body("json: cannot unmarshal toxicity into float32")
    return float(raw)


class _Link:
    """One client connection and its upstream connection, pumped in both directions."""

    def __init__(self, proxy: _Proxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.sockets = {"upstream": upstream, "downstream": client}  # where each direction writes
        self.sources = {"upstream": client, "downstream": upstream}  # where each direction reads
        self.closed = False
        self.rng = random.Random()
        self.applies: dict[int, bool] = {}  # id(toxic) -> toxicity draw for this link
        self.state: dict[int, dict[str, Any]] = {}  # per-toxic state on this link
        self.tasks: list[asyncio.Task[None]] = []
        self.timers: dict[int, asyncio.TimerHandle] = {}

    def applies_to(self, toxic: Toxic) -> bool:
        key = id(toxic)
        if key not in self.applies:
            self.applies[key] = self.rng.random() < toxic.toxicity
            if self.applies[key]:
                self._on_toxic_start(toxic)
        return self.applies[key]

    def _on_toxic_start(self, toxic: Toxic) -> None:
        if toxic.type == "timeout" and toxic.attributes["timeout"] > 0:
            loop = asyncio.get_running_loop()
            self.timers[id(toxic)] = loop.call_later(toxic.attributes["timeout"] / 1000,
                                                     self.close)

    def toxic_added(self, toxic: Toxic) -> None:
        # Toxics with a timer start when added, like a Toxiproxy stub starting its Pipe.
        self.applies_to(toxic)

    def toxic_removed(self, toxic: Toxic) -> None:
        timer = self.timers.pop(id(toxic), None)
        if timer is not None:
            timer.cancel()
        applied = self.applies.pop(id(toxic), False)
        self.state.pop(id(toxic), None)
        if toxic.type == "timeout" and applied:
            self.close()  # Toxiproxy's TimeoutToxic.Cleanup closes the stub

    def start(self) -> None:
        for direction in STREAMS:
            queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
            self.tasks.append(asyncio.create_task(self._read(direction, queue)))
            self.tasks.append(asyncio.create_task(self._write(direction, queue)))
        for toxic in self.proxy.toxics:
            self.toxic_added(toxic)

    async def _read(self, direction: str, queue: asyncio.Queue[tuple[float, bytes | None]]
                    ) -> None:
        loop = asyncio.get_running_loop()
        sock = self.sources[direction]
        last = 0.0
        while True:
            try:
                data = await loop.sock_recv(sock, _READ_SIZE)
            except OSError:
                data = b""
            if not data:
                queue.put_nowait((last, None))
                return
            now = loop.time()
            for at, piece in self._apply(direction, now, data):
                last = max(last, at)
                queue.put_nowait((last, piece))

    def _apply(self, direction: str, now: float, data: bytes) -> list[tuple[float, bytes]]:
        pieces: list[tuple[float, bytes]] = [(now, data)]
        for toxic in [t for t in self.proxy.toxics if t.stream == direction]:
            if not self.applies_to(toxic):
                continue
            attrs = toxic.attributes
            state = self.state.setdefault(id(toxic), {})
            if toxic.type == "latency":
                jitter = attrs["jitter"]
                out = []
                for at, piece in pieces:
                    delay = attrs["latency"]
                    if jitter > 0:
                        delay += self.rng.randrange(2 * jitter) - jitter
                    out.append((at + max(0, delay) / 1000, piece))
                pieces = out
            elif toxic.type == "timeout":
                return []
            elif toxic.type == "reset_peer":
                if "scheduled" not in state:
                    state["scheduled"] = True
                    loop = asyncio.get_running_loop()
                    loop.call_later(attrs["timeout"] / 1000, self.reset)
                return []
            elif toxic.type == "bandwidth" and attrs["rate"] > 0:
                free = state.get("free", 0.0)
                out = []
                for at, piece in pieces:
                    free = max(free, at) + len(piece) / (attrs["rate"] * 1000)
                    out.append((free, piece))
                state["free"] = free
                pieces = out
            elif toxic.type == "slicer" and attrs["average_size"] > 0:
                out = []
                for at, piece in pieces:
                    offset, t = 0, at
                    while offset < len(piece):
                        size = attrs["average_size"]
                        if attrs["size_variation"] > 0:
                            size += self.rng.randint(-attrs["size_variation"],
                                                     attrs["size_variation"])
                        size = max(1, size)
                        out.append((t, piece[offset:offset + size]))
                        offset += size
                        t += attrs["delay"] / 1_000_000
                pieces = out
            elif toxic.type == "limit_data":
                left = attrs["bytes"] - state.get("passed", 0)
                out = []
                for at, piece in pieces:
                    take = piece[:max(0, left)]
                    left -= len(take)
                    if take:
                        out.append((at, take))
                state["passed"] = attrs["bytes"] - left
                if left <= 0:
                    loop = asyncio.get_running_loop()
                    last = max((at for at, _ in out), default=now)
                    loop.call_at(last + 0.001, self.close)
                pieces = out
        return pieces

    async def _write(self, direction: str, queue: asyncio.Queue[tuple[float, bytes | None]]
                     ) -> None:
        loop = asyncio.get_running_loop()
        sock = self.sockets[direction]
        while True:
            at, data = await queue.get()
            if at > loop.time():
                if self.proxy.clock is not None:
                    await self.proxy.clock.sleep_until(at)
                else:
                    await asyncio.sleep(at - loop.time())
            if data is None:
                delay = max((t.attributes["delay"] for t in self.proxy.toxics
                             if t.type == "slow_close" and t.stream == direction
                             and self.applies_to(t)), default=0)
                if delay:
                    await asyncio.sleep(delay / 1000)
                self.close()
                return
            try:
                await loop.sock_sendall(sock, data)
            except OSError:
                self.close()
                return

    def reset(self) -> None:
        """Close both sockets with an RST (SO_LINGER 0)."""
        if self.closed:
            return
        for sock in self.sockets.values():
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for timer in self.timers.values():
            timer.cancel()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.proxy.links.discard(self)
        # Close after the cancelled tasks have unregistered their sockets from the selector
        # (those callbacks were scheduled first).
        asyncio.get_running_loop().call_soon(self._close_sockets)

    def _close_sockets(self) -> None:
        for sock in self.sockets.values():
            with contextlib.suppress(OSError):
                sock.close()


@dataclass(eq=False)
class _Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool = False
    toxics: list[Toxic] = field(default_factory=list)
    links: set[_Link] = field(default_factory=set)
    listener: socket.socket | None = None
    accept_task: asyncio.Task[None] | None = None
    connecting: set[asyncio.Task[None]] = field(default_factory=set)
    clock: _Clock | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "toxics": [t.as_json() for t in self.toxics]}

    def start(self) -> None:
        if self.enabled:
            return
        host, port = _split_hostport(self.listen or "127.0.0.1:0")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Like Go's net.Listen (SO_REUSEADDR, so TIME_WAIT does not block a restart).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host or "0.0.0.0", port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            reason = ("bind: address already in use" if exc.errno == 98
                      else f"bind: {exc.strerror}")
            raise ApiError(f"listen tcp {self.listen}: {reason}", 500) from exc
        sock.setblocking(False)
        bound = sock.getsockname()
        self.listen = f"[{bound[0]}]:{bound[1]}" if family == socket.AF_INET6 \
            else f"{bound[0]}:{bound[1]}"
        self.listener = sock
        self.enabled = True
        self.accept_task = asyncio.get_running_loop().create_task(self._accept(sock))

    def stop(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        if self.accept_task is not None:
            self.accept_task.cancel()
            self.accept_task = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for link in list(self.links):
            link.close()

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(listener)
            except OSError:
                return
            client.setblocking(False)
            task = loop.create_task(self._connect(client))
            self.connecting.add(task)
            task.add_done_callback(self.connecting.discard)

    async def _connect(self, client: socket.socket) -> None:
        host, port = _split_hostport(self.upstream)
        loop = asyncio.get_running_loop()
        upstream: socket.socket | None = None
        with contextlib.suppress(OSError):
            for family, kind, proto, _, address in await loop.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM):
                candidate = socket.socket(family, kind, proto)
                candidate.setblocking(False)
                try:
                    await loop.sock_connect(candidate, address)
                except OSError:
                    candidate.close()
                    continue
                upstream = candidate
                break
        if upstream is None:
            client.close()  # Toxiproxy closes the client when the upstream cannot be dialled
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.enabled:
            client.close()
            upstream.close()
            return
        link = _Link(self, client, upstream)
        self.links.add(link)
        link.start()

    def add_toxic(self, body: Any) -> Toxic:
        if not isinstance(body, dict):
            raise _bad_body("json: cannot unmarshal into Go value of type toxics.ToxicWrapper")
        stream = body.get("stream") or "downstream"
        kind = body.get("type") or ""
        if stream not in STREAMS:
            raise ApiError("stream was invalid, can be either upstream or downstream", 400)
        name = body.get("name") or f"{kind}_{stream}"
        if kind not in TOXIC_TYPES:
            raise ApiError("invalid toxic type", 400)
        if any(t.name == name for t in self.toxics):
            raise ApiError("toxic already exists", 409)
        toxic = Toxic(name=name, type=kind, stream=stream,
                      toxicity=_toxicity(body.get("toxicity"), 1.0),
                      attributes=_parse_attributes(kind, body.get("attributes"),
                                                   TOXIC_TYPES[kind]))
        self.toxics.append(toxic)
        for link in list(self.links):
            link.toxic_added(toxic)
        return toxic

    def find_toxic(self, name: str) -> Toxic:
        for toxic in self.toxics:
            if toxic.name == name:
                return toxic
        raise ApiError("toxic not found", 404)

    def update_toxic(self, name: str, body: Any) -> Toxic:
        toxic = self.find_toxic(name)
        if not isinstance(body, dict):
            raise _bad_body("json: cannot unmarshal into Go struct")
        toxic.attributes = _parse_attributes(toxic.type, body.get("attributes"),
                                             toxic.attributes)
        toxic.toxicity = _toxicity(body.get("toxicity"), toxic.toxicity)
        return toxic

    def remove_toxic(self, name: str) -> None:
        toxic = self.find_toxic(name)
        self.toxics.remove(toxic)
        for link in list(self.links):
            link.toxic_removed(toxic)


def _split_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ApiError(f"address {value}: missing port in address", 500)
    return host.strip("[]"), int(port)


@dataclass
class _Request:
    method: str
    path: str
    body: bytes


class ToxiproxyStandIn:
    """A Toxiproxy-compatible API and TCP proxy in a background thread (tests only)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.proxies: dict[str, _Proxy] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path), for tests to inspect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._http: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._clock: _Clock | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ToxiproxyStandIn:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._clock = _Clock(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self.port))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="toxiproxy-standin", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> ToxiproxyStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        if self._server is not None:
            self._server.close()
        # HTTP handlers end when their connection closes (cancelling them makes asyncio's
        # stream server log the CancelledError).
        for writer in list(self._http.values()):
            writer.close()
        if self._http:
            await asyncio.wait(list(self._http), timeout=5)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._clock is not None:
            self._clock.close()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the stand-in's loop and return its result (for test set-up)."""
        assert self._loop is not None

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    def connection_count(self, proxy: str) -> int:
        """How many client connections ``proxy`` currently forwards."""
        return int(self.call(lambda: len(self.proxies[proxy].links)))

    # -- HTTP -------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._http[task] = writer
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                self.requests.append((request.method, request.path))
                status, payload = self._dispatch(request)
                await self._respond(writer, status, payload)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            # The answer was sent (or the client left): closing loses nothing either way.
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._http.pop(task, None)

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
        line = await reader.readline()
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        length = 0
        while True:
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body = await reader.readexactly(length) if length else b""
        return _Request(method.upper(), unquote(target.split("?", 1)[0]), body)

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
        reasons = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
                   404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
                   500: "Internal Server Error"}
        if status == 204:
            body, kind = b"", "application/json"
        elif isinstance(payload, str):
            body, kind = payload.encode(), "text/plain; charset=utf-8"
        else:
            body, kind = (json.dumps(payload) + "\n").encode(), "application/json"
        head = (f"HTTP/1.1 {status} {reasons.get(status, 'Status')}\r\n"
                f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: keep-alive\r\n\r\n")
        writer.write(head.encode("latin-1") + body)
        await writer.drain()

    def _dispatch(self, request: _Request) -> tuple[int, Any]:
        parts = [p for p in request.path.split("/") if p]
        routes: dict[tuple[str, ...], dict[str, Callable[..., tuple[int, Any]]]] = {
            ("version",): {"GET": self._version},
            ("reset",): {"POST": self._reset},
            ("populate",): {"POST": self._populate},
            ("proxies",): {"GET": self._proxy_index, "POST": self._proxy_create},
            ("proxies", "*"): {"GET": self._proxy_show, "POST": self._proxy_update,
                               "PATCH": self._proxy_update, "DELETE": self._proxy_delete},
            ("proxies", "*", "toxics"): {"GET": self._toxic_index, "POST": self._toxic_create},
            ("proxies", "*", "toxics", "*"): {
                "GET": self._toxic_show, "POST": self._toxic_update,
                "PATCH": self._toxic_update, "DELETE": self._toxic_delete},
        }
        shape = tuple("*" if i % 2 and parts[0] == "proxies" else p
                      for i, p in enumerate(parts))
        handlers = routes.get(shape)
        if handlers is None:
            return 404, "404 page not found\n"
        handler = handlers.get(request.method)
        if handler is None:
            return 405, ""
        args = [p for i, p in enumerate(parts) if shape[i] == "*"]
        try:
            body = json.loads(request.body) if request.body.strip() else None
        except ValueError as exc:
            if request.method in ("POST", "PATCH"):
                return 400, {"error": f"bad request body: {exc}", "status": 400}
            body = None
        try:
            return handler(*args, body=body)
        except ApiError as exc:
            return exc.status, {"error": exc.message, "status": exc.status}

    def _proxy(self, name: str) -> _Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError("proxy not found", 404)
        return proxy

    def _version(self, body: Any) -> tuple[int, Any]:
        return 200, {"version": VERSION}

    def _reset(self, body: Any) -> tuple[int, Any]:
        for proxy in self.proxies.values():
            proxy.start()
            for toxic in list(proxy.toxics):
                proxy.remove_toxic(toxic.name)
        return 204, None

    def _proxy_index(self, body: Any) -> tuple[int, Any]:
        return 200, {name: p.as_json() for name, p in self.proxies.items()}

    @staticmethod
    def _proxy_fields(body: Any, where: str = "") -> tuple[str, str, str, bool]:
        if not isinstance(body, dict):
            raise _bad_body("json: cannot unmarshal into Go value of type toxiproxy.Proxy")
        name, upstream = body.get("name") or "", body.get("upstream") or ""
        if not name:
            raise ApiError(f"missing required field: name{where}", 400)
        if not upstream:
            raise ApiError(f"missing required field: upstream{where}", 400)
        enabled = body.get("enabled")
        return name, str(body.get("listen") or ""), upstream, enabled is not False

    def _proxy_create(self, body: Any) -> tuple[int, Any]:
        name, listen, upstream, enabled = self._proxy_fields(body)
        if name in self.proxies:
            raise ApiError("proxy already exists", 409)
        proxy = _Proxy(name=name, listen=listen, upstream=upstream, clock=self._clock)
        if enabled:
            proxy.start()
        self.proxies[name] = proxy
        return 201, proxy.as_json()

    def _populate(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, list):
            raise _bad_body("json: cannot unmarshal object into Go value of type []struct")
        wanted = [self._proxy_fields(item, f" at proxy {i + 1}") for i, item in enumerate(body)]
        result = []
        for name, listen, upstream, enabled in wanted:
            existing = self.proxies.get(name)
            if existing is not None and existing.upstream == upstream and (
                    existing.listen == listen or not listen):
                result.append(existing)
                continue
            if existing is not None:
                existing.stop()
                del self.proxies[name]
            proxy = _Proxy(name=name, listen=listen, upstream=upstream, clock=self._clock)
            if enabled:
                proxy.start()
            self.proxies[name] = proxy
            result.append(proxy)
        return 201, {"proxies": [p.as_json() for p in result]}

    def _proxy_show(self, name: str, body: Any) -> tuple[int, Any]:
        return 200, self._proxy(name).as_json()

    def _proxy_update(self, name: str, body: Any) -> tuple[int, Any]:
        proxy = self._proxy(name)
        if not isinstance(body, dict):
            raise _bad_body("json: cannot unmarshal into Go value of type toxiproxy.Proxy")
        listen = str(body.get("listen", proxy.listen))
        upstream = str(body.get("upstream", proxy.upstream))
        enabled = bool(body.get("enabled", proxy.enabled))
        if listen != proxy.listen or upstream != proxy.upstream:
            proxy.stop()
            proxy.listen, proxy.upstream = listen, upstream
        if enabled and not proxy.enabled:
            proxy.start()
        elif not enabled:
            proxy.stop()
        return 200, proxy.as_json()

    def _proxy_delete(self, name: str, body: Any) -> tuple[int, Any]:
        self._proxy(name).stop()
        del self.proxies[name]
        return 204, None

    def _toxic_index(self, name: str, body: Any) -> tuple[int, Any]:
        return 200, [t.as_json() for t in self._proxy(name).toxics]

    def _toxic_create(self, name: str, body: Any) -> tuple[int, Any]:
        return 200, self._proxy(name).add_toxic(body).as_json()

    def _toxic_show(self, name: str, toxic: str, body: Any) -> tuple[int, Any]:
        return 200, self._proxy(name).find_toxic(toxic).as_json()

    def _toxic_update(self, name: str, toxic: str, body: Any) -> tuple[int, Any]:
        return 200, self._proxy(name).update_toxic(toxic, body).as_json()

    def _toxic_delete(self, name: str, toxic: str, body: Any) -> tuple[int, Any]:
        self._proxy(name).remove_toxic(toxic)
        return 204, None


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes (for tests)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
