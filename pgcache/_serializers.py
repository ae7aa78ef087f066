"""How non-bytes values become bytes: a small pluggable protocol with a JSON default."""

from __future__ import annotations

import json
import re
from typing import Any, Protocol, runtime_checkable

from ._errors import CacheSerializationError

# The deepest nesting of lists and objects the JSON serializer writes. Python's json
# recurses once per level, within the interpreter's recursion limit (1000 by default) minus
# the depth of the stack it runs on, and a reader's stack is deeper than a writer's: without
# a bound of its own, a value one instance stored could be unreadable by the next. A value
# with more brackets than this pays one scan of its text (strings removed) on dumps().
MAX_JSON_DEPTH = 200
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
# Openers become 1, closers 0, everything else goes.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\x00\x00")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests lists and objects more than ``limit`` deep."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # the common case: too few brackets (strings' ones included) to tell
    depth = 0
    for opens in _STRING.sub(b"", data).translate(_BRACKETS, _NOT_BRACKETS):
        if opens:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _too_deep_error(what: str) -> CacheSerializationError:
    return CacheSerializationError(
        f"{what} nests lists/objects more than {MAX_JSON_DEPTH} levels deep, which the JSON "
        "serializer refuses (every instance must be able to read what one stores)",
        hint="flatten the value, or configure CacheSettings.serializer")


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back; ``bytes`` values never reach it."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """UTF-8 JSON (str, numbers, bools, None, lists, dicts)."""

    __slots__ = ()

    def dumps(self, value: Any) -> bytes:
        try:
            data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
                "utf-8", "surrogatepass")
        except RecursionError:
            raise _too_deep_error("the value") from None
        except (TypeError, ValueError) as exc:
            raise CacheSerializationError(
                f"value of type {type(value).__name__} is not JSON-serializable: {exc}",
                hint="pass bytes, or configure CacheSettings.serializer",
            ) from exc
        if too_deep(data):
            raise _too_deep_error("the value")
        return data

    def loads(self, data: bytes) -> Any:
        # No depth check here (it would cost every local hit a scan): what dumps() wrote
        # is within MAX_JSON_DEPTH, and anything deeper another program stored either
        # decodes or raises RecursionError, caught below.
        try:
            return json.loads(data.decode("utf-8", "surrogatepass"))
        except RecursionError:
            raise _too_deep_error("the stored value") from None
        except ValueError as exc:
            raise CacheSerializationError(
                f"stored value is not valid JSON: {exc}",
                hint="was it written with another serializer?",
            ) from exc

    def __repr__(self) -> str:
        return "JsonSerializer()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonSerializer)

    def __hash__(self) -> int:
        return hash(JsonSerializer)


SERIALIZERS: dict[str, Serializer] = {"json": JsonSerializer()}
