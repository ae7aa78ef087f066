"""orchestrator.redaction: passwords replaced wherever they appear, nothing else touched."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import duckdb
import pytest
import redis
import structlog
from support.commands import cli, cli_here, env_for_addresses, write_workload
from support.leaks import PUNCTUATION, CommandLines, database_texts, file_texts, leaks_in, needles
from support.repo import ROOT

from orchestrator import redaction
from orchestrator.redaction import MASK, learn_secrets, redact, redact_data
from orchestrator.results.logs import BufferedStream, configure_events
from orchestrator.results.store import RunRecord
from orchestrator.run.load import error_text
from orchestrator.services import Services


class TestRedact:
    """redact() finds passwords in URLs, key=value pairs and YAML/JSON pairs."""

    @pytest.mark.parametrize(("text", "expected"), [
        ("postgresql://cache_user:cache_pass@127.0.0.1:5432/cache_proto",
         "postgresql://cache_user:***@127.0.0.1:5432/cache_proto"),
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("at postgresql://u:p@ss@h1:5432,h2:5433/db?x=1", "at postgresql://u:***@h1:5432,h2:5433/db?x=1"),
        ("host=h password=abc dbname=x", "host=h password=*** dbname=x"),
        ("postgresql://u@h/db?sslpassword=x&a=b", "postgresql://u@h/db?sslpassword=***&a=b"),
        ("options: {password: s3cret, db: 1}", "options: {password: ***, db: 1}"),
        ("  password: 'a b'\n  x: 1", "  password: ***\n  x: 1"),
    ])
    def test_passwords(self, text: str, expected: str) -> None:
        """Each form of password is masked, the rest of the text kept."""
        assert redact(text) == expected

    @pytest.mark.parametrize("text", [
        "redis://127.0.0.1:6379/0", "postgresql://user@host/db", "mail me@example.org",
        "time: 12:30", "passwords_seen: 3", "ts_ns=123", "",
    ])
    def test_no_password_no_change(self, text: str) -> None:
        """Text without a password comes back unchanged (user names included)."""
        assert redact(text) == text

    def test_data(self) -> None:
        """Nested data: strings redacted, password-named keys masked, JSON shape kept."""
        data = {"dsn": "redis://:p@h", "options": {"password": "x", "db": 1},
                "list": ("postgresql://a:b@c/d", 3)}
        assert redact_data(data) == {"dsn": f"redis://:{MASK}@h",
                                     "options": {"password": MASK, "db": 1},
                                     "list": (f"postgresql://a:{MASK}@c/d", 3)}


@pytest.fixture
def forgetful(monkeypatch: pytest.MonkeyPatch) -> None:
    """The passwords this process learns in the test are forgotten after it."""
    monkeypatch.setattr(redaction, "_known", set())
    monkeypatch.setattr(redaction, "_known_pattern", None)


@pytest.mark.usefixtures("forgetful")
class TestKnownPasswords:
    """learn_secrets(): passwords of the addresses and data a process is given are masked in
    any text, in every encoding."""

    def test_every_form(self) -> None:
        """A raw punctuation password, learnt from a URL, is masked as given, percent-encoded,
        JSON-, YAML- and libpq-escaped, in text no pattern understands."""
        secret = f"a{PUNCTUATION}z"
        learn_secrets(f"postgresql://u:{urllib.parse.quote(secret, safe='')}@h/db")
        for form in (secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1],
                     secret.replace("'", "''"), secret.replace("\\", "\\\\").replace("'", "\\'")):
            assert redact(f"port {form} is bad") == f"port {MASK} is bad"

    def test_sources(self) -> None:
        """Passwords come from a raw URL (up to its last @), a libpq keyword DSN, a query
        parameter and password-named keys of nested data; user names are kept."""
        learn_secrets("redis://me:r/a#w@1@h:6379/0", "host=h password='k\\'w d' user=me",
                      {"backends": [{"options": {"password": "opt-pw"}}]},
                      "postgresql://h/db?sslpassword=qpw1")
        assert redact("r/a#w@1 k'w d opt-pw qpw1 me") == f"{MASK} {MASK} {MASK} {MASK} me"

    def test_not_inside_words(self) -> None:
        """A password that is a common word is masked alone, never inside a longer name."""
        learn_secrets("postgresql://postgres:postgres@h/db")
        assert redact("postgres-cache: postgres") == f"postgres-cache: {MASK}"

    def test_short_ones_left_to_patterns(self) -> None:
        """A password shorter than MIN_KNOWN is not masked everywhere (only by the
        patterns)."""
        learn_secrets("redis://:abc@h")
        assert redact("abc redis://:abc@h") == f"abc redis://:{MASK}@h"


class TestOutputPaths:
    """The places that write text use redact(): error texts, events, the run's record."""

    def test_error_text(self) -> None:
        """A recorded error naming a URL keeps the URL, not its password."""
        text = error_text(ConnectionError("cannot reach redis://:hunter2@h:6379/0"))
        assert text == "ConnectionError: cannot reach redis://:***@h:6379/0"

    def test_events(self, tmp_path: Path) -> None:
        """An event's fields (nested too) are redacted before they are written."""
        stream = BufferedStream(tmp_path / "e.jsonl")
        try:
            configure_events(stream, {"run_id": "r"})
            structlog.get_logger().info("x", dsn="postgresql://u:hunter2@h/db",
                                        options={"password": "hunter2", "db": 1})
            stream.close()
        finally:
            structlog.reset_defaults()
        text = (tmp_path / "e.jsonl").read_text()
        assert "hunter2" not in text
        event = json.loads(text)
        assert event["data"] == {"dsn": "postgresql://u:***@h/db",
                                 "options": {"password": "***", "db": 1}}

    def test_run_record(self) -> None:
        """The run's record (run.json, the runs row) carries no password."""
        record = RunRecord(run_id="r", workload="w", workload_yaml="# postgresql://u:pw1@h/d",
                           seed=1, started_at=dt.datetime(2025, 1, 1), host="h",
                           versions={}, git_commit=None,
                           network={"toxiproxy_url": "http://u:pw2@t:8474"})
        text = record.to_json()
        assert "pw1" not in text and "pw2" not in text
        assert RunRecord.from_json(text).network == {"toxiproxy_url": "http://u:***@t:8474"}


