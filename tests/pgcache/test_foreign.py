"""What another program can leave for pgcache: rows it did not write, payloads it did not
send, and values nested deeper than a reader's stack allows. Only PgCacheError escapes,
nothing unreadable is installed, and the instance keeps working."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from support.caches import Inbox, at_depth, listening, nested_list, put_row, row_of

from pgcache import (
    CacheSerializationError,
    CacheServerError,
    CacheSettings,
    PgCacheError,
    PostgresCache,
)
from pgcache._payload import own_prefix
from pgcache._serializers import MAX_JSON_DEPTH

Read = Callable[[PostgresCache, str], Awaitable[Any]]
READS: list[tuple[str, Read]] = [
    ("get", lambda c, k: c.get(k)),
    ("get_many", lambda c, k: c.get_many([k, "absent"])),
    ("get_or_set", lambda c, k: c.get_or_set(k, lambda: b"loaded")),
]
JSON_DOC = json.dumps({"a": list(range(2000))}).encode()

# (label, value, kind): rows pgcache never writes.
FOREIGN_ROWS: list[tuple[str, bytes, int]] = [
    ("compressed flag over plain bytes", b"not zlib at all", 2),
    ("compressed flag over plain JSON", b'{"a": 1}', 3),
    ("truncated zlib", zlib.compress(JSON_DOC)[:-7], 3),
    ("zlib of garbage JSON", zlib.compress(b"\xff\xfe{{{"), 3),
    ("unknown kind 5", b"x", 5),
    ("negative kind", b"x", -1),
    ("largest kind", b"x", 32767),
    ("garbage JSON", b"\xff\xfe{", 1),
    ("truncated JSON", b'{"a": [1, 2', 1),
    ("empty JSON", b"", 1),
    ("JSON nested 5000 deep", b"[" * 5000 + b"]" * 5000, 1),
    ("JSON nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, 1),
]


@pytest.fixture
async def pair(settings: CacheSettings) -> AsyncIterator[tuple[PostgresCache, PostgresCache,
                                                                Inbox]]:
    """A writer and a reader instance; the reader's invalidations land in an Inbox."""
    writer = PostgresCache(settings)
    reader, inbox = listening(settings)
    async with writer, reader:
        yield writer, reader, inbox


@pytest.fixture
async def foreign(settings: CacheSettings) -> AsyncIterator[Any]:
    """A plain asyncpg connection: another program on the same database."""
    conn = await asyncpg.connect(settings.dsn)
    yield conn
    await conn.close()


async def still_works(writer: PostgresCache, reader: PostgresCache, inbox: Inbox,
                      key: str = "probe") -> None:
    """A set/get round trip on the reader, and the writer's invalidation reaching it."""
    await reader.set(key, {"ok": 1})
    assert await reader.get(key) == {"ok": 1}
    version = await writer.set(key, {"ok": 2})
    await inbox.wait_for((key, version), within=20)
    assert await reader.get(key) == {"ok": 2}


class TestForeignRows:
    async def test_a_foreign_row_is_a_serialization_error_naming_the_key(
            self, pair: tuple[PostgresCache, PostgresCache, Inbox], foreign: Any,
            settings: CacheSettings) -> None:
        """get, get_many and get_or_set of each row pgcache never writes raise
        CacheSerializationError naming the key, install nothing, and the instance works."""
        writer, reader, inbox = pair
        for label, value, kind in FOREIGN_ROWS:
            key = f"foreign {label}"
            await put_row(foreign, settings, key, value, kind, version=10**12)
            for name, read in READS:
                with pytest.raises(CacheSerializationError) as info:
                    await read(reader, key)
                assert info.value.key == key, (label, name)
                assert repr(key) in str(info.value) and isinstance(info.value, TypeError)
                assert reader.get_local(key) is None, (label, name)
            assert reader.stats.local_size == 0, label
        await still_works(writer, reader, inbox)

    async def test_odd_versions_and_expiries_are_read_safely(
            self, pair: tuple[PostgresCache, PostgresCache, Inbox], foreign: Any,
            settings: CacheSettings) -> None:
        """Versions of 0, below 0 and the largest bigint, and an infinite expiry: read as
        the bytes they hold; pgcache's next write supersedes them, except past the largest
        bigint, which the server refuses (CacheServerError 22003)."""
        writer, reader, inbox = pair
        for number, (version, expires) in enumerate([
                (0, None), (-5, None), (7, "infinity"), (2**63 - 1, None)]):
            key = f"odd {number}"
            await put_row(foreign, settings, key, b"raw", 0, version, expires)
            assert await reader.get(key) == b"raw"
            assert await reader.get_many([key]) == {key: b"raw"}
            if version < 2**63 - 1:
                await inbox.wait_for((key, await writer.set(key, b"new")), within=20)
                assert await reader.get(key) == b"new"
            else:
                with pytest.raises(CacheServerError) as info:
                    await writer.set(key, b"new")
                assert info.value.sqlstate == "22003"
        await still_works(writer, reader, inbox)


