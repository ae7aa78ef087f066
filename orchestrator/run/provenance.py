"""Provenance of a run: the versions and the commit it ran with (``runs.versions``,
``runs.git_commit``), so that two runs can be told apart later."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis


def git_commit() -> str | None:
    """The checkout's commit, ``+dirty`` with uncommitted changes; None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


async def versions(postgres_dsn: str, valkey_url: str) -> dict[str, Any]:
    """Python, package, PostgreSQL and Valkey versions (servers only when given).

    Versions are provenance, not measurements: a server that does not answer here is left
    out (the pass that needs it reports the failure), so the suppressions below lose nothing.
    """
    versions: dict[str, Any] = {"python": sys.version.split()[0]}
    packages = {}
    for name in ("pgcache", "asyncpg", "redis", "hiredis", "valkey", "structlog", "duckdb",
                 "uvloop", "PyYAML", "toxiproxy-python"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    versions["packages"] = packages
    if postgres_dsn:
        with contextlib.suppress(Exception):  # provenance only: see the docstring
            conn = await asyncio.wait_for(asyncpg.connect(postgres_dsn), 10)
            try:
                versions["postgresql"] = await conn.fetchval("SHOW server_version")
            finally:
                await conn.close()
    if valkey_url:
        with contextlib.suppress(Exception):  # provenance only: see the docstring
            client = Redis.from_url(valkey_url)
            try:
                info = await asyncio.wait_for(client.info("server"), 10)
                versions["valkey"] = info.get("valkey_version") or info.get("redis_version")
            finally:
                await client.aclose()
    return versions
