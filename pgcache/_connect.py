"""Opening connections, and what asyncpg's errors mean for pgcache.

Every exception a driver call can raise is sorted into one of three outcomes:

- the server rejected the statement (``CacheServerError``); the session is fine and the
  connection goes back to the pool;
- the connection, or the server, is gone or in an unknown state (``CacheConnectionError``);
  the connection is never used again;
- cancellation and the like, which are not errors of ours and travel on unchanged (the
  connection is dropped: its session state is unknown).

Nothing else leaves pgcache: a driver's internal or interface error is a connection error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from ._errors import (
    CacheConnectionError,
    CacheServerError,
    CacheTooManyConnectionsError,
    PgCacheError,
)
from ._settings import CacheSettings

Connection = Any  # asyncpg.Connection; asyncpg ships no type information

# Errors that mean "the connection or the server is gone", as opposed to a rejected statement.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)
# Errors raised before a statement was sent: a write that failed so can safely be retried.
_NOT_SENT: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


def describe_address(dsn: str) -> str:
    """host:port/database of a DSN, without credentials."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
        database = parts.path.lstrip("/") or parts.username or "postgres"
    except ValueError:
        return "(unparsable DSN)"
    return f"{host}:{port}/{database}"


def is_server_rejection(exc: BaseException) -> bool:
    """The server refused the statement and the session survives it."""
    if not isinstance(exc, asyncpg.PostgresError) \
            or getattr(exc, "severity", "ERROR") in ("FATAL", "PANIC"):
        return False
    # A statement the server cancelled (statement_timeout, pg_cancel_backend) is an ERROR
    # of class 57 like the shutdowns, but only the statement ended: the session is fine.
    # (Our own timeouts and cancellations never arrive as this: asyncpg raises
    # TimeoutError / CancelledError for them.)
    return isinstance(exc, asyncpg.exceptions.QueryCanceledError) \
        or not isinstance(exc, _CONNECTION_ERRORS)


def is_connection_failure(exc: BaseException) -> bool:
    """The connection (or the server) is gone, broken or in an unknown protocol state."""
    return isinstance(exc, Exception) and not isinstance(exc, PgCacheError) \
        and not is_server_rejection(exc)


def was_not_sent(exc: BaseException) -> bool:
    """The failure happened before the statement left the client."""
    return isinstance(exc, _NOT_SENT)


def connect_hint(exc: BaseException, settings: CacheSettings) -> str:
    """What to check when connecting failed with ``exc``."""
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return "check the user name and password in the DSN"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "create the database or fix its name in the DSN"
    if isinstance(exc, asyncpg.exceptions.TooManyConnectionsError):
        return "lower max_pool_size or raise the server's max_connections"
    if isinstance(exc, TimeoutError):
        return (f"no answer within connect_timeout={settings.connect_timeout} s; check the "
                "host, port, firewall and network")
    return "is PostgreSQL running and accepting TCP connections at that address?"


async def connect_once(settings: CacheSettings, dsn: str, application_name: str) -> Connection:
    """One connection, or CacheConnectionError naming the address (never the password)."""
    try:
        return await asyncpg.connect(
            dsn, timeout=settings.connect_timeout, command_timeout=settings.command_timeout,
            server_settings={"application_name": application_name})
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        address = describe_address(dsn)
        error = (CacheTooManyConnectionsError
                 if isinstance(exc, asyncpg.exceptions.TooManyConnectionsError)
                 else CacheConnectionError)
        raise error(
            f"could not connect to PostgreSQL at {address}: {type(exc).__name__}: {exc}",
            address=address, hint=connect_hint(exc, settings)) from exc


def cut(conn: Connection) -> None:
    """Close ``conn`` at once, even when the event loop it belongs to is closed (then
    asyncpg's terminate() cannot run, and the server must still see the session end)."""
    try:
        conn.terminate()
    except RuntimeError:
        transport = getattr(conn, "_transport", None)
        if transport is not None:
            cut_transport(transport)


def cut_transport(transport: asyncio.BaseTransport) -> None:
    """Abort ``transport``; if its event loop is closed, shut its socket down instead (the
    peer sees the end; the descriptor goes when the transport is collected)."""
    try:
        transport.abort()  # type: ignore[attr-defined]
    except RuntimeError:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def server_error(exc: BaseException, what: str) -> CacheServerError:
    """A statement rejected by the server, with its SQLSTATE, detail and hint."""
    return CacheServerError(
        f"PostgreSQL rejected {what}: {exc}", sqlstate=getattr(exc, "sqlstate", None),
        detail=getattr(exc, "detail", None), hint=getattr(exc, "hint", None))


def connection_error(exc: BaseException, address: str, settings: CacheSettings,
                     what: str) -> CacheConnectionError:
    """A connection that broke (or timed out) during ``what``."""
    if isinstance(exc, CacheConnectionError):
        return exc
    if isinstance(exc, TimeoutError) and settings.command_timeout is not None:
        return CacheConnectionError(
            f"{what}: PostgreSQL at {address} did not answer within command_timeout="
            f"{settings.command_timeout} s", address=address,
            hint="check the server's load and the network, or raise command_timeout")
    return CacheConnectionError(
        f"{what}: lost the connection to PostgreSQL at {address}: "
        f"{type(exc).__name__}: {exc}",
        address=address, hint="retry; if it persists, check the server and network")