class TestForeignPayloads:
    async def test_an_unreadable_payload_drops_every_copy(
            self, pair: tuple[PostgresCache, PostgresCache, Inbox], foreign: Any,
            settings: CacheSettings) -> None:
        """A payload pgcache cannot read (an item it cannot apply, postgres-cache 0.1.1's
        format) may have announced any write: the reader counts it, flushes its copies
        (callbacks hear (None, None)) and keeps listening."""
        writer, reader, inbox = pair
        payloads = ['["someone", 1, "not a version", "k"]', "u1\x1fk"]
        for number, payload in enumerate(payloads, start=1):
            await writer.set("k", b"1")
            assert await reader.get("k") == b"1" and reader.get_local("k") == b"1"
            flushes = reader.stats.local_flushes
            inbox.items.clear()
            await foreign.execute("SELECT pg_notify($1, $2)", settings.notify_channel,
                                  payload)
            await inbox.wait_for((None, None), within=20)
            assert reader.get_local("k") is None
            assert reader.stats.foreign_notifications == number
            assert reader.stats.local_flushes > flushes
        await still_works(writer, reader, inbox)


def _payload_items() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(),
                       st.integers(min_value=-(2**80), max_value=2**80),
                       st.floats(allow_nan=False), st.text(max_size=10))
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3), max_leaves=8)


TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
# Anything another program can NOTIFY on the channel (PostgreSQL takes no NUL, asyncpg no
# lone surrogate, and at most 7999 bytes).
PAYLOADS = st.one_of(
    st.text(TEXT, max_size=300),
    st.builds(lambda items: json.dumps(items), st.lists(_payload_items(), max_size=8)),
    st.builds(lambda sender, seq, items: json.dumps([sender, seq, *items]),
              st.text(max_size=8), st.integers(min_value=-(2**70), max_value=2**70),
              st.lists(_payload_items(), max_size=6)),
    st.builds(lambda n: "[" * n + "]" * n, st.integers(min_value=1, max_value=3999)),
    st.builds(lambda n: "[" * n, st.integers(min_value=1, max_value=7999)),
    st.builds(lambda n: "x" * n, st.sampled_from([7000, 7999])),
    st.builds(lambda n: '["a",1,' + "9" * n + ',"k"]', st.sampled_from([19, 20, 4500, 7000])),
    st.just('["a",1,0,null]'), st.just('["a",1,-1,null]'), st.just('["a",1,1e999,"k"]'),
    st.just('["a",1,true,"k"]'), st.just('["a",1,5,"k",6]'), st.just('["a",1,-3,"zz"]'),
    st.just('"\\ud800"'), st.just('["\\u0000",1,5,"\\udfff"]'),
)
ROWS = st.tuples(
    st.one_of(st.binary(max_size=64), st.builds(zlib.compress, st.binary(max_size=64)),
              st.builds(lambda b: zlib.compress(b)[: max(0, len(b) // 2)],
                        st.binary(min_size=1, max_size=64)),
              st.builds(lambda v: json.dumps(v).encode(), _payload_items()),
              st.builds(lambda n: b"[" * n + b"]" * n, st.integers(1, 3000))),
    st.one_of(st.integers(min_value=0, max_value=4),
              st.integers(min_value=-(2**15), max_value=2**15 - 1)),
    st.one_of(st.integers(min_value=1, max_value=2**40),
              st.integers(min_value=-(2**63), max_value=2**63 - 1)),
)


class TestFuzz:
    @hsettings(max_examples=60, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(rows=st.lists(ROWS, min_size=1, max_size=3), payloads=st.lists(PAYLOADS, max_size=3))
    async def test_only_pgcache_errors_escape_and_the_instance_keeps_working(
            self, pair: tuple[PostgresCache, PostgresCache, Inbox], foreign: Any,
            settings: CacheSettings, rows: list[tuple[bytes, int, int]],
            payloads: list[str]) -> None:
        """Rows and payloads a foreign writer could leave: every read path returns or
        raises a PgCacheError, nothing reaches asyncio's exception handler, and a write of
        the writer still reaches the reader afterwards."""
        writer, reader, inbox = pair
        loop = asyncio.get_running_loop()
        escaped: list[dict[str, Any]] = []
        previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda _, context: escaped.append(context))
        try:
            for value, kind, version in rows:
                key = f"fuzz {value[:8]!r} {kind} {version}"
                await put_row(foreign, settings, key, value, kind, version)
                for _, read in READS:
                    try:
                        await read(reader, key)
                    except PgCacheError:
                        assert reader.get_local(key) is None
                with contextlib.suppress(CacheServerError):  # a version past the largest
                    await reader.delete(key)
            for payload in [*payloads, own_prefix(reader.instance_id) + "9" * 5000]:
                await foreign.execute("SELECT pg_notify($1, $2)", settings.notify_channel,
                                      payload)
            # Notifications arrive in order: once this write's has, every payload was seen.
            await still_works(writer, reader, inbox)
        finally:
            loop.set_exception_handler(previous)
        assert not escaped, escaped[:3]


class TestHostileValues:
    @pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 981, 10_000])
    async def test_a_value_too_deep_is_refused_and_nothing_is_stored(
            self, pair: tuple[PostgresCache, PostgresCache, Inbox],
            settings: CacheSettings, depth: int) -> None:
        """set, set_many and get_or_set's fill of a value nested deeper than the JSON
        serializer reads raise CacheSerializationError; no row is written."""
        writer, reader, inbox = pair
        value = nested_list(depth)
        with pytest.raises(CacheSerializationError, match="levels deep"):
            await writer.set("deep", value)
        with pytest.raises(CacheSerializationError, match="levels deep"):
            await writer.set_many({"deep": value, "other": 1})
        with pytest.raises(CacheSerializationError, match="levels deep"):
            await writer.get_or_set("deep", lambda: value)
        assert await row_of(settings, "deep") is None
        assert await row_of(settings, "other") is None
        await still_works(writer, reader, inbox)

    @pytest.mark.parametrize("depth", [MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
    async def test_what_one_instance_stores_another_reads_on_a_deeper_stack(
            self, pair: tuple[PostgresCache, PostgresCache, Inbox], depth: int) -> None:
        """A value at the depth limit, written on a shallow stack, is read by another
        instance whose read runs far deeper in the stack (get, get_many and a local hit)."""
        writer, reader, inbox = pair
        value = nested_list(depth)
        version = await writer.set("deep", value)
        # Most of what the recursion limit leaves once the limit's own levels are taken.
        frames = sys.getrecursionlimit() - MAX_JSON_DEPTH - 250
        assert await at_depth(frames, lambda: reader.get("deep")) == value
        assert await at_depth(frames, lambda: reader.get_many(["deep"])) == {"deep": value}
        assert await at_depth(frames, lambda: _sync(reader.get_local("deep"))) == value
        await inbox.wait_for(("deep", version), within=20)
        await still_works(writer, reader, inbox)

    async def test_a_serializers_own_errors_become_serialization_errors(
            self, settings: CacheSettings) -> None:
        """A configured serializer that raises (or returns a str) on dumps or loads gives
        CacheSerializationError, never its own exception."""
        class Broken:
            def dumps(self, value: Any) -> bytes:
                if value == "str":
                    return "not bytes"  # type: ignore[return-value]
                if value == "boom":
                    raise KeyError("boom")
                return b"stored"

            def loads(self, data: bytes) -> Any:
                raise RecursionError("too deep for this one")

        broken = replace(settings, serializer=Broken())
        async with PostgresCache(broken) as cache, PostgresCache(broken) as other:
            for bad in ("str", "boom"):
                with pytest.raises(CacheSerializationError):
                    await cache.set("k", bad)
            await cache.set("k", "fine")
            with pytest.raises(CacheSerializationError):
                await cache.get("k")  # its own copy, written through
            with pytest.raises(CacheSerializationError) as info:
                await other.get("k")
            assert info.value.key == "k"
            assert other.get_local("k") is None


async def _sync(value: Any) -> Any:
    return value
