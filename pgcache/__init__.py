"""pgcache: a Postgres-backed cache (UNLOGGED table + local LRU kept coherent by LISTEN/NOTIFY).

See ``pgcache/README.md`` for the design decisions and the semantics that hold.
"""

from ._cache import InvalidationCallback, PostgresCache
from ._errors import (
    CacheArgumentError,
    CacheConfigError,
    CacheConnectionError,
    CacheSerializationError,
    CacheServerError,
    CacheStateError,
    PgCacheError,
)
from ._serializers import JsonSerializer, Serializer
from ._settings import CacheSettings
from ._stats import CacheStats

__all__ = [
    "CacheArgumentError",
    "CacheConfigError",
    "CacheConnectionError",
    "CacheSerializationError",
    "CacheServerError",
    "CacheSettings",
    "CacheStateError",
    "CacheStats",
    "InvalidationCallback",
    "JsonSerializer",
    "PgCacheError",
    "PostgresCache",
    "Serializer",
]
