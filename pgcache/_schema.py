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
    """Object names and schema statements for one ``schema_prefix``."""

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

    def migrations(self, *, logged: bool) -> tuple[Migration, ...]:
        """Every migration in order; the ``logged`` setting only shapes the first."""
        t = quote_ident(self.table)
        pkey = quote_ident(f"{self.table}_pkey")
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
            Migration(2, "rows indexed by a 16-byte key hash (keys of any length)", (
                f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS key_hash bytea",
                f"UPDATE {t} SET key_hash = substring(sha256(key) FROM 1 FOR 16) "
                "WHERE key_hash IS NULL",
                f"ALTER TABLE {t} ALTER COLUMN key_hash SET NOT NULL",
                f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {pkey}",
                f"ALTER TABLE {t} ADD CONSTRAINT {pkey} PRIMARY KEY (key_hash)",
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
    """The statements of the data path, built once per cache instance.

    Parameters, in this order wherever they appear: key hash, key, value, kind, TTL seconds;
    then, for the statements that announce themselves, the channel and the payload parts.
    """

    get: str
    get_value: str
    get_many: str
    set: str
    set_notify: str
    set_batch: str
    set_batch_uniform: str
    delete: str
    delete_notify: str
    truncate: str
    notify: str
    sweep: str
    count_rows: str
    sample_rows: str
    trim_batch: str

    @classmethod
    def build(cls, names: SchemaNames, *, count_inserts: bool = False) -> Statements:
        """``count_inserts``: the writes also return whether each row is new (a bounded
        table counts them); otherwise they return only what every write needs."""
        t = quote_ident(names.table)
        # Versions are the writing transaction's 64-bit id (assigned anyway: it writes), and
        # never less than the row's previous version + 1. The DO UPDATE and RETURNING
        # expressions run with the row locked, so a key's versions increase in commit order
        # even when writers race on it (a later-committing writer may hold a lower id: hence
        # greatest()). xid8 never wraps and survives restarts and crashes. txid_current() is
        # pg_current_xact_id() as a bigint (the ::text::bigint round trip of the newer
        # function cost ~1.5 us per write; a sequence cost ~4 us).
        xid = "txid_current()"
        alive = "(e.expires_at IS NULL OR e.expires_at > now())"
        ttl = "extract(epoch FROM e.expires_at - now())::float8"
        # A row whose hash matches but whose key differs (a collision) is never touched: the
        # write returns no row and fails instead.
        upsert = ("ON CONFLICT (key_hash) DO UPDATE SET value = EXCLUDED.value, "
                  f"kind = EXCLUDED.kind, version = greatest({xid}, e.version + 1), "
                  "expires_at = EXCLUDED.expires_at WHERE e.key = EXCLUDED.key")
        insert = f"INSERT INTO {t} AS e (key_hash, key, value, kind, version, expires_at) "
        # (xmax = 0): the row is new (inserted, not updated); a bounded table counts these.
        # Otherwise no column is returned that is not needed: each costs every write its
        # decoding.
        new = ", (e.xmax = 0)" if count_inserts else ""
        set_one = (f"{insert}VALUES ($1, $2, $3, $4, {xid}, "
                   f"now() + make_interval(secs => $5::float8)) {upsert} "
                   f"RETURNING e.version{new}")
        # A batch's key hashes are computed here, not sent: every array element costs the
        # client its encoding (~0.3 us per write), the server's SHA-256 of a short key less.
        # The rows come in the order of $1 (the client sorts them: see _writes).
        hashed = "substring(sha256(u.k) FROM 1 FOR 16)"
        batch = (f"{insert}SELECT {hashed}, u.k, u.v, u.kd, {xid}, "
                 "now() + make_interval(secs => u.ttl) "
                 "FROM unnest($1::bytea[], $2::bytea[], $3::int2[], "
                 f"$4::float8[]) AS u(k, v, kd, ttl) {upsert} "
                 f"RETURNING e.key_hash, e.version{new}")
        # The usual batch: one kind and one TTL for all its rows, passed once (every array
        # element costs the client encoding work: ~0.5 us per write for two arrays).
        batch_uniform = (f"{insert}SELECT {hashed}, u.k, u.v, $3::int2, {xid}, "
                         "now() + make_interval(secs => $4::float8) "
                         "FROM unnest($1::bytea[], $2::bytea[]) AS u(k, v) "
                         f"{upsert} RETURNING e.key_hash, e.version{new}")
        # A delete leaves a tombstone (expired at once, swept later) carrying the next
        # version, so a key's versions keep increasing through delete and re-insert: a
        # writer that raced the delete still conflicts with the row and gets a higher one.
        delete = (f"WITH old AS (SELECT key_hash, {alive} AS alive FROM {t} AS e "
                  "WHERE key_hash = $1 AND key = $2 FOR UPDATE) "
                  f"UPDATE {t} AS e SET value = '\\x'::bytea, version = "
                  f"greatest({xid}, e.version + 1), expires_at = '-infinity' FROM old "
                  "WHERE e.key_hash = old.key_hash RETURNING e.version, old.alive")
        return cls(
            get=(f"SELECT e.value, e.kind, e.version, {ttl} FROM {t} AS e "
                 f"WHERE e.key_hash = $1 AND e.key = $2 AND {alive}"),
            # Without a local cache there is nothing to install: version and TTL are not needed.
            get_value=(f"SELECT e.value, e.kind FROM {t} AS e "
                       f"WHERE e.key_hash = $1 AND e.key = $2 AND {alive}"),
            get_many=(f"SELECT u.i, e.value, e.kind, e.version, {ttl} "
                      "FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS u(h, k, i) "
                      f"JOIN {t} AS e ON e.key_hash = u.h AND e.key = u.k WHERE {alive}"),
            set=set_one,
            # A lone write announces itself in its own transaction (see _notifier):
            # pg_notify(channel, head || version || tail), delivered if and only if it commits.
            set_notify=f"{set_one}, pg_notify($6, $7 || e.version::text || $8)",
            set_batch=batch,
            set_batch_uniform=batch_uniform,
            delete=delete,
            delete_notify=f"{delete}, pg_notify($3, $4 || e.version::text || $5)",
            truncate=f"TRUNCATE {t}",
            notify="SELECT pg_notify($1, $2)",
            sweep=(f"DELETE FROM {t} WHERE key_hash IN (SELECT key_hash FROM {t} "
                   "WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)"),
            count_rows=f"SELECT count(*) FROM {t}",
            # $1: the percentage of pages to read. Versions order rows by when they were
            # written; the sizes estimate the table's bytes (key and value as stored).
            sample_rows=(f"SELECT e.version, pg_column_size(e.key) + pg_column_size(e.value) "
                         f"FROM {t} AS e TABLESAMPLE SYSTEM ($1)"),
            # The oldest rows go first: everything written at or before version $1, a batch
            # at a time, skipping rows another session holds (a writer, another trimmer).
            trim_batch=(f"DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} "
                        "WHERE version <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED))"),
        )


def lock_key(table: str, hashed_key: bytes) -> int:
    """The advisory-lock key get_or_set() uses for a key (by its hash; 64-bit, signed)."""
    digest = hashlib.blake2b(hashed_key, digest_size=8, person=b"pgc-lock",
                             salt=hashlib.blake2b(table.encode(), digest_size=16).digest())
    return int.from_bytes(digest.digest(), "big", signed=True)

