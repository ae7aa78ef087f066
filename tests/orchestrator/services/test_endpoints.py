"""orchestrator.services.endpoints: a configured address that answers, but not in the protocol
it is meant to speak, fails the run within seconds, saying what answered there."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.commands import env_for, start, stderr_after, write_workload
from support.listeners import listener

from orchestrator.errors import ServiceError
from orchestrator.services import Services, free_port
from orchestrator.services.endpoints import check_postgres, check_valkey

# How long a run may go on after saying which servers it uses: the check's 2.5 s and a loaded
# machine's delays (it took 16 s, three connect timeouts, before the check).
FAILS_WITHIN_S = 8
TINY = {"processes": 1, "writers": 1, "readers": 1, "write_iterations": 5,
        "read_iterations": 5}


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _dsn_at(services: Services, port: int) -> str:
    """The session's PostgreSQL DSN, its credentials included, pointed at ``port``."""
    parts = urlsplit(services.postgres_dsn)
    return parts._replace(netloc=f"{parts.netloc.rsplit(':', 1)[0]}:{port}").geturl()


def _failed_run(tmp_path: Path, backend: str, env: dict[str, str]) -> tuple[str, float]:
    """Run a tiny workload of ``backend`` that must fail at the servers' check: its stderr
    and how long it went on after naming its servers."""
    path = write_workload(tmp_path, dict(TINY, backends=[backend]))
    proc = start(["run", str(path), "--results", str(tmp_path / "r.duckdb")], env)
    stderr, after = stderr_after(proc, "services: ")
    assert proc.returncode == 1, stderr[-3000:]
    assert after is not None, stderr[-3000:]
    assert "Traceback" not in stderr
    return stderr, after


class TestCrossedServers:
    """The session's servers, each at the other's address, are named for what they are."""

    def test_postgres_dsn_at_valkey(self, services: Services, tmp_path: Path) -> None:
        """POSTGRES_DSN at Valkey's port: exit 1 within seconds, the address without the
        password, and that Valkey answers there."""
        port = _port(services.valkey_url)
        env = env_for(services, tmp_path, POSTGRES_DSN=_dsn_at(services, port))
        stderr, after = _failed_run(tmp_path, "postgres-cache", env)
        assert (f"failed: PostgreSQL at 127.0.0.1:{port}/cache_proto (from $POSTGRES_DSN) is "
                "not PostgreSQL: it accepted the connection but sent nothing back in 2.5 s to "
                "PostgreSQL's first message; Valkey or Redis answers there; point "
                "$POSTGRES_DSN at a PostgreSQL server's port") in stderr
        password = urlsplit(services.postgres_dsn).password
        assert password and password not in stderr
        assert after < FAILS_WITHIN_S

    def test_valkey_url_at_postgres(self, services: Services, tmp_path: Path) -> None:
        """VALKEY_URL at PostgreSQL's port: exit 1 within seconds, and that PostgreSQL
        answers there."""
        port = _port(services.postgres_dsn)
        env = env_for(services, tmp_path, VALKEY_URL=f"redis://127.0.0.1:{port}/0")
        stderr, after = _failed_run(tmp_path, "valkey", env)
        assert (f"failed: Valkey at 127.0.0.1:{port} (from $VALKEY_URL) is not Valkey: it "
                "closed the connection without an answer to a PING; PostgreSQL answers there; "
                "point $VALKEY_URL at a Valkey server's port") in stderr
        assert after < FAILS_WITHIN_S


class TestOtherListeners:
    """A listener that is neither server fails the check, saying what it did."""

    def test_silent_listener(self) -> None:
        """A port that accepts and says nothing fails the check within seconds, said so."""
        with listener() as port:
            started = time.monotonic()
            with pytest.raises(ServiceError) as info:
                check_postgres(f"postgresql://u:secret@127.0.0.1:{port}/db", "$POSTGRES_DSN")
            took = time.monotonic() - started
        assert str(info.value) == (
            f"PostgreSQL at 127.0.0.1:{port}/db (from $POSTGRES_DSN) is not PostgreSQL: it "
            "accepted the connection but sent nothing back in 2.5 s to PostgreSQL's first "
            "message; point $POSTGRES_DSN at a PostgreSQL server's port")
        assert took < FAILS_WITHIN_S

    @pytest.mark.parametrize(("check", "address"), [
        (check_postgres, "postgresql://u:secret@127.0.0.1:{port}/db"),
        (check_valkey, "redis://:secret@127.0.0.1:{port}/0")], ids=["postgres", "valkey"])
    def test_http_server(self, check: Callable[[str, str], None], address: str) -> None:
        """An HTTP server's answer is quoted and named, the password left out."""
        reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
        with listener(reply) as port, pytest.raises(ServiceError) as info:
            check(address.format(port=port), "$ADDRESS")
        assert "it answered b'HTTP/1.1 400 Bad Request" in str(info.value)
        assert "an HTTP server answers there" in str(info.value)
        assert "secret" not in str(info.value)


class TestLeftToTheClients:
    """What the check does not judge is left to the clients, which say it at once."""

    def test_real_servers_pass(self, services: Services) -> None:
        """The session's servers pass the check."""
        check_postgres(services.postgres_dsn, "$POSTGRES_DSN")
        check_valkey(services.valkey_url, "$VALKEY_URL")

    def test_unjudged_addresses(self) -> None:
        """A port where nothing listens, a Unix socket, several hosts, TLS: no judgement."""
        dead = free_port()
        check_postgres(f"postgresql://u@127.0.0.1:{dead}/db", "$POSTGRES_DSN")
        check_valkey(f"redis://127.0.0.1:{dead}/0", "$VALKEY_URL")
        check_postgres("postgresql://u@/db?host=/tmp", "$POSTGRES_DSN")
        check_postgres("postgresql://u@h1:5432,h2:5432/db", "$POSTGRES_DSN")
        check_postgres("host=127.0.0.1 port=1", "$POSTGRES_DSN")
        check_valkey(f"rediss://127.0.0.1:{dead}/0", "$VALKEY_URL")
        check_valkey("unix:///tmp/valkey.sock", "$VALKEY_URL")
