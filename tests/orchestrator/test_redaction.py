"""orchestrator.redaction: passwords replaced wherever they appear, nothing else touched."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import structlog

from orchestrator.redaction import MASK, redact, redact_data
from orchestrator.results.logs import BufferedStream, configure_events
from orchestrator.results.store import RunRecord
from orchestrator.run.load import error_text


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
