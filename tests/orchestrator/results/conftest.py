"""The results tests' shared fixture: an in-memory results database."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest
from support.results_history import create_schema


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory results database with the orchestrator's tables (empty) and views."""
    c = duckdb.connect()
    create_schema(c)
    yield c
    c.close()
