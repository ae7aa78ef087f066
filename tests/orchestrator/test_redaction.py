"""orchestrator.redaction: passwords replaced wherever they appear, nothing else touched."""

from __future__ import annotations

import pytest

from orchestrator.redaction import MASK, redact, redact_data


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
