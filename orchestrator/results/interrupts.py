"""Stopping the SQL a command runs (``query``, ``report``): on Ctrl-C or SIGTERM, or when its
time is up.

A Python signal handler runs only when the main thread gets back to Python, and a DuckDB
query may not do that for minutes (its own signal check comes between its tasks, and an
exception raised there surfaces as ``RuntimeError: Query interrupted``). So the signal is
also written to a wake-up pipe, which a thread of ours reads at once: it interrupts every
watched connection (DuckDB's ``interrupt()`` is meant to be called from another thread) and
keeps doing so until the command ends, since a command may start another query meanwhile.
Whatever the interrupted query raises then means "interrupted" (or "timed out"). Should the
command still not end within :data:`GRACE_S`, the process ends anyway, with the same line
and exit code: a stop must not depend on how a query reacts to it.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import duckdb

from orchestrator.errors import ExitCode, QueryTimeout

# How long a command may take to end after a signal before the process ends without it.
GRACE_S = 3.0
# How often a stopped command's connections are interrupted again (a query started after
# the first interrupt is stopped too).
_REPEAT_S = 0.2
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Reason(enum.Enum):
    """Why the command's SQL was stopped."""

    SIGNAL = "signal"
    TIMEOUT = "timeout"


class SqlStop:
    """The connections of one command, and whether (and why) their SQL was stopped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self.reason: Reason | None = None
        self._stopped = threading.Event()  # set once a reason is
        self._done = threading.Event()  # the command ended

    def watch(self, conn: Any) -> Any:
        """Stop ``conn``'s queries with the command's; returns ``conn``."""
        with self._lock:
            self._connections.append(conn)
        return conn

    def stop(self, reason: Reason) -> None:
        """Interrupt every watched connection, now and until the command ends."""
        with self._lock:
            if self.reason is None or reason is Reason.SIGNAL:
                self.reason = reason
        if not self._stopped.is_set():
            self._stopped.set()
            threading.Thread(target=self._keep_interrupting, name="sql-stop",
                             daemon=True).start()

    def close(self, conn: Any) -> None:
        """Close ``conn``, never while it is being interrupted."""
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
            conn.close()

    def _interrupt_all(self) -> None:
        # Under the lock: a connection is not closed in the middle of its interrupt.
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(duckdb.Error):  # nothing to stop
                    conn.interrupt()

    def _keep_interrupting(self) -> None:
        while True:
            self._interrupt_all()
            if self._done.wait(_REPEAT_S):
                return

    def end(self) -> None:
        self._done.set()

    def wait_ended(self, timeout_s: float) -> bool:
        """Whether the command ended within ``timeout_s``."""
        return self._done.wait(timeout_s)


_active: SqlStop | None = None


def watched(conn: Any) -> Any:
    """``conn``, stopped with the running command's SQL (if a command runs under
    :func:`stoppable`); close it with :func:`close`."""
    if _active is not None:
        _active.watch(conn)
    return conn


def close(conn: Any) -> None:
    """Close a connection :func:`watched` returned."""
    if _active is not None:
        _active.close(conn)
    else:
        conn.close()


# Whoever says "interrupted" first (the command on its way out, or the grace timer) says it
# alone: one line, never two.
_said = threading.Lock()


def say_interrupted() -> bool:
    """Print the one ``interrupted`` line, unless it was printed already; whether printed."""
    if not _said.acquire(blocking=False):
        return False
    os.write(2, b"interrupted\n")
    return True


def _end_after_grace(stop: SqlStop) -> None:
    if stop.wait_ended(GRACE_S):
        return
    # The command did not end in time: end the process as the command would have (without
    # flushing its output, which may be what it is stuck on: a pipe nobody reads).
    say_interrupted()
    os._exit(ExitCode.INTERRUPTED)


def _read_signals(fd: int, stop: SqlStop) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data or 0 in data:  # the pipe's end, or our own sentinel: the command ended
            return
        if any(number in (int(s) for s in _SIGNALS) for number in data):
            stop.stop(Reason.SIGNAL)
            threading.Thread(target=_end_after_grace, args=(stop,), name="sql-grace",
                             daemon=True).start()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    if _active is not None:
        _active.stop(Reason.SIGNAL)
    raise KeyboardInterrupt


@contextlib.contextmanager
def stoppable(timeout_s: float | None = None) -> Iterator[SqlStop]:
    """Run a command's SQL so that SIGINT / SIGTERM stop it (KeyboardInterrupt leaves the
    block) and, with ``timeout_s``, so that it ends with :class:`QueryTimeout` once that long
    has passed. Main thread only."""
    global _active
    stop = SqlStop()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    saved = {sig: signal.signal(sig, _raise_interrupt) for sig in _SIGNALS}
    saved_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    reader = threading.Thread(target=_read_signals, args=(read_fd, stop), name="sql-signals",
                              daemon=True)
    reader.start()
    timer = None
    if timeout_s:
        timer = threading.Timer(timeout_s, stop.stop, (Reason.TIMEOUT,))
        timer.daemon = True
        timer.start()
    _active = stop
    try:
        yield stop
    except BaseException as exc:
        if stop.reason is Reason.SIGNAL and not isinstance(exc, KeyboardInterrupt):
            # What an interrupted query raises (RuntimeError, duckdb.InterruptException, our
            # own error wrapping it) means only that it was interrupted.
            raise KeyboardInterrupt from None
        if stop.reason is Reason.TIMEOUT and not isinstance(exc, KeyboardInterrupt):
            raise QueryTimeout(timeout_s or 0) from None
        raise
    finally:
        _active = None
        stop.end()
        if timer is not None:
            timer.cancel()
        signal.set_wakeup_fd(saved_fd)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        with contextlib.suppress(OSError):
            os.write(write_fd, b"\0")
        reader.join(1)
        os.close(write_fd)
        os.close(read_fd)
