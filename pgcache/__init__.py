"""pgcache: a Postgres-backed cache (UNLOGGED table + local LRU kept coherent by LISTEN/NOTIFY).

See ``pgcache/README.md`` for the design decisions and the semantics that hold. The public API
is re-exported here; the implementation lives in underscore modules:

``_cache``: ``PostgresCache``, the public API, a facade over the parts of one instance.
``_parts``: what one instance opens at connect() and closes at close(), in order.
``_admin``: ``cache.admin``: the calls that manage the table rather than serve a request.
``_settings``: ``CacheSettings``, every knob, validated when constructed.
``_errors``: the exception hierarchy under one root, ``PgCacheError``.
``_protocol``: ``Cache``, the typing protocol of every cache client, and ``NullCache``.
``_local``: the local cache, a bounded LRU with TTL that knows each copy's version.
``_coherence``: keeping the local copies coherent with notifications and listener losses.
``_lease``: how long local copies may be trusted without proof that notifications arrive.
``_listener``: the instance's dedicated LISTEN connection, watched and reconnected.
``_relay``: the shared listener, one LISTEN per host relayed to every instance on it.
``_notifier``: announces writes after they commit, batched, on a connection of its own.
``_payload``: notification payloads, written and read back.
``_reads``: the read path past the local cache, installed only when safe.
``_writes``: the write path: set, set_many, delete, truncate.
``_batching``: concurrent set() calls of one instance sharing statements.
``_loader``: ``get_or_set``, one loader per miss across all instances.
``_locks``: session-level advisory locks on a connection of their own.
``_values``: values and TTLs checked and turned into what a row stores.
``_keys``: what a valid key is, its stored form, and its fixed-size hash.
``_serializers``: how non-bytes values become bytes (JSON by default).
``_stats``: an instance's counters and ``CacheStats``, the snapshot users read.
``_sweeper``: expired rows deleted, a bounded table kept within its bounds.
``_schema``: the table layout, the versioned migrations and every SQL statement.
``_migrations``: applying the migrations, and asking which version is in place.
``_db``: ``Database``, one statement on a pooled connection.
``_pool``: a minimal connection pool for single-statement operations.
``_connect``: opening connections, and what asyncpg's errors mean.
"""

import logging

from ._cache import PostgresCache
from ._coherence import InvalidationCallback
from ._errors import (
    CacheArgumentError,
    CacheConfigError,
    CacheConnectionError,
    CacheLoaderTimeoutError,
    CacheLockTimeoutError,
    CacheSerializationError,
    CacheServerError,
    CacheStateError,
    CacheTooManyConnectionsError,
    PgCacheError,
)
from ._keys import MAX_KEY_BYTES
from ._local import Entry, LocalCache
from ._migrations import (
    apply_migrations,
    apply_migrations_sync,
    init_postgres_cache_db,
    init_postgres_cache_db_sync,
    schema_is_current,
    schema_is_current_sync,
    schema_version,
    schema_version_sync,
)
from ._protocol import Cache, NullCache
from ._serializers import JsonSerializer, Serializer
from ._settings import CacheSettings
from ._stats import CacheStats

# A library prints nothing unless the application configures logging (without a handler of
# its own, Python's last-resort handler would print pgcache's warnings to stderr).
logging.getLogger("pgcache").addHandler(logging.NullHandler())

__all__ = [
    "MAX_KEY_BYTES",
    "Cache",
    "CacheArgumentError",
    "CacheConfigError",
    "CacheConnectionError",
    "CacheLoaderTimeoutError",
    "CacheLockTimeoutError",
    "CacheSerializationError",
    "CacheServerError",
    "CacheSettings",
    "CacheStateError",
    "CacheStats",
    "CacheTooManyConnectionsError",
    "Entry",
    "InvalidationCallback",
    "JsonSerializer",
    "LocalCache",
    "NullCache",
    "PgCacheError",
    "PostgresCache",
    "Serializer",
    "apply_migrations",
    "apply_migrations_sync",
    "init_postgres_cache_db",
    "init_postgres_cache_db_sync",
    "schema_is_current",
    "schema_is_current_sync",
    "schema_version",
    "schema_version_sync",
]
