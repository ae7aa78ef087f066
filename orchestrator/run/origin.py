"""The origin behind ``get_or_set``: what a loader costs when the cache misses.

A workload whose readers use ``get_or_set`` (``read_op: get_or_set``) names its loader's cost
(:class:`~orchestrator.workload.model.LoaderSpec`): ``sleep`` waits ``ms`` in the worker;
``query`` asks PostgreSQL, the origin, for ``rows`` rows of the table ``ORIGIN_TABLE`` (and
sleeps ``ms`` there with ``pg_sleep`` when ``ms`` > 0), so that N loaders running at once
load the origin N times over, as a stampede does. The parent creates and fills the table
before each pass (:func:`prepare_origin`); each worker reaches it through an
:class:`Origin`, a small connection pool opened on first use.

The origin is the same for every backend: the worker connects to it without the in-process
network emulation (whose delays belong to the cache's own round trips), so its cost is
exactly the loader's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from orchestrator.workload.model import LoaderSpec

__all__ = ["ORIGIN_ROW_BYTES", "ORIGIN_TABLE", "Origin", "prepare_origin"]

ORIGIN_TABLE = "pgcache_bench_origin"
ORIGIN_ROW_BYTES = 100
_QUERY = (f"SELECT (SELECT sum(length(payload)) FROM {ORIGIN_TABLE} WHERE id <= $1), "
          "pg_sleep($2)")


async def prepare_origin(dsn: str, rows: int) -> None:
    """Create the origin table (if missing) with at least ``rows`` rows."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {ORIGIN_TABLE} "
                           "(id integer PRIMARY KEY, payload text NOT NULL)")
        await conn.execute(
            f"INSERT INTO {ORIGIN_TABLE} SELECT i, repeat('x', {ORIGIN_ROW_BYTES}) "
            "FROM generate_series(1, $1) AS i ON CONFLICT (id) DO NOTHING", rows)
    finally:
        await conn.close()


class Origin:
    """One worker's way to the origin: :meth:`load` costs what the loader spec says."""

    def __init__(self, spec: LoaderSpec, dsn: str, max_connections: int) -> None:
        self.spec = spec
        self._dsn = dsn
        self._max = max(1, max_connections)
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def load(self) -> None:
        """Pay one loader execution's cost."""
        spec = self.spec
        if spec.type == "sleep":
            await asyncio.sleep(spec.ms / 1000)
            return
        pool = self._pool or await self._open()
        await pool.fetchval(_QUERY, spec.rows, spec.ms / 1000)

    async def _open(self) -> Any:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self._dsn, min_size=1,
                                                       max_size=self._max)
            return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
