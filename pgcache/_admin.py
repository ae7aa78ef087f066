"""``Admin``: the calls that manage an instance's table rather than serve requests (the
schema, sweeping expired rows, trimming to the bounds, emptying), apart from the per-request
API of ``PostgresCache``; reached as ``cache.admin``."""

from __future__ import annotations

from collections.abc import Callable

from ._coherence import Coherence
from ._errors import CacheStateError
from ._migrations import apply_migrations, drop_schema
from ._parts import Parts
from ._settings import CacheSettings
from ._sweeper import Sweeper


class Admin:
    """Administration of one instance's cache table."""

    __slots__ = ("_coherence", "_parts")

    def __init__(self, parts: Callable[[], Parts], coherence: Coherence) -> None:
        # The instance's open parts, or its "not connected"/"closed" error raised.
        self._parts = parts
        self._coherence = coherence

    @staticmethod
    async def init_db(settings: CacheSettings) -> int:
        """Create or upgrade the cache's tables (idempotent, safe to run concurrently).

        Returns the schema version now in place. The table's persistence follows
        ``settings.logged`` (an existing table is altered if it differs).
        """
        return await apply_migrations(settings)

    @staticmethod
    async def drop_db(settings: CacheSettings) -> None:
        """Drop the cache's tables (for tests and teardown)."""
        await drop_schema(settings)

    async def cleanup_expired(self, batch_size: int | None = None) -> int:
        """Delete expired rows in batches of ``batch_size`` (default sweep_batch_size)."""
        return await self._sweeper(self._parts()).cleanup_expired(batch_size)

    async def trim(self) -> int:
        """Bring the table within ``max_entries`` / ``max_bytes`` now (the sweeper does this
        by itself); how many rows were deleted (0 if within bounds, or if another instance
        is trimming right now)."""
        return await self._sweeper(self._parts()).trim()

    async def truncate(self) -> None:
        """Empty the table and every instance's local cache."""
        writer = self._parts().writer
        if writer is None:
            raise CacheStateError("cache is not connected", hint="a pgcache bug")
        await writer.truncate()
        self._coherence.flush()

    @staticmethod
    def _sweeper(parts: Parts) -> Sweeper:
        if parts.sweeper is None:
            raise CacheStateError("cache is not connected", hint="a pgcache bug")
        return parts.sweeper
