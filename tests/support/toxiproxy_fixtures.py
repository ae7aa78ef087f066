"""Fixtures and helpers shared by the Toxiproxy tests (a pytest plugin of tests/conftest.py).

``toxiproxy`` is a running :class:`ToxiproxyStandIn` (a test stand-in for Toxiproxy's server),
``echo_server`` a real TCP echo server for byte-level toxic checks, :class:`RecordingLog` a
logger that keeps what a route reports.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.services import free_port
from proxies.routes import proxy_name, url_address
from support.toxiproxy_standin import ToxiproxyStandIn

# The Toxiproxy proxies of a run's three routes.
PROXY_POSTGRES = proxy_name("postgres")
PROXY_POSTGRES_LISTENER = proxy_name("postgres-listener")
PROXY_VALKEY = proxy_name("valkey")


@pytest.fixture
def toxiproxy() -> Iterator[ToxiproxyStandIn]:
    """A Toxiproxy stand-in on a free 127.0.0.1 port, stopped after the test."""
    with ToxiproxyStandIn() as server:
        yield server


class EchoServer:
    """Echoes every byte back on each connection, one thread per connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    @property
    def upstream(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    """A real TCP echo server on a free 127.0.0.1 port."""
    server = EchoServer()
    yield server
    server.close()


def hostport(url: str) -> str:
    """``host:port`` of a DSN or URL."""
    host, port = url_address(url)
    return f"{host}:{port}"


def dead_port() -> int:
    """A 127.0.0.1 port nothing listens on (a moment ago)."""
    return free_port()


def unreachable_url() -> str:
    """An http URL no Toxiproxy answers at."""
    return f"http://127.0.0.1:{dead_port()}"


class RecordingLog:
    """Collects (level, event, fields) like a structlog logger would emit them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.events.append(("error", event, fields))
