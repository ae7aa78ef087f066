"""Fixtures of pgcache's tests: settings of a test's own against the session's PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from support.caches import settings_for

from pgcache import CacheSettings, PostgresCache


@pytest.fixture
async def settings(postgres_dsn: str) -> AsyncIterator[CacheSettings]:
    """Settings with a table prefix and channel of this test's own, schema created."""
    value = settings_for(postgres_dsn)
    await PostgresCache.init_db(value)
    yield value
    await PostgresCache.drop_db(value)


@pytest.fixture
def restart_postgres(services: Any) -> Callable[[str], None]:
    """Restart the session's embedded PostgreSQL: ``restart("fast")`` or ``("immediate")``
    (pg_ctl's shutdown modes). Skips the test when the server is external."""
    server = services.postgres
    if server is None:
        pytest.skip("POSTGRES_DSN names an external server this test cannot restart")
    restart: Callable[[str], None] = server.restart
    return restart
