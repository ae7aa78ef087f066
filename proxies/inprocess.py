"""In-process network emulation: an asyncio TCP relay per upstream, inside each worker.

What is delayed, exactly: every chunk of bytes crossing the relay, in each direction, is held
for a one-way delay of ``(latency_ms + u) / 2`` where ``u`` is drawn uniformly from
``[-jitter_ms, +jitter_ms]`` per chunk (clamped at 0), and chunks never overtake each other
(a chunk leaves no earlier than the one before it). So a request/response round trip — a
query, a Valkey command, the TCP/TLS/auth handshake — costs ``latency_ms ± jitter_ms`` on
average ``latency_ms``; a notification pushed by the server (the pgcache listener's NOTIFY
traffic) arrives one one-way delay after the server sent it; and anything that never leaves
the process — a local-cache hit — costs nothing. Bandwidth is not limited.

One relay per upstream route: ``postgres`` (the pool), ``postgres-listener`` (the pgcache
listener's own connection) and ``valkey`` (see :mod:`proxies.routes`). Each relay listens on an
ephemeral 127.0.0.1 port, and the worker's endpoints are pointed at it.

Delays are released by a Linux ``timerfd`` (absolute CLOCK_MONOTONIC deadlines, microsecond
precision) registered with the event loop: asyncio's own timers round waits up to whole
milliseconds, which would add ~0.5 ms per direction to a 1.5 ms round trip. The process's
timer slack is set to 1 ns, and the clock learns how late its wake-ups are (scheduling delay on
a busy host: tens to hundreds of microseconds) and arms that much earlier, so the delays
applied match the configured ones on average. Where timerfd is not available the loop's timers
are used instead (and ``precise`` is False).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import heapq
import itertools
import os
import random
import time
from collections.abc import Callable
from typing import cast

from proxies.routes import ROUTE_NAMES, Endpoints, url_address

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1
# Deadlines this close are released together (a timer wake-up costs more than this).
_SLACK_NS = 20_000
_PR_SET_TIMERSLACK = 29
# How fast the clock adapts to its observed wake-up lateness, and the most it compensates.
_LEARN_STEP_NS = 8_000
_INITIAL_EARLY_NS = 50_000.0  # a typical wake-up lateness on a busy host: a head start
_MAX_EARLY_NS = 1_000_000


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


class DelayClock:
    """Runs callbacks at absolute ``time.perf_counter_ns()`` deadlines, precisely."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._learn = False
        # Learned wake-up lateness: timers are armed this much earlier.
        self._early_ns = _INITIAL_EARLY_NS
        self._fd = -1
        self._libc: ctypes.CDLL | None = None
        self._fallback: asyncio.TimerHandle | None = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
            fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd >= 0:
                self._libc, self._fd = libc, fd
                loop.add_reader(fd, self._on_timer)
        except (OSError, AttributeError, NotImplementedError):
            self._fd = -1

    @property
    def precise(self) -> bool:
        return self._fd >= 0

    def call_at(self, when_ns: int, callback: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when_ns, next(self._seq), callback))
        if self._heap[0][0] == when_ns:
            self._arm(when_ns)

    def _arm(self, when_ns: int) -> None:
        # Learn only from deadlines still ahead: a past one (a zero delay) says nothing about
        # wake-up lateness.
        self._learn = when_ns > time.perf_counter_ns()
        when_ns -= int(self._early_ns)
        if self._libc is not None:
            spec = _Itimerspec()
            spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(max(when_ns, 1), 1_000_000_000)
            self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None)
        else:
            if self._fallback is not None:
                self._fallback.cancel()
            delay = max(0.0, (when_ns - time.perf_counter_ns()) / 1e9)
            self._fallback = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(BlockingIOError):
                os.read(self._fd, 8)
        heap = self._heap
        now = time.perf_counter_ns()
        if heap and self._learn:
            # Track the median lateness (robust to the odd multi-ms scheduling stall): a step
            # earlier after each late wake-up, a step later after each early one.
            early = self._early_ns + (_LEARN_STEP_NS if now > heap[0][0] else -_LEARN_STEP_NS)
            self._early_ns = min(max(early, 0.0), float(_MAX_EARLY_NS))
        limit = now + max(_SLACK_NS, int(self._early_ns))
        while heap and heap[0][0] <= limit:
            _, _, callback = heapq.heappop(heap)
            callback()
        if heap:
            self._arm(heap[0][0])

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._fallback is not None:
            self._fallback.cancel()
        self._heap.clear()


