"""Tests that share a fixture wider than one test run on one pytest-xdist worker (a pytest
plugin of tests/conftest.py).

A module-scoped fixture (a suite or a run a module's tests share) is then set up once, not
once per worker, and the session's Ray cluster starts on one worker only. Tests that share
any such fixture, directly or through another test, form one group. The groups follow the
fixtures, not the test files, so a test moved to another file stays with its fixture.

pytest-xdist's own ``--dist loadgroup`` reads ``xdist_group`` marks by appending the group
to each test's node id, which pytest 9.2 no longer lets a plugin change (``Node.nodeid`` is
built from ``Node._id``; xdist 3.8 sets ``_nodeid``, which nothing reads), so its groups
are silently lost. Here each worker writes the groups it collected (every ``xdist_group``
mark: ours and any written in a test) to a file, and the controller's scheduler, xdist's
load-scope one with groups for scopes, reads them: only public hooks of pytest and xdist.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

# Session fixtures each pytest-xdist worker has its own of: its own embedded servers (a few
# seconds to start, on free ports, in a data folder of its own). They bind no tests together.
PER_WORKER_FIXTURES = frozenset({"services", "postgres_dsn", "valkey_url"})
TESTS_ROOT = Path(__file__).resolve().parent.parent
# Where pytest's and its plugins' own fixtures live (event loops, hypothesis's): not ours.
_INSTALLED = tuple(Path(sysconfig.get_path(name)).resolve()
                   for name in ("purelib", "platlib", "stdlib"))
_GROUPS_DIR = pytest.StashKey[Path]()
_INPUT_KEY = "pgcache_groups_dir"


def shared_fixtures(item: pytest.Item) -> list[str]:
    """The fixtures of ours, other than per test, that ``item`` uses (directly or through
    other fixtures): a module's quick-suite run, a class's servers, the Ray cluster. Each is
    named with the file that defines it, so two modules' fixtures of one name stay apart."""
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
        if not any(place in source.parents for place in _INSTALLED):
            where = (source.relative_to(TESTS_ROOT) if TESTS_ROOT in source.parents
                     else source)
            keys.append(f"{name}({where})")
    return keys


def group_items(items: list[pytest.Item]) -> None:
    """Mark every test that shares a fixture with ``xdist_group(NAME)``, NAME the same for
    all tests connected through shared fixtures (and the same in every worker)."""
    parent: dict[str, str] = {}  # union-find over fixture keys, in order of first use

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    shared = [(item, shared_fixtures(item)) for item in items]
    for _, keys in shared:
        for key in keys:
            parent.setdefault(key, key)
        for key in keys[1:]:
            first, other = root(keys[0]), root(key)
            if first != other:  # the key used first names the group
                earlier, later = sorted((first, other), key=list(parent).index)
                parent[later] = earlier
    for item, keys in shared:
        if keys:
            item.add_marker(pytest.mark.xdist_group(root(keys[0])))


def _group_of(item: pytest.Item) -> str | None:
    names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                    for mark in item.iter_markers("xdist_group")})
    return "_".join(names) if names else None


@pytest.hookimpl(trylast=True)  # after -k/-m and any other hook changed the list
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    group_items(items)
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is None or _INPUT_KEY not in workerinput:
        return
    groups = {item.nodeid: group for item in items if (group := _group_of(item))}
    target = Path(workerinput[_INPUT_KEY]) / f"{workerinput['workerid']}.json"
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(groups))
    partial.replace(target)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        config.stash[_GROUPS_DIR] = Path(tempfile.mkdtemp(prefix="pgcache-xdist-groups-"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _GROUPS_DIR in config.stash:
        shutil.rmtree(config.stash[_GROUPS_DIR], ignore_errors=True)


def pytest_configure_node(node: Any) -> None:
    """Tell each worker where to write its groups."""
    node.workerinput[_INPUT_KEY] = str(node.config.stash[_GROUPS_DIR])


class FixtureGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """xdist's load-scope scheduling with the workers' groups for scopes: a group's tests
    go to one worker together, every other test on its own (what ``loadgroup`` means)."""

    def __init__(self, config: pytest.Config, log: Any, groups_dir: Path) -> None:
        super().__init__(config, log)
        self._groups_dir = groups_dir
        self._groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:  # first asked once every worker has collected
            files = sorted(self._groups_dir.glob("*.json"))
            assert files, f"no worker wrote its test groups to {self._groups_dir}"
            self._groups = json.loads(files[0].read_text())
        return self._groups.get(nodeid, nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    return FixtureGroupScheduling(config, log, config.stash[_GROUPS_DIR])


__all__ = ["FixtureGroupScheduling", "group_items", "shared_fixtures"]
