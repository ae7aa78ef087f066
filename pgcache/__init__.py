"""pgcache: a Postgres-backed cache (UNLOGGED table + local LRU kept coherent by LISTEN/NOTIFY).

See ``pgcache/README.md`` for the design decisions and the semantics that hold.
"""

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
    PgCacheError,
)
from ._keys import MAX_KEY_BYTES
from ._local import Entry, LocalCache
from ._serializers import JsonSerializer, Serializer
from ._settings import CacheSettings
from ._stats import CacheStats

__all__ = [
    "MAX_KEY_BYTES",
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
    "Entry",
    "InvalidationCallback",
    "JsonSerializer",
    "LocalCache",
    "PgCacheError",
    "PostgresCache",
    "Serializer",
]
