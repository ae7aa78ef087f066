"""A worker's clock against the parent's: offsets measured NTP-style, and what they allow.

``time.perf_counter_ns()`` compares across the processes of one host only. For a worker on
another host the parent measures the offset between the two clocks the way NTP does: it reads
its own clock (``sent``), asks the worker for its clock (``worker``), reads its own again
(``received``). Whenever the worker read its clock, it was between ``sent`` and ``received``
on the parent's timeline, so ``offset = (sent + received) / 2 - worker`` is right within half
the round trip. Of several exchanges the one with the lowest round trip is kept: its bound is
the tightest. Every timestamp of the worker then maps onto the parent's timeline as
``t + offset``, within +/- ``uncertainty_ns``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

ROUND_TRIPS = 16  # exchanges per measurement; the lowest round trip is kept
_ASK = b"t"
_ANSWER = struct.Struct("!q")
_CONNECT_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Exchange:
    """One round trip: the parent's clock when it asked and when it got the worker's."""

    sent_ns: int
    worker_ns: int
    received_ns: int

    @property
    def round_trip_ns(self) -> int:
        return self.received_ns - self.sent_ns

    @property
    def offset_ns(self) -> int:
        return (self.sent_ns + self.received_ns) // 2 - self.worker_ns


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """A worker's clock against the parent's: parent time = worker time + ``offset_ns``,
    within +/- ``uncertainty_ns``, as measured at ``worker_ns`` (the worker's clock)."""

    stage: str  # "start" or "end" of the pass
    worker_ns: int
    offset_ns: int
    uncertainty_ns: int
    round_trip_ns: int
    round_trips: int


def estimate(exchanges: Sequence[Exchange], stage: str) -> ClockOffset:
    """The offset of the exchange with the lowest round trip, within half that round trip."""
    if not exchanges:
        raise ValueError("no clock exchange to estimate an offset from")
    best = min(exchanges, key=lambda e: e.round_trip_ns)
    return ClockOffset(stage=stage, worker_ns=best.worker_ns, offset_ns=best.offset_ns,
                       uncertainty_ns=(best.round_trip_ns + 1) // 2,
                       round_trip_ns=best.round_trip_ns, round_trips=len(exchanges))


async def measure(read_worker_clock: Callable[[], Awaitable[int]], stage: str,
                  round_trips: int = ROUND_TRIPS,
                  clock: Callable[[], int] = time.perf_counter_ns) -> ClockOffset:
    """Measure a worker's offset with ``round_trips`` exchanges, one after another."""
    exchanges = []
    for _ in range(round_trips):
        sent = clock()
        worker = await read_worker_clock()
        exchanges.append(Exchange(sent, worker, clock()))
    return estimate(exchanges, stage)


def measure_direct(address: tuple[str, int], stage: str, round_trips: int = ROUND_TRIPS,
                   clock: Callable[[], int] = time.perf_counter_ns) -> ClockOffset:
    """Measure a worker's offset over a TCP connection to its :class:`ClockServer` (blocking:
    run it in a thread). OSError when the server cannot be reached."""
    with socket.create_connection(address, timeout=_CONNECT_TIMEOUT_S) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        exchanges = []
        for _ in range(round_trips):
            sent = clock()
            conn.sendall(_ASK)
            answer = b""
            while len(answer) < _ANSWER.size:
                chunk = conn.recv(_ANSWER.size - len(answer))
                if not chunk:
                    raise ConnectionError("the worker's clock server closed the connection")
                answer += chunk
            received = clock()
            exchanges.append(Exchange(sent, _ANSWER.unpack(answer)[0], received))
    return estimate(exchanges, stage)


class ClockServer:
    """Answers each byte received with the worker's clock (8 bytes), one connection at a time,
    in a thread of its own: the short path for :func:`measure_direct` (a Ray actor call takes
    ten times longer, and the uncertainty is half the round trip)."""

    def __init__(self, host: str, clock: Callable[[], int]) -> None:
        self.clock = clock
        self._sock = socket.create_server((host, 0))
        self.address: tuple[str, int] = (host, self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name="clock-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            with conn, contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while conn.recv(1):
                    conn.sendall(_ANSWER.pack(self.clock()))

    def close(self) -> None:
        """Stop listening (the shutdown wakes the thread blocked in accept)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(timeout=1.0)
