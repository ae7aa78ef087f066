"""How values and TTLs are checked and turned into what a row stores.

A row stores bytes and a ``kind``: ``bytes`` values pass through untouched (kind 0), anything
else goes through the configured serializer (kind 1). ``None`` is what a miss returns, so it
cannot be stored.
"""

from __future__ import annotations

import math
from typing import Any

from ._errors import CacheArgumentError
from ._serializers import Serializer
from ._settings import MAX_TTL_SECONDS

KIND_BYTES = 0
KIND_SERIALIZED = 1


class ValueCodec:
    """Encodes values for a row and decodes them back."""

    __slots__ = ("_serializer",)

    def __init__(self, serializer: Serializer) -> None:
        self._serializer = serializer

    def encode(self, value: Any) -> tuple[bytes, int]:
        if type(value) is bytes:
            return value, KIND_BYTES
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value), KIND_BYTES
        if value is None:
            raise CacheArgumentError("None cannot be cached: get() returns None for a miss",
                                     hint="delete the key instead, or store a sentinel value")
        return self._serializer.dumps(value), KIND_SERIALIZED

    def decode(self, data: bytes, kind: int) -> Any:
        if kind == KIND_BYTES:
            return data
        return self._serializer.loads(data)


def check_ttl(ttl_seconds: Any, default: float | None) -> float | None:
    """The TTL a write uses: ``default`` for None, else a positive finite number of seconds
    of at most 100 years."""
    if ttl_seconds is None:
        return default
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float):
        raise CacheArgumentError(
            f"ttl_seconds must be a number of seconds or None, got {ttl_seconds!r}")
    if not (ttl_seconds > 0 and math.isfinite(ttl_seconds)) or ttl_seconds > MAX_TTL_SECONDS:
        raise CacheArgumentError(
            f"ttl_seconds must be > 0 and <= {MAX_TTL_SECONDS:.0f} (100 years), "
            f"got {ttl_seconds!r}",
            hint="pass None for the default TTL (default_ttl_seconds)")
    return float(ttl_seconds)
