"""How values and TTLs are checked and turned into what a row stores.

A row stores bytes and a ``kind``: ``bytes`` values pass through untouched (kind 0), anything
else goes through the configured serializer (kind 1). ``None`` is what a miss returns, so it
cannot be stored. With ``compress_min_bytes``, what is at least that long is stored
zlib-compressed (level 1, the ``COMPRESSED`` flag in ``kind``) when that saves at least a
tenth; only the table and the wire see it compressed: local copies hold plain bytes, so a
local hit never decompresses.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from ._errors import CacheArgumentError, CacheSerializationError, PgCacheError
from ._serializers import Serializer
from ._settings import MAX_TTL_SECONDS

KIND_BYTES = 0
KIND_SERIALIZED = 1
COMPRESSED = 2  # a flag on either kind
# Longer values are first tried on their first 4 KiB (as PostgreSQL's own TOAST compression
# gives up early): a 64 KiB random value then costs ~30 us to refuse, not ~900 us.
_PROBE_BYTES = 4096


class ValueCodec:
    """Encodes values for a row and decodes them back."""

    __slots__ = ("_compress_min", "_serializer")

    def __init__(self, serializer: Serializer, compress_min_bytes: int | None = None) -> None:
        self._serializer = serializer
        self._compress_min = compress_min_bytes

    def pack(self, data: bytes, kind: int) -> tuple[bytes, int]:
        """What the table stores for plain ``data`` of ``kind``: compressed if worth it."""
        limit = self._compress_min
        if limit is None or len(data) < limit:
            return data, kind
        if len(data) > 2 * _PROBE_BYTES and \
                len(zlib.compress(data[:_PROBE_BYTES], 1)) * 10 > _PROBE_BYTES * 9:
            return data, kind  # its start does not compress: random or compressed already
        packed = zlib.compress(data, 1)
        if len(packed) * 10 > len(data) * 9:
            return data, kind  # incompressible: not worth decompressing on every read
        return packed, kind | COMPRESSED

    @staticmethod
    def unpack(data: bytes, kind: int) -> tuple[bytes, int]:
        """Plain bytes and kind of what the table stored."""
        if kind & COMPRESSED:
            try:
                return zlib.decompress(data), kind & ~COMPRESSED
            except zlib.error as exc:
                raise CacheSerializationError(
                    f"the stored value is marked compressed but is not zlib data: {exc}"
                ) from None
        return data, kind

    def encode(self, value: Any) -> tuple[bytes, int]:
        if type(value) is bytes:
            return value, KIND_BYTES
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value), KIND_BYTES
        if value is None:
            raise CacheArgumentError("None cannot be cached: get() returns None for a miss",
                                     hint="delete the key instead, or store a sentinel value")
        try:
            data = self._serializer.dumps(value)
        except PgCacheError:
            raise
        except Exception as exc:  # a configured serializer's own error, RecursionError too
            raise CacheSerializationError(
                f"the serializer could not encode a value of type {type(value).__name__}: "
                f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(data, bytes):
            raise CacheSerializationError(
                f"the serializer's dumps() returned {type(data).__name__}, not bytes")
        return data, KIND_SERIALIZED

    def decode(self, data: bytes, kind: int) -> Any:
        if kind == KIND_BYTES:
            return data
        if kind != KIND_SERIALIZED:
            raise CacheSerializationError(f"the stored value has kind {kind!r}, which pgcache "
                                          "never writes")
        try:
            return self._serializer.loads(data)
        except PgCacheError:
            raise
        except Exception as exc:  # a configured serializer's own error, RecursionError too
            raise CacheSerializationError(
                f"the serializer could not decode the stored value: "
                f"{type(exc).__name__}: {exc}") from exc

    def read(self, key: str, data: bytes, kind: int) -> tuple[Any, bytes, int]:
        """The value of a stored row, with the plain bytes and kind a local copy keeps;
        CacheSerializationError naming ``key`` when the row is not what pgcache writes
        (another program wrote it): then nothing of it may be installed."""
        if kind == KIND_BYTES:
            return data, data, kind
        try:
            if kind & COMPRESSED:
                data, kind = self.unpack(data, kind)
            return self.decode(data, kind), data, kind
        except CacheSerializationError as exc:
            raise CacheSerializationError(
                f"the stored value of key {key[:80]!r} cannot be read: {exc.message}",
                key=key, hint="was the row written by another program or serializer? "
                              "delete the key or set it again") from exc


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
