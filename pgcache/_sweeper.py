"""The sweeper: deletes expired rows (and delete tombstones) in bounded batches.

Reads never return an expired row, so sweeping is only about space. Each batch is one
``DELETE ... WHERE key_hash IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)``: concurrent
sweepers of several instances skip each other's rows instead of waiting, and a batch holds
its row locks only for its own short transaction. Expired rows need no notification: no
instance keeps a copy past the row's own expiry.
"""

from __future__ import annotations

import asyncio
import logging

from ._db import Database
from ._errors import CacheArgumentError, PgCacheError
from ._schema import Statements

log = logging.getLogger("pgcache")


class Sweeper:
    """``cleanup_expired`` and the background task that calls it."""

    __slots__ = ("_batch_size", "_db", "_interval", "_sql", "_task")

    def __init__(self, db: Database, sql: Statements, *, interval: float,
                 batch_size: int) -> None:
        self._db = db
        self._sql = sql
        self._interval = interval
        self._batch_size = batch_size
        self._task: asyncio.Task[None] | None = None

    async def cleanup_expired(self, batch_size: int | None = None) -> int:
        """Delete expired rows in batches of ``batch_size``; how many went."""
        size = self._batch_size if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise CacheArgumentError(f"batch_size must be a positive integer, got {size!r}")
        total = 0
        while True:
            status: str = await self._db.run("cleanup_expired", "execute", self._sql.sweep, size)
            removed = int(status.rsplit(" ", 1)[-1])
            total += removed
            if removed < size:
                return total

    def start(self) -> None:
        if self._interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._forever(),
                                                                name="pgcache-sweeper")

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                removed = await self.cleanup_expired()
            except PgCacheError as exc:
                log.warning("pgcache sweep failed (retrying in %s s): %s", self._interval, exc)
                continue
            if removed:
                log.debug("pgcache swept %d expired rows", removed)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
