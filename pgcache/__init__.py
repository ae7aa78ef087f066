"""pgcache: a Postgres-backed cache (UNLOGGED table + local LRU kept coherent by LISTEN/NOTIFY).

See ``pgcache/README.md`` for the design decisions and the semantics that hold.
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
