"""TCP listeners that are not the server a client expects (127.0.0.1 only), run in a thread:
one that accepts and says nothing, or one that answers every connection with fixed bytes."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def listener(reply: bytes | None = None) -> Iterator[int]:
    """Yield the port of a listener that keeps each connection open without a word
    (``reply`` None), or reads what the client sends first and answers ``reply``."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)  # accept() wakes to see the block end
    held: list[socket.socket] = []
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            if reply is not None:
                with contextlib.suppress(OSError):
                    conn.settimeout(5)
                    conn.recv(4096)
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, name="listener", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stopping.set()
        server.close()
        thread.join(5)
        for conn in held:
            conn.close()