# A role and a Valkey user whose passwords hold every printable punctuation character.
PG_ROLE, PG_DATABASE = "pgcache_pw_role", "pgcache_pw_db"
PG_PASSWORD = f"Pg{PUNCTUATION}pgpw"
VK_USER = "pgcache_pw_user"
VK_PASSWORD = f"Vk{PUNCTUATION}vkpw"
# In a URL of the workload itself (Toxiproxy's, unused with network mode none).
WORKLOAD_PASSWORD = f"Wl{PUNCTUATION}wlpw"
LOOKED_FOR = needles(PG_PASSWORD) | needles(VK_PASSWORD) | needles(WORKLOAD_PASSWORD)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.fixture(scope="module")
def password_servers(services: Services) -> Iterator[tuple[str, int, int]]:
    """The session's servers, with a PostgreSQL role that must log in with its password
    (scram-sha-256 for it alone, in a database of its own) and a Valkey ACL user; yields
    (host, PostgreSQL port, Valkey port)."""
    if services.postgres is None or services.valkey is None:
        pytest.skip("needs the embedded servers: the test changes pg_hba.conf")
    hba = services.postgres.data_dir / "pgdata" / "pg_hba.conf"
    saved = hba.read_text()
    host, pg_port, vk_port = "127.0.0.1", services.postgres.port, services.valkey.port

    async def admin(*statements: str) -> None:
        conn = await asyncpg.connect(services.postgres_dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f"DROP DATABASE IF EXISTS {PG_DATABASE}", f"DROP ROLE IF EXISTS {PG_ROLE}",
                      f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD {_literal(PG_PASSWORD)}",
                      f"CREATE DATABASE {PG_DATABASE} OWNER {PG_ROLE}"))
    hba.write_text(f"host all {PG_ROLE} {host}/32 scram-sha-256\n" + saved)
    asyncio.run(admin("SELECT pg_reload_conf()"))
    valkey = redis.Redis(host=host, port=vk_port)
    valkey.execute_command("ACL", "SETUSER", VK_USER, "reset", "on", f">{VK_PASSWORD}", "~*",
                           "&*", "+@all")
    try:
        with pytest.raises(asyncpg.InvalidPasswordError):  # the password is really checked
            asyncio.run(asyncpg.connect(host=host, port=pg_port, user=PG_ROLE,
                                        password="wrong", database=PG_DATABASE))
        yield host, pg_port, vk_port
    finally:
        hba.write_text(saved)
        asyncio.run(admin("SELECT pg_reload_conf()"))
        valkey.execute_command("ACL", "DELUSER", VK_USER)
        valkey.close()
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)",
                          f"DROP ROLE IF EXISTS {PG_ROLE}"))


