"""How non-bytes values become bytes: a small pluggable protocol with a JSON default."""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from ._errors import CacheSerializationError


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
            return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
                "utf-8", "surrogatepass")
        except (TypeError, ValueError) as exc:
            raise CacheSerializationError(
                f"value of type {type(value).__name__} is not JSON-serializable: {exc}",
                hint="pass bytes, or configure CacheSettings.serializer",
            ) from exc

    def loads(self, data: bytes) -> Any:
        try:
            return json.loads(data.decode("utf-8", "surrogatepass"))
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
