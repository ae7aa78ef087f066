"""Table layout, versioned migrations and every SQL statement pgcache sends.

Identifiers come only from validated settings (see ``_settings``) and are quoted anyway; keys
and values only ever travel as bind parameters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ._settings import CacheSettings


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (settings are validated; quoting is a second line of defence)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SchemaNames:
    """Object names and statements for one ``schema_prefix``."""

    table: str
    version_table: str
    # Serialises concurrent init_db() calls for this prefix (pg_advisory_xact_lock key).
    migration_lock: int

    @classmethod
    def from_settings(cls, settings: CacheSettings) -> SchemaNames:
        prefix = settings.schema_prefix
        digest = hashlib.blake2b(f"pgcache-migrate:{prefix}".encode(), digest_size=8).digest()
        return cls(
            table=f"{prefix}pgcache_entries",
            version_table=f"{prefix}pgcache_schema_version",
            migration_lock=int.from_bytes(digest, "big", signed=True),
        )

    # -- migrations -------------------------------------------------------------------------

    def migrations(self, *, logged: bool) -> tuple[Migration, ...]:
        """Every migration in order; the ``logged`` setting only shapes the first."""
        t = quote_ident(self.table)
        persistence = "" if logged else "UNLOGGED "
        return (
            Migration(1, "entries table", (
                # No index on expires_at: every set changes it, and an index on it would make
                # every update non-HOT; the sweeper scans instead (rarely, in bounded batches).
                f"CREATE {persistence}TABLE IF NOT EXISTS {t} ("
                " key bytea PRIMARY KEY,"
                " value bytea NOT NULL,"
                " kind smallint NOT NULL DEFAULT 0,"
                " version bigint NOT NULL,"
                " expires_at timestamptz"
                ") WITH (fillfactor = 80)",
            )),
        )

    @property
    def latest_version(self) -> int:
        return self.migrations(logged=False)[-1].version

    @property
    def create_version_table(self) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {quote_ident(self.version_table)} ("
                " version integer PRIMARY KEY,"
                " description text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())")

    @property
    def select_schema_version(self) -> str:
        return f"SELECT coalesce(max(version), 0) FROM {quote_ident(self.version_table)}"

    @property
    def insert_schema_version(self) -> str:
        return (f"INSERT INTO {quote_ident(self.version_table)} (version, description) "
                "VALUES ($1, $2)")

    @property
    def select_persistence(self) -> str:
        return "SELECT relpersistence::text FROM pg_class WHERE oid = to_regclass($1)"

    def drop_statements(self) -> tuple[str, ...]:
        return (f"DROP TABLE IF EXISTS {quote_ident(self.table)}",
                f"DROP TABLE IF EXISTS {quote_ident(self.version_table)}")


@dataclass(frozen=True, slots=True)
class Statements:
    """The statements of the data path, built once per cache instance."""

    get: str
    get_value: str
    get_many: str
    set: str
    set_notify: str
    set_many: str
    set_batch: str
    delete: str
    truncate: str
    sweep: str
    lock: str
    unlock: str

    @classmethod
    def build(cls, names: SchemaNames) -> Statements:
        t = quote_ident(names.table)
        # Versions are the writing transaction's 64-bit id (assigned anyway: it writes), and
        # never less than the row's previous version + 1. The DO UPDATE and RETURNING
        # expressions run with the row locked, so a key's versions increase in commit order
        # even when writers race on it (a later-committing writer may hold a lower id: hence
        # greatest()). xid8 never wraps and survives restarts and crashes. A sequence gave the
        # same guarantees at ~4 us more server CPU per write (its buffer lock and WAL).
        # txid_current() is pg_current_xact_id() as a bigint; the ::text::bigint round trip
        # of the newer function cost ~1.5 us per write.
        xid = "txid_current()"
        alive = "(expires_at IS NULL OR expires_at > now())"
        ttl = "extract(epoch FROM expires_at - now())::float8"
        set_one = (f"INSERT INTO {t} AS e (key, value, kind, version, expires_at) "
                   f"VALUES ($1, $2, $3, {xid}, now() + make_interval(secs => $4::float8)) "
                   "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                   f"kind = EXCLUDED.kind, version = greatest({xid}, e.version + 1), "
                   "expires_at = EXCLUDED.expires_at RETURNING version")
        return cls(
            get=f"SELECT value, kind, version, {ttl} FROM {t} WHERE key = $1 AND {alive}",
            # Without a local cache there is nothing to install: version and TTL are not needed.
            get_value=f"SELECT value, kind FROM {t} WHERE key = $1 AND {alive}",
            get_many=(f"SELECT key, value, kind, version, {ttl} FROM {t} "
                      f"WHERE key = ANY($1::bytea[]) AND {alive}"),
            set=set_one,
            # A lone write announces itself in its own transaction (see PostgresCache.set):
            # pg_notify(channel, head || version || tail), delivered only if it commits.
            set_notify=f"{set_one}, pg_notify($5, $6 || version::text || $7)",
            set_many=(f"INSERT INTO {t} AS e (key, value, kind, version, expires_at) "
                      f"SELECT u.k, u.v, u.kd, {xid}, "
                      "now() + make_interval(secs => $4::float8) "
                      "FROM unnest($1::bytea[], $2::bytea[], $3::int2[]) AS u(k, v, kd) "
                      "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                      f"kind = EXCLUDED.kind, version = greatest({xid}, e.version + 1), "
                      "expires_at = EXCLUDED.expires_at RETURNING key, version"),
            # Concurrent set() calls of one instance, coalesced (one TTL per row).
            set_batch=(f"INSERT INTO {t} AS e (key, value, kind, version, expires_at) "
                       f"SELECT u.k, u.v, u.kd, {xid}, now() + make_interval(secs => u.ttl) "
                       "FROM unnest($1::bytea[], $2::bytea[], $3::int2[], $4::float8[]) "
                       "AS u(k, v, kd, ttl) "
                       "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                       f"kind = EXCLUDED.kind, version = greatest({xid}, e.version + 1), "
                       "expires_at = EXCLUDED.expires_at RETURNING key, version"),
            # RETURNING runs with the row locked: the delete's version is newer than every
            # version the row ever had.
            delete=f"DELETE FROM {t} WHERE key = $1 RETURNING greatest({xid}, version + 1)",
            truncate=f"TRUNCATE {t}",
            sweep=(f"DELETE FROM {t} WHERE key IN (SELECT key FROM {t} "
                   "WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)"),
            lock="SELECT pg_advisory_lock($1)",
            unlock="SELECT pg_advisory_unlock($1)",
        )


def lock_key(table: str, key: bytes) -> int:
    """The advisory-lock key get_or_set() uses for ``key`` (64-bit, signed)."""
    digest = hashlib.blake2b(key, digest_size=8, person=b"pgc-lock",
                             salt=hashlib.blake2b(table.encode(), digest_size=16).digest())
    return int.from_bytes(digest.digest(), "big", signed=True)
