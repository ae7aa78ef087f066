"""The pgcache exception hierarchy: one root, one subclass per thing a user must do differently.

Where postgres-cache 0.1.1 raised a built-in exception in the same situation, the subclass
also derives from it, so existing ``except ValueError`` / ``except RuntimeError`` clauses still
catch what they caught before.
"""

from __future__ import annotations


class PgCacheError(Exception):
    """Root of every pgcache error; ``detail``/``hint`` say what happened and what to do."""

    def __init__(self, message: str, *, detail: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint

    def __str__(self) -> str:
        parts = [self.message]
        if self.detail:
            parts.append(f"DETAIL: {self.detail}")
        if self.hint:
            parts.append(f"HINT: {self.hint}")
        return "\n".join(parts)


class CacheConfigError(PgCacheError, ValueError):
    """A setting is invalid; the message names the field."""

    def __init__(self, field: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"CacheSettings.{field}: {message}", hint=hint)
        self.field = field


class CacheArgumentError(PgCacheError, ValueError):
    """An argument of a cache call is invalid (a non-str key, a non-positive TTL, ...)."""


class CacheStateError(PgCacheError, RuntimeError):
    """The cache was used in a state that does not allow it ("cache is closed", ...)."""


class CacheConnectionError(PgCacheError, ConnectionError):
    """PostgreSQL could not be reached, or a connection broke during an operation.

    Also a ``ConnectionError`` (an ``OSError``), which is what the driver raised in
    postgres-cache 0.1.1 when the server could not be reached.
    """

    def __init__(self, message: str, *, address: str | None = None,
                 detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.address = address


class CacheTooManyConnectionsError(CacheConnectionError, RuntimeError):
    """PostgreSQL refused a connection: too many clients (a ``RuntimeError`` too, as in
    postgres-cache 0.1.1)."""


class CacheServerError(PgCacheError):
    """PostgreSQL rejected a statement; ``sqlstate`` is the server's error code."""

    def __init__(self, message: str, *, sqlstate: str | None = None,
                 detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.sqlstate = sqlstate


class CacheSerializationError(PgCacheError, TypeError):
    """A value could not be serialized, or a stored value could not be read back (``key``:
    the key whose row it is, when one was being read)."""

    def __init__(self, message: str, *, key: str | None = None, detail: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.key = key


class CacheLockTimeoutError(PgCacheError, TimeoutError):
    """``get_or_set`` waited ``lock_timeout_seconds`` for another instance loading the key."""

    def __init__(self, message: str, *, key: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key = key


class CacheLoaderTimeoutError(PgCacheError, TimeoutError):
    """A ``get_or_set`` loader did not finish within its timeout; nothing was stored."""

    def __init__(self, message: str, *, key: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key = key
