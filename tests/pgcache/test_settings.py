"""CacheSettings: every option validated in the constructor, with the field named."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from pgcache import CacheConfigError, CacheSettings, JsonSerializer, PgCacheError

DSN = "postgresql://u:p@127.0.0.1:5432/db"


class TestValidSettings:
    def test_defaults_are_valid_and_frozen(self) -> None:
        """Only dsn is required; the result is immutable."""
        settings = CacheSettings(dsn=DSN)
        assert settings.logged is False and settings.local_max_entries == 4096
        with pytest.raises(FrozenInstanceError):
            settings.dsn = "x"  # type: ignore[misc]

    def test_options_can_be_passed_as_a_mapping(self) -> None:
        """Every field is a keyword, so YAML options can be splatted in."""
        options: dict[str, Any] = {"notify_channel": "bench_ch", "max_pool_size": 16,
                                   "local_ttl_seconds": 5, "serializer": "json"}
        settings = CacheSettings(dsn=DSN, **options)
        assert settings.max_pool_size == 16
        assert isinstance(settings.resolved_serializer, JsonSerializer)
        assert "listener_dsn" in CacheSettings.field_names()

    def test_listener_flags_follow_local_cache_and_notify(self) -> None:
        """No local cache or disable_notify means no listener."""
        assert CacheSettings(dsn=DSN).listener_enabled
        assert not CacheSettings(dsn=DSN, local_max_entries=0).listener_enabled
        assert not CacheSettings(dsn=DSN, disable_notify=True).listener_enabled


class TestInvalidSettings:
    @pytest.mark.parametrize(("field", "value"), [
        ("dsn", ""),
        ("dsn", "mysql://x"),
        ("listener_dsn", " "),
        ("notify_channel", ""),
        ("notify_channel", "bad-channel; DROP TABLE x"),
        ("notify_channel", "MixedCase"),
        ("schema_prefix", "1abc"),
        ("schema_prefix", 'a"b'),
        ("schema_prefix", "a" * 41),
        ("min_pool_size", -1),
        ("max_pool_size", 0),
        ("local_max_entries", -5),
        ("local_max_entries", 1.5),
        ("default_ttl_seconds", 0),
        ("local_ttl_seconds", -1.0),
        ("local_ttl_seconds", float("nan")),
        ("notify_max_payload_bytes", 9000),
        ("sweep_batch_size", 0),
        ("command_timeout", 0),
        ("disable_notify", "yes"),
        ("serializer", "pickle"),
        ("serializer", 42),
        ("reconnect_backoff_min_seconds", 0),
    ])
    def test_bad_value_names_the_field(self, field: str, value: Any) -> None:
        """A bad value fails in the constructor with the field in the message."""
        kwargs: dict[str, Any] = {"dsn": DSN, field: value}
        with pytest.raises(CacheConfigError) as info:
            CacheSettings(**kwargs)
        assert info.value.field == field
        assert f"CacheSettings.{field}" in str(info.value)
        assert isinstance(info.value, PgCacheError) and isinstance(info.value, ValueError)

    @pytest.mark.parametrize(("field", "value"), [
        ("application_name", "app\x00name"),
        ("dsn", "postgresql://u\x00:p@127.0.0.1:5432/db"),
        ("dsn", "postgresql://u:p%00@127.0.0.1:5432/db"),
        ("dsn", "postgresql://u%00:p@127.0.0.1:5432/db"),
        ("dsn", "postgresql://u:p@127.0.0.1:5432/d%00b"),
        ("dsn", "postgresql://u:p@h%00st:5432/db"),
        ("dsn", "postgresql://u:p@127.0.0.1:5432/db?application_name=a%00b"),
        ("dsn", "postgresql://u:p@127.0.0.1:5432/db?options=-c%20search_path%3Dx%00"),
        ("listener_dsn", "postgresql://u:p@127.0.0.1:5432/db\x00"),
        ("notify_channel", "ch\x00"),
        ("schema_prefix", "p\x00"),
        ("serializer", "json\x00"),
    ])
    def test_a_nul_in_a_string_setting_names_the_field(self, field: str, value: Any) -> None:
        """A NUL (raw, or percent-encoded in a DSN) fails in the constructor naming the field:
        PostgreSQL cannot receive one, and every connect would fail with a misleading hint."""
        kwargs: dict[str, Any] = {"dsn": DSN, field: value}
        with pytest.raises(CacheConfigError) as info:
            CacheSettings(**kwargs)
        assert info.value.field == field
        if field in ("application_name", "dsn", "listener_dsn"):
            assert "NUL" in str(info.value)

    def test_an_encoded_percent_before_zeros_is_not_a_nul(self) -> None:
        """A password holding a literal "%00" (written %2500) is accepted."""
        assert CacheSettings(dsn="postgresql://u:p%2500@127.0.0.1:5432/db").dsn

    def test_min_pool_above_max_is_rejected(self) -> None:
        """min_pool_size may not exceed max_pool_size."""
        with pytest.raises(CacheConfigError, match="min_pool_size"):
            CacheSettings(dsn=DSN, min_pool_size=5, max_pool_size=2)

    def test_backoff_max_below_min_is_rejected(self) -> None:
        """The backoff range must not be inverted."""
        with pytest.raises(CacheConfigError, match="reconnect_backoff_max_seconds"):
            CacheSettings(dsn=DSN, reconnect_backoff_min_seconds=2,
                          reconnect_backoff_max_seconds=1)

    def test_unknown_option_is_a_type_error(self) -> None:
        """A misspelt option is not silently ignored."""
        with pytest.raises(TypeError):
            CacheSettings(dsn=DSN, local_max_entry=3)  # type: ignore[call-arg]