def _run_and_search(tmp_path: Path, dsn: str,
                    url: str) -> tuple[subprocess.CompletedProcess[str], CommandLines]:
    """Run a tiny workload with these addresses; assert no password (in any form, or a part
    of one) is in its output, its files, its database or a command line seen meanwhile."""
    toxiproxy = f"http://tp:{urllib.parse.quote(WORKLOAD_PASSWORD, safe='')}@127.0.0.1:1"
    workload = write_workload(tmp_path, {
        "processes": 1, "writers": 2, "readers": 2, "write_iterations": 30,
        "read_iterations": 30, "keyspace": 8, "backends": [
            # The workload's own copy of the password (redis-py lets the URL's win).
            "postgres-cache", {"name": "valkey-acl", "type": "valkey",
                               "options": {"username": VK_USER, "password": VK_PASSWORD}}],
        "network": {"mode": "none", "toxiproxy_url": toxiproxy}})
    db = tmp_path / "out" / "r.duckdb"
    env = env_for_addresses(tmp_path, dsn, url)
    with CommandLines() as lines:
        result = cli("run", str(workload), "--results", str(db), env=env)
    found = {"stdout": leaks_in(result.stdout, LOOKED_FOR),
             "stderr": leaks_in(result.stderr, LOOKED_FOR)}
    found.update({f"cmdline {line[:80]}": leaks_in(line, LOOKED_FOR) for line in lines.seen})
    found.update({str(path): leaks_in(text, LOOKED_FOR)
                  for path, text in file_texts(tmp_path, skip=[workload])})
    if db.exists():
        found.update({f"column {column}": leaks_in(text, LOOKED_FOR)
                      for column, text in database_texts(db)})
    assert not {where: what for where, what in found.items() if what}
    assert "Traceback" not in result.stderr
    return result, lines


class TestNoPasswordAnywhere:
    """A run with passwords of every punctuation character works, and writes them nowhere."""

    def test_percent_encoded(self, password_servers: tuple[str, int, int],
                             tmp_path: Path) -> None:
        """Percent-encoded passwords in POSTGRES_DSN and VALKEY_URL connect (the run
        completes as that role and that user) and appear in no output, file, column or
        command line."""
        host, pg_port, vk_port = password_servers
        dsn = (f"postgresql://{PG_ROLE}:{urllib.parse.quote(PG_PASSWORD, safe='')}@{host}:"
               f"{pg_port}/{PG_DATABASE}")
        url = f"redis://{VK_USER}:{urllib.parse.quote(VK_PASSWORD, safe='')}@{host}:{vk_port}/0"
        result, lines = _run_and_search(tmp_path, dsn, url)
        assert result.returncode == 0, result.stderr[-3000:]
        assert any("orchestrator.run.worker" in line for line in lines.seen), "no worker seen"
        with duckdb.connect(str(tmp_path / "out" / "r.duckdb"), read_only=True) as con:
            counts = dict(con.execute("SELECT backend, count(*) FROM ops WHERE error IS NULL "
                                      "GROUP BY ALL").fetchall())
        assert counts == {"postgres-cache": 120, "valkey-acl": 120}

    @pytest.mark.usefixtures("forgetful")
    def test_raw(self, password_servers: tuple[str, int, int], tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        """Raw passwords (which a URL cannot carry) are refused by run and suite before
        anything connects: exit 2, both variables named, no password (or piece of one)
        anywhere."""
        host, pg_port, vk_port = password_servers
        dsn = f"postgresql://{PG_ROLE}:{PG_PASSWORD}@{host}:{pg_port}/{PG_DATABASE}"
        url = f"redis://{VK_USER}:{VK_PASSWORD}@{host}:{vk_port}/0"
        result, _ = _run_and_search(tmp_path, dsn, url)
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stderr.startswith("error: POSTGRES_DSN and VALKEY_URL: the password "
                                        "holds characters a URL cannot carry"), result.stderr
        assert not (tmp_path / "out").exists()
        monkeypatch.setenv("POSTGRES_DSN", dsn)
        monkeypatch.setenv("VALKEY_URL", url)
        suite = cli_here("suite", str(ROOT / "workloads" / "suite.yaml"), "--quick",
                         "--results", str(tmp_path / "suite" / "r.duckdb"))
        assert (suite.returncode, suite.stderr.splitlines()[0]) == (
            2, result.stderr.splitlines()[0])
        assert not leaks_in(suite.stdout + suite.stderr, LOOKED_FOR)
        assert not (tmp_path / "suite").exists()
