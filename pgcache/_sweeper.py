"""The sweeper: deletes expired rows, and keeps a bounded table within its bounds.

Expired rows (and delete tombstones): each batch is one ``DELETE ... WHERE key_hash IN
(SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)``, so concurrent sweepers of several instances
skip each other's rows instead of waiting. Reads never return an expired row and no instance
keeps a copy past its row's expiry, so sweeping needs no notification.

Bounds (``max_entries``, ``max_bytes``): when a table is over a bound, the oldest-written
rows go until it is at 90% of the bound (the slack keeps trims rare). A trim round:

1. runs only in the instance that gets the table's trim lock (tried, never waited for: the
   other instances' sweepers skip the round instead of queueing behind it);
2. counts the rows (exactly, at least every second; in between, the last count plus this
   instance's own new rows since), and reads a sample of about 2 000 rows (``TABLESAMPLE
   SYSTEM``) for their versions and sizes; the table's bytes are estimated as rows times
   the sample's average stored size of key and value plus 48 bytes of row overhead
   (indexes and dead space not counted);
3. picks from the sample's versions the cutoff below which the excess lies (versions grow
   with every write, so they order rows by when they were last written), and deletes every
   row at or below it, up to 50 000 per statement, skipping rows that another session holds;
4. announces the cutoff: every instance drops its copies older than it, and stops every
   operation in flight from installing anything older (one notification per round, not one
   per key).

Nothing is touched on read. A round runs after every 2.5% of the bound of this instance's
own new rows, at least every second while it inserts, and at every sweep; a round that finds
the table within its bounds (by the count, or the last count plus own new rows since) reads
nothing else.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from ._db import Database
from ._errors import CacheArgumentError, PgCacheError
from ._locks import AdvisoryLocks
from ._schema import Statements
from ._settings import CacheSettings
from ._stats import Counters

log = logging.getLogger("pgcache")

_monotonic = time.monotonic
TRIM_TO = 0.9  # a trim leaves the table at this fraction of its bound
CHECK_FRACTION = 0.025  # a round after this fraction of the bound of own new rows
SAMPLE_ROWS = 2000
# Rows a trim deletes per statement. Each statement scans the table from its start (there is
# no index on versions), so a round should need one: a round deletes about an eighth of the
# bound, so up to 400 000 rows this is one statement. The row locks it holds (of old rows,
# which writers seldom touch) last tens of milliseconds. 5 000 rows per statement took 3-4
# statements per round at 100 000 rows and cost 5-10% of the write throughput more.
TRIM_BATCH = 50000
ROW_OVERHEAD_BYTES = 48  # tuple header, key hash, kind, version, expiry, line pointer
_CHECK_EVERY_S = 1.0  # while this instance inserts into a bounded table
_COUNT_EVERY_S = 1.0  # an exact count at least this often
_MIN_CHECK_ROWS = 64


def trim_lock_key(table: str) -> int:
    """The advisory-lock key of the right to trim ``table`` (64-bit, signed)."""
    digest = hashlib.blake2b(f"pgcache-trim:{table}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Sweeper:
    """``cleanup_expired``, ``trim``, and the background task that calls them."""

    def __init__(self, db: Database, sql: Statements, settings: CacheSettings, table: str,
                 locks: AdvisoryLocks, counters: Counters,
                 floor: Callable[[int], None]) -> None:
        self._db = db
        self._sql = sql
        self._settings = settings
        self._locks = locks
        self._lock_key = trim_lock_key(table)
        self._counters = counters
        # Announces a trim's cutoff (here and to every other instance).
        self._floor = floor
        self._bounded = settings.max_entries is not None or settings.max_bytes is not None
        # A round after every CHECK_FRACTION of the bound of own new rows (of the row bound,
        # or of the rows the byte bound allows by the last sample's row size).
        self._check_rows = _MIN_CHECK_ROWS
        if settings.max_entries is not None:
            self._check_rows = max(_MIN_CHECK_ROWS, int(settings.max_entries * CHECK_FRACTION))
        self._rows_until_check = self._check_rows
        self._row_bytes: float | None = None
        self._inserted_since_check = False
        self._inserted_rows = 0
        self._count: int | None = None  # rows after the last round (None: unknown)
        self._counted_at = 0.0
        self._wake = asyncio.Event()
        self._trimming = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- expired rows -----------------------------------------------------------------------

    async def cleanup_expired(self, batch_size: int | None = None) -> int:
        """Delete expired rows in batches of ``batch_size``; how many went."""
        size = self._settings.sweep_batch_size if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise CacheArgumentError(f"batch_size must be a positive integer, got {size!r}")
        total = 0
        while True:
            status: str = await self._db.run("cleanup_expired", "execute", self._sql.sweep, size)
            removed = int(status.rsplit(" ", 1)[-1])
            total += removed
            if removed < size:
                return total

    # -- bounds -----------------------------------------------------------------------------

    def inserted(self, rows: int) -> None:
        """This instance added ``rows`` new rows: check when due."""
        self._inserted_since_check = True
        self._inserted_rows += rows
        self._rows_until_check -= rows
        if self._rows_until_check <= 0:
            self._rows_until_check = self._check_rows
            self._wake.set()

    async def trim(self, *, exact: bool = True) -> int:
        """One trim round (see the module docstring); how many rows it deleted. ``exact``
        counts the rows whatever the last count (the background rounds pass False)."""
        self._inserted_since_check = False
        if not self._bounded:
            return 0
        # One round at a time in this instance (advisory locks are re-entrant within a
        # session, so this one waits its turn), and in the whole cluster (the advisory lock,
        # tried: another instance's round is never waited for).
        async with self._trimming:
            if not await self._locks.try_lock(self._lock_key, "trim"):
                return 0
            try:
                return await self._trim_locked(exact)
            finally:
                await self._locks.unlock(self._lock_key, "trim")

    async def _trim_locked(self, exact: bool) -> int:
        db, sql = self._db, self._sql
        # Counting is a scan of the table; between exact counts (at most a second apart)
        # the last count plus this instance's own new rows since is close enough.
        now = _monotonic()
        if exact or self._count is None or now - self._counted_at >= _COUNT_EVERY_S:
            count: int = await db.run("trim", "fetchval", sql.count_rows, idempotent=True)
            self._counted_at = now
        else:
            count = self._count + self._inserted_rows
        self._inserted_rows = 0
        self._count = count
        if not self._over(count, self._row_bytes):
            return 0
        percent = min(100.0, 100.0 * SAMPLE_ROWS / max(count, 1))
        sample = await db.run("trim", "fetch", sql.sample_rows, percent, idempotent=True)
        if not sample:
            return 0
        self._row_bytes = ROW_OVERHEAD_BYTES + sum(r[1] for r in sample) / len(sample)
        if self._settings.max_entries is None:
            assert self._settings.max_bytes is not None
            self._check_rows = max(_MIN_CHECK_ROWS, int(
                self._settings.max_bytes / self._row_bytes * CHECK_FRACTION))
        keep = self._keep(self._row_bytes)
        if count <= keep:
            return 0
        versions = sorted(r[0] for r in sample)
        position = math.ceil((count - keep) / count * len(versions)) - 1
        cutoff = versions[max(0, min(position, len(versions) - 1))]
        deleted = await self._delete_through(cutoff)
        if deleted:
            self._counters.trimmed += deleted
            self._floor(cutoff + 1)
            log.debug("pgcache trimmed %d rows written at or before version %d",
                      deleted, cutoff)
        self._count = count - deleted
        return deleted

    def _over(self, count: int, row_bytes: float | None) -> bool:
        """Whether ``count`` rows (of ``row_bytes`` each, if known) exceed a bound."""
        settings = self._settings
        if settings.max_entries is not None and count > settings.max_entries:
            return True
        return settings.max_bytes is not None and (
            row_bytes is None or count * row_bytes > settings.max_bytes)

    def _keep(self, row_bytes: float) -> float:
        """How many rows a trim leaves: TRIM_TO of the tightest bound."""
        settings = self._settings
        keep = math.inf
        if settings.max_entries is not None:
            keep = settings.max_entries * TRIM_TO
        if settings.max_bytes is not None:
            keep = min(keep, settings.max_bytes * TRIM_TO / row_bytes)
        return keep

    async def _background_trim(self) -> int:
        return await self.trim(exact=False)

    async def _delete_through(self, cutoff: int) -> int:
        batch = TRIM_BATCH
        deleted = 0
        while True:
            status: str = await self._db.run("trim", "execute", self._sql.trim_batch, cutoff,
                                             batch)
            removed = int(status.rsplit(" ", 1)[-1])
            deleted += removed
            if removed < batch:
                return deleted

    # -- the background task ----------------------------------------------------------------

    def start(self) -> None:
        if self._settings.sweep_interval_seconds > 0 or self._bounded:
            self._task = asyncio.get_running_loop().create_task(self._forever(),
                                                                name="pgcache-sweeper")

    async def _forever(self) -> None:
        interval = self._settings.sweep_interval_seconds
        next_sweep = _monotonic() + interval if interval > 0 else math.inf
        while True:
            wait = next_sweep - _monotonic()
            if self._bounded and self._inserted_since_check:
                wait = min(wait, _CHECK_EVERY_S)
            if wait > 0 and not self._wake.is_set():
                try:
                    async with asyncio.timeout(min(wait, _CHECK_EVERY_S)):
                        await self._wake.wait()
                except TimeoutError:
                    if _monotonic() < next_sweep and not self._inserted_since_check:
                        continue
            self._wake.clear()
            if self._bounded:
                await self._guarded("trim", self._background_trim)
            if _monotonic() >= next_sweep:
                next_sweep = _monotonic() + interval
                await self._guarded("sweep", self.cleanup_expired)

    async def _guarded(self, what: str, job: Callable[[], Awaitable[int]]) -> None:
        try:
            await job()
        except PgCacheError as exc:
            log.warning("pgcache %s failed (retrying later): %s", what, exc)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

