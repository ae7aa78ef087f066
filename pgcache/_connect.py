"""Opening connections and turning asyncpg's errors into pgcache's."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import asyncpg

from ._errors import CacheConnectionError, CacheServerError
from ._settings import CacheSettings

Connection = Any  # asyncpg.Connection; asyncpg ships no type information

# Errors that mean "the connection or the server is gone", as opposed to a rejected statement.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
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
    except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
        address = describe_address(dsn)
        raise CacheConnectionError(
            f"could not connect to PostgreSQL at {address}: {type(exc).__name__}: {exc}",
            address=address, hint=connect_hint(exc, settings)) from exc


def server_error(exc: asyncpg.PostgresError, what: str) -> CacheServerError:
    """A statement rejected by the server, with its SQLSTATE, detail and hint."""
    return CacheServerError(
        f"PostgreSQL rejected {what}: {exc}", sqlstate=getattr(exc, "sqlstate", None),
        detail=getattr(exc, "detail", None), hint=getattr(exc, "hint", None))
