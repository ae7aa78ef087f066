"""The pgcache exception hierarchy: one root, one subclass per thing a user must do differently."""

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


class CacheStateError(PgCacheError):
    """The cache was used in a state that does not allow it ("cache is closed", ...)."""


class CacheConnectionError(PgCacheError):
    """PostgreSQL could not be reached, or a connection broke during an operation."""

    def __init__(self, message: str, *, address: str | None = None,
                 detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.address = address


class CacheServerError(PgCacheError):
    """PostgreSQL rejected a statement; ``sqlstate`` is the server's error code."""

    def __init__(self, message: str, *, sqlstate: str | None = None,
                 detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.sqlstate = sqlstate


class CacheSerializationError(PgCacheError, TypeError):
    """A value could not be serialized or a stored value could not be deserialized."""


class CacheArgumentError(PgCacheError, ValueError):
    """An argument of a cache call is invalid (a non-str key, a non-positive TTL, ...)."""