class _Side(asyncio.Protocol):
    """One socket of a relayed connection. What it receives is delivered, delayed, to its
    peer (the other socket); the delays of one direction never reorder its bytes."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self._pending: list[bytes] = []  # received before the peer was connected
        self._last_ns = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.relay.sides.add(self)

    def _when(self) -> int:
        when = time.perf_counter_ns() + self.relay.one_way_ns()
        if when < self._last_ns:
            when = self._last_ns
        self._last_ns = when
        return when

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            self._pending.append(data)
            return
        transport = peer.transport
        if transport is not None:
            self.relay.clock.call_at(self._when(), functools.partial(_write, transport, data))

    def link(self, peer: _Side) -> None:
        self.peer = peer
        pending, self._pending = self._pending, []
        for data in pending:
            self.data_received(data)

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            self.relay.clock.call_at(self._when(), functools.partial(_write_eof, peer.transport))
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.sides.discard(self)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            self.relay.clock.call_at(self._when(), peer.transport.close)


def _write(transport: asyncio.Transport, data: bytes) -> None:
    if not transport.is_closing():
        transport.write(data)


def _write_eof(transport: asyncio.Transport) -> None:
    if not transport.is_closing():
        with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
            transport.write_eof()


class Relay:
    """Listens on 127.0.0.1 and relays each connection to ``upstream`` with a delay.

    Built on asyncio protocols (callbacks, no stream objects or tasks per chunk) because it
    shares its worker's CPU with the application it emulates the network for.
    """

    def __init__(self, name: str, upstream_host: str, upstream_port: int, *, latency_ms: float,
                 jitter_ms: float, clock: DelayClock, rng: random.Random) -> None:
        self.name = name
        self.upstream = (upstream_host, upstream_port)
        self.clock = clock
        self._half_ns = latency_ms * 1e6 / 2
        self._jitter_half_ns = jitter_ms * 1e6 / 2
        self._uniform = rng.uniform
        self._server: asyncio.Server | None = None
        self.sides: set[_Side] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0

    def one_way_ns(self) -> int:
        if self._jitter_half_ns:
            return max(0, int(self._half_ns + self._uniform(-self._jitter_half_ns,
                                                            self._jitter_half_ns)))
        return int(self._half_ns)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def _accept(self) -> _Side:
        self.connections += 1
        client = _Side(self)
        task = asyncio.get_running_loop().create_task(self._connect_upstream(client))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return client

    async def _connect_upstream(self, client: _Side) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(lambda: _Side(self), *self.upstream)
        except OSError:
            if client.transport is not None:
                client.transport.close()
            return
        upstream.link(client)
        client.link(upstream)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connecting):
            task.cancel()
        for side in list(self.sides):
            if side.transport is not None:
                side.transport.abort()


class InProcessNetwork:
    """The relays of one worker: ``async with InProcessNetwork(...) as net: net.endpoints``."""

    def __init__(self, endpoints: Endpoints, *, latency_ms: float, jitter_ms: float,
                 seed: int = 0, routes: tuple[str, ...] = ROUTE_NAMES) -> None:
        self.upstream = endpoints
        self.endpoints = endpoints
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self._seed = seed
        self._routes = routes
        self.relays: dict[str, Relay] = {}
        self._clock: DelayClock | None = None

    async def __aenter__(self) -> InProcessNetwork:
        self._clock = DelayClock(asyncio.get_running_loop())
        try:
            for i, name in enumerate(self._routes):
                url = self.upstream.url(name)
                if not url:
                    continue
                host, port = url_address(url)
                relay = Relay(name, host, port, latency_ms=self.latency_ms,
                              jitter_ms=self.jitter_ms, clock=self._clock,
                              rng=random.Random(f"{self._seed}:{i}:jitter"))
                await relay.start()
                self.relays[name] = relay
        except BaseException:
            await self.close()
            raise
        self.endpoints = self.upstream.rerouted(
            {name: ("127.0.0.1", relay.port) for name, relay in self.relays.items()})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def precise(self) -> bool:
        return self._clock is not None and self._clock.precise

    def describe(self) -> dict[str, object]:
        return {"mode": "inprocess", "latency_ms": self.latency_ms,
                "jitter_ms": self.jitter_ms, "precise_timer": self.precise,
                "relays": {n: {"port": r.port, "upstream": f"{r.upstream[0]}:{r.upstream[1]}"}
                           for n, r in self.relays.items()}}

    async def close(self) -> None:
        for relay in self.relays.values():
            await relay.close()
        if self._clock is not None:
            self._clock.close()
            self._clock = None
