"""Keys: what a valid key is, its stored form, and the fixed-size hash that indexes it.

Any ``str`` is a key, up to ``MAX_KEY_BYTES`` of UTF-8 (lone surrogates kept, so every ``str``
round-trips). The table's primary key is not the key itself but its 16-byte hash: a btree
entry must fit in a third of a page (2704 bytes), and a random key longer than that cannot be
indexed. The full key is stored beside the hash and compared on every read, so a hash
collision can only ever be a miss, never another key's value.
"""

from __future__ import annotations

import functools
import hashlib

from ._errors import CacheArgumentError

# The largest key, in bytes of UTF-8. The whole key travels with each statement and is kept in
# the row; keys this long are supported, not recommended.
MAX_KEY_BYTES = 1 << 20
# Keys longer than this many characters travel in notifications by their hash (hex): even
# JSON-escaped, a key of up to 200 characters needs at most 2 400 bytes, so several fit the
# 8000-byte payload limit.
LONG_KEY_CHARS = 200
KEY_HASH_BYTES = 16


def key_type_error(key: object) -> CacheArgumentError:
    return CacheArgumentError(f"keys are str, got {type(key).__name__}",
                              hint="convert the key to a str (e.g. with str() or a format)")


def key_bytes(key: object) -> bytes:
    """The stored form of ``key``; CacheArgumentError if it is not a str or too long."""
    if not isinstance(key, str):
        raise key_type_error(key)
    data = key.encode("utf-8", "surrogatepass")
    if len(data) > MAX_KEY_BYTES:
        raise CacheArgumentError(
            f"a key of {len(data)} bytes (UTF-8) exceeds the limit of {MAX_KEY_BYTES} bytes",
            hint="hash long keys yourself, e.g. with hashlib.sha256")
    return data


def key_hash(data: bytes) -> bytes:
    """The indexed hash of a stored key: SHA-256 cut to 16 bytes (the migration computes the
    same in SQL: ``substring(sha256(key) FROM 1 FOR 16)``)."""
    return hashlib.sha256(data).digest()[:KEY_HASH_BYTES]


def key_digest(key: str) -> str:
    """The name a long key goes by in notifications: its hash, in hex."""
    return key_hash(key.encode("utf-8", "surrogatepass")).hex()


# Short keys are looked up far more often than they are new: their stored form and hash are
# remembered (bounded; a few MB at most) instead of encoded and hashed on every operation.
_REMEMBERED_KEY_CHARS = 256


@functools.lru_cache(maxsize=8192)
def _short_key_parts(key: str) -> tuple[bytes, bytes]:
    data = key.encode("utf-8", "surrogatepass")
    return data, key_hash(data)


def key_parts(key: object) -> tuple[bytes, bytes]:
    """``(key_bytes(key), its hash)``, with the same checks as :func:`key_bytes`."""
    if type(key) is str and len(key) <= _REMEMBERED_KEY_CHARS:
        return _short_key_parts(key)
    data = key_bytes(key)
    return data, key_hash(data)
