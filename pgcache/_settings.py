"""``CacheSettings``: every knob of a ``PostgresCache``, validated when constructed."""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import unquote, urlsplit

from ._errors import CacheConfigError
from ._serializers import SERIALIZERS, Serializer

# Lower case only: LISTEN folds unquoted names to lower case while pg_notify() does not, so a
# mixed-case channel would silently never deliver.
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*\Z")
# Leaves room for the longest suffix ("pgcache_schema_version", 22) within NAMEDATALEN-1 = 63.
MAX_PREFIX_LENGTH = 40
MAX_CHANNEL_LENGTH = 63
# PostgreSQL rejects NOTIFY payloads of 8000 bytes or more.
MAX_NOTIFY_PAYLOAD = 7999
# Longer TTLs would overflow PostgreSQL's timestamps (now() + 300 000 years does).
MAX_TTL_SECONDS = 100 * 365.25 * 86400


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    """Settings of one ``PostgresCache``; invalid values raise ``CacheConfigError``.

    ``dsn`` may be given by position (as in postgres-cache 0.1.1); every other field is a
    keyword.
    """

    dsn: str = field(kw_only=False)
    # The listener's own route (None: same as dsn), e.g. through a fault-injecting proxy.
    listener_dsn: str | None = None
    notify_channel: str = "cache_events"
    disable_notify: bool = False
    schema_prefix: str = ""
    logged: bool = False
    min_pool_size: int = 1
    max_pool_size: int = 10
    local_max_entries: int = 4096
    default_ttl_seconds: float | None = 300.0
    # Upper bound on how long a local copy is trusted; the entry's own TTL bounds it further.
    local_ttl_seconds: float = 60.0
    # Longest pause between two NOTIFYs of this instance under load. After a batch of n keys
    # the notifier waits notify_coalesce_seconds * min(1, n / notify_coalesce_keys): a lone
    # write is announced at once, a busy writer's keys are sent in ever larger batches.
    # 0: no pause (whatever accumulated while the previous NOTIFY was in flight).
    notify_coalesce_seconds: float = 0.002
    notify_coalesce_keys: int = 64
    # Concurrent set() calls of one instance share statements: at most
    # write_batch_concurrency statements are in flight; writes arriving meanwhile queue and
    # go together (up to write_batch_max per statement) in the next free one. A lone write
    # still goes out at once as a single-row upsert. write_batch_max=1 turns this off.
    write_batch_max: int = 64
    write_batch_concurrency: int = 2
    notify_max_payload_bytes: int = 7900
    # Distinct keys waiting for notification before the notifier gives up on naming them and
    # tells the other instances to flush everything instead.
    notify_max_pending: int = 100_000
    # The staleness bound under silent faults: local copies are served only within a lease
    # that the instance's own notifications, coming back through its listener, renew (see
    # pgcache/README.md, "The lease").
    local_lease_seconds: float = 0.5
    # One listener per host, shared by its instances through a relay (see pgcache/README.md,
    # "The shared listener"): PostgreSQL's cost per write then no longer grows with the
    # number of instances. Linux only.
    shared_listener: bool = False
    listener_heartbeat_interval_seconds: float = 1.0
    listener_heartbeat_timeout_seconds: float = 2.0
    # get_or_set: how long an instance waits for another one loading the same key, and how
    # long a loader may run (None: no limit).
    lock_timeout_seconds: float = 5.0
    loader_timeout_seconds: float | None = None
    reconnect_backoff_min_seconds: float = 0.05
    reconnect_backoff_max_seconds: float = 5.0
    sweep_interval_seconds: float = 60.0
    sweep_batch_size: int = 1000
    connect_timeout: float = 5.0
    # None: no per-statement timeout (as redis-py's socket_timeout); asyncpg arms a timer per
    # statement otherwise, which costs ~3 us of a ~50 us loopback round trip.
    command_timeout: float | None = None
    application_name: str = "pgcache"
    serializer: Serializer | str = "json"
    # Bounds of the table, enforced by the sweeper (see pgcache/README.md, "A bounded
    # table"); None: no bound. max_age_seconds caps every write's TTL.
    max_entries: int | None = None
    max_bytes: int | None = None
    max_age_seconds: float | None = None
    # Values of at least this many bytes are stored zlib-compressed when that saves a tenth
    # (None: never); see pgcache/README.md for what it costs and saves.
    compress_min_bytes: int | None = 4096
    # postgres-cache 0.1.1's names: accepted with a DeprecationWarning saying what to use,
    # mapped onto pgcache's fields, then reset (so that dataclasses.replace() works).
    disable_notiffy: bool | None = field(default=None, repr=False, compare=False)
    notification_queue_size: int | None = field(default=None, repr=False, compare=False)
    fetch_timeout_seconds: float | None = field(default=None, repr=False, compare=False)
    cleanup_batch_size: int | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._map_legacy_names()
        _check_dsn("dsn", self.dsn)
        if self.listener_dsn is not None:
            _check_dsn("listener_dsn", self.listener_dsn)
        _check_identifier("notify_channel", self.notify_channel, MAX_CHANNEL_LENGTH,
                          allow_empty=False)
        _check_identifier("schema_prefix", self.schema_prefix, MAX_PREFIX_LENGTH,
                          allow_empty=True)
        if self.shared_listener is True and not sys.platform.startswith("linux"):
            raise CacheConfigError("shared_listener", "needs Linux (abstract Unix sockets)")
        for name in ("disable_notify", "logged", "shared_listener"):
            if not isinstance(getattr(self, name), bool):
                raise CacheConfigError(name, f"must be true or false, got {getattr(self, name)!r}")
        _check_int("min_pool_size", self.min_pool_size, minimum=0)
        _check_int("max_pool_size", self.max_pool_size, minimum=1)
        if self.min_pool_size > self.max_pool_size:
            raise CacheConfigError(
                "min_pool_size", f"{self.min_pool_size} exceeds max_pool_size "
                f"{self.max_pool_size}", hint="raise max_pool_size or lower min_pool_size")
        _check_int("local_max_entries", self.local_max_entries, minimum=0)
        if self.default_ttl_seconds is not None:
            _check_float("default_ttl_seconds", self.default_ttl_seconds, positive=True)
            if self.default_ttl_seconds > MAX_TTL_SECONDS:
                raise CacheConfigError("default_ttl_seconds",
                                       f"must be <= {MAX_TTL_SECONDS:.0f} (100 years), got "
                                       f"{self.default_ttl_seconds}")
        _check_float("local_ttl_seconds", self.local_ttl_seconds, positive=True)
        _check_float("notify_coalesce_seconds", self.notify_coalesce_seconds, positive=False)
        _check_int("notify_coalesce_keys", self.notify_coalesce_keys, minimum=1)
        _check_int("notify_max_pending", self.notify_max_pending, minimum=1)
        _check_int("write_batch_max", self.write_batch_max, minimum=1, maximum=10_000)
        _check_int("write_batch_concurrency", self.write_batch_concurrency, minimum=1)
        _check_int("notify_max_payload_bytes", self.notify_max_payload_bytes, minimum=512,
                   maximum=MAX_NOTIFY_PAYLOAD)
        _check_float("local_lease_seconds", self.local_lease_seconds, positive=True)
        _check_float("lock_timeout_seconds", self.lock_timeout_seconds, positive=True)
        if self.loader_timeout_seconds is not None:
            _check_float("loader_timeout_seconds", self.loader_timeout_seconds, positive=True)
        _check_float("listener_heartbeat_interval_seconds",
                     self.listener_heartbeat_interval_seconds, positive=True)
        _check_float("listener_heartbeat_timeout_seconds",
                     self.listener_heartbeat_timeout_seconds, positive=True)
        _check_float("reconnect_backoff_min_seconds", self.reconnect_backoff_min_seconds,
                     positive=True)
        _check_float("reconnect_backoff_max_seconds", self.reconnect_backoff_max_seconds,
                     positive=True)
        if self.reconnect_backoff_max_seconds < self.reconnect_backoff_min_seconds:
            raise CacheConfigError("reconnect_backoff_max_seconds",
                                   "must not be below reconnect_backoff_min_seconds")
        _check_float("sweep_interval_seconds", self.sweep_interval_seconds, positive=False)
        _check_int("sweep_batch_size", self.sweep_batch_size, minimum=1)
        _check_float("connect_timeout", self.connect_timeout, positive=True)
        if self.command_timeout is not None:
            _check_float("command_timeout", self.command_timeout, positive=True)
        for name in ("max_entries", "max_bytes", "compress_min_bytes"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        if self.max_age_seconds is not None:
            _check_float("max_age_seconds", self.max_age_seconds, positive=True)
            if self.max_age_seconds > MAX_TTL_SECONDS:
                raise CacheConfigError("max_age_seconds",
                                       f"must be <= {MAX_TTL_SECONDS:.0f} (100 years), got "
                                       f"{self.max_age_seconds}")
        if not isinstance(self.application_name, str) or len(self.application_name) > 63:
            raise CacheConfigError("application_name", "must be a string of at most 63 chars")
        if "\x00" in self.application_name:
            raise CacheConfigError("application_name", "must not contain a NUL character",
                                   hint="PostgreSQL cannot receive one in a connection's "
                                        "settings: every connect would fail")
        if isinstance(self.serializer, str):
            if self.serializer not in SERIALIZERS:
                raise CacheConfigError(
                    "serializer", f"unknown serializer {self.serializer!r}",
                    hint=f"use one of {sorted(SERIALIZERS)} or an object with dumps()/loads()")
        elif not isinstance(self.serializer, Serializer):
            raise CacheConfigError("serializer",
                                   "must be a name or an object with dumps() and loads()")

    def _map_legacy_names(self) -> None:
        def deprecated(name: str, advice: str) -> None:
            warnings.warn(f"CacheSettings({name}=...) is postgres-cache 0.1.1's; {advice}",
                          DeprecationWarning, stacklevel=4)
            object.__setattr__(self, name, None)

        if self.disable_notiffy is not None:
            disable = self.disable_notiffy
            if not isinstance(disable, bool):
                raise CacheConfigError("disable_notiffy",
                                       f"must be true or false, got {disable!r}")
            deprecated("disable_notiffy", "use disable_notify (the same setting)")
            object.__setattr__(self, "disable_notify", disable)
        if self.cleanup_batch_size is not None:
            batch = self.cleanup_batch_size
            _check_int("cleanup_batch_size", batch, minimum=1)
            deprecated("cleanup_batch_size", "use sweep_batch_size (the same setting)")
            object.__setattr__(self, "sweep_batch_size", batch)
        if self.notification_queue_size is not None:
            _check_int("notification_queue_size", self.notification_queue_size, minimum=1)
            deprecated("notification_queue_size", "it has no effect: pgcache applies "
                       "notifications as they arrive, there is no queue to bound")
        if self.fetch_timeout_seconds is not None:
            _check_float("fetch_timeout_seconds", self.fetch_timeout_seconds, positive=True)
            deprecated("fetch_timeout_seconds", "it has no effect (it had none in 0.1.1 "
                       "either); use command_timeout for a per-statement timeout")

    @property
    def resolved_serializer(self) -> Serializer:
        """The serializer object (a name is looked up)."""
        if isinstance(self.serializer, str):
            return SERIALIZERS[self.serializer]
        return self.serializer

    @property
    def local_cache_enabled(self) -> bool:
        """Whether this instance keeps local copies at all."""
        return self.local_max_entries > 0

    @property
    def listener_enabled(self) -> bool:
        """Whether this instance LISTENs (only useful when it has local copies to evict)."""
        return self.local_max_entries > 0 and not self.disable_notify

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of every setting (for tools that build settings from configuration files)."""
        return tuple(f.name for f in fields(cls))


def _check_dsn(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise CacheConfigError(name, "must be a non-empty PostgreSQL URL",
                               hint="e.g. postgresql://user:password@host:5432/database")
    # The driver percent-decodes every part (user, password, host, database, query).
    if "\x00" in unquote(value):
        raise CacheConfigError(name, "must not contain a NUL character, raw or as %00",
                               hint="PostgreSQL cannot receive one in a connection's "
                                    "parameters: every connect would fail; a literal '%' "
                                    "is written %25")
    if not value.startswith(("postgresql://", "postgres://")):
        raise CacheConfigError(name, "must start with postgresql:// or postgres://",
                               hint="e.g. postgresql://user:password@host:5432/database")
    try:
        parts = urlsplit(value)
        # Each host of a multi-host URL ("h1:5432,h2:5433") must carry a valid port.
        for host in parts.netloc.rsplit("@", 1)[-1].split(","):
            if host.rpartition(":")[0] and not host.endswith("]"):
                urlsplit(f"//{host}").port  # noqa: B018 - parsing is the check
    except ValueError as exc:
        raise CacheConfigError(name, f"is not a valid URL: {exc}",
                               hint="ports are integers from 1 to 65535") from None


def _check_identifier(name: str, value: Any, max_length: int, *, allow_empty: bool) -> None:
    if not isinstance(value, str):
        raise CacheConfigError(name, f"must be a string, got {type(value).__name__}")
    if not value:
        if allow_empty:
            return
        raise CacheConfigError(name, "must not be empty")
    if len(value) > max_length or not _IDENTIFIER.match(value):
        raise CacheConfigError(
            name, f"{value!r} is not a safe identifier",
            hint=f"use lower-case letters, digits and underscores, starting with a letter or "
                 f"underscore, at most {max_length} characters")


def _check_int(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CacheConfigError(name, f"must be an integer, got {value!r}")
    if value < minimum:
        raise CacheConfigError(name, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise CacheConfigError(name, f"must be <= {maximum}, got {value}")


def _check_float(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CacheConfigError(name, f"must be a number of seconds, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise CacheConfigError(name, f"must be finite, got {value}")
    if positive and value <= 0:
        raise CacheConfigError(name, f"must be > 0, got {value}")
    if not positive and value < 0:
        raise CacheConfigError(name, f"must be >= 0, got {value}")
