"""orchestrator.services.embedded: the servers the tests and the orchestrator run on."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from orchestrator.services import EmbeddedPostgres, EmbeddedValkey, Services


class TestSessionServers:
    async def test_postgres_is_18_and_reachable_over_tcp(self, services: Services) -> None:
        """The session's PostgreSQL answers on 127.0.0.1 and is major version 18."""
        conn = await asyncpg.connect(services.postgres_dsn)
        try:
            version = await conn.fetchval("SHOW server_version_num")
        finally:
            await conn.close()
        if services.postgres is not None:
            assert "@127.0.0.1:" in services.postgres_dsn
            assert int(version) // 10000 == 18

    async def test_valkey_is_9_and_reachable(self, services: Services) -> None:
        """The session's Valkey answers PING and reports major version 9 when embedded."""
        client = aioredis.from_url(services.valkey_url)
        try:
            assert await client.ping()
            info = await client.info("server")
        finally:
            await client.aclose()
        if services.valkey is not None:
            assert str(info.get("valkey_version", "")).startswith("9.")


class TestLifecycle:
    def test_postgres_stops_without_orphans_and_restarts_on_same_port(
        self, tmp_path: Path
    ) -> None:
        """A stopped server's process is gone; a restart reuses port and data."""
        if os.environ.get("POSTGRES_DSN"):
            pytest.skip("POSTGRES_DSN names an external server; embedded lifecycle not used")
        pg = EmbeddedPostgres(tmp_path / "pg")
        pg.start()
        pid, port = pg.pid, pg.port
        assert pid is not None
        pg.restart()
        assert pg.port == port and pg.pid != pid
        new_pid = pg.pid
        assert new_pid is not None
        pg.stop()
        for p in (pid, new_pid):
            assert not Path(f"/proc/{p}").exists() or "zombie" in Path(
                f"/proc/{p}/status").read_text().lower()

    def test_valkey_stops_without_orphans(self, tmp_path: Path) -> None:
        """valkey-server exits when stopped."""
        if os.environ.get("VALKEY_URL"):
            pytest.skip("VALKEY_URL names an external server; embedded lifecycle not used")
        vk = EmbeddedValkey(tmp_path / "vk")
        vk.start()
        pid = vk.pid
        vk.stop()
        assert pid is not None and not Path(f"/proc/{pid}").exists()
