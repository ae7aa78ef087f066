"""The version invariant: once an instance has been told of version v of a key (an
invalidation for v arrived, or it wrote v itself), it never installs or serves anything older,
through any path. A fault proxy holds one instance's replies on the wire while another writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from support.caches import Inbox, listening, row_of, sql
from support.faultproxy import FaultProxy

from pgcache import CacheConnectionError, CacheSettings, PostgresCache
from pgcache._keys import key_hash
from pgcache._schema import SchemaNames, Statements

Op = Callable[[PostgresCache, FaultProxy], Awaitable[Any]]


async def via_set(a: PostgresCache, proxy: FaultProxy) -> Any:
    return await a.set("k", b"from-A")


async def via_set_many(a: PostgresCache, proxy: FaultProxy) -> Any:
    return (await a.set_many({"k": b"from-A", "other": b"x"}))["k"]


async def via_get_or_set(a: PostgresCache, proxy: FaultProxy) -> Any:
    def loader() -> bytes:
        proxy.hold()  # the fill's write is what the proxy holds
        return b"from-A"

    return await a.get_or_set("k", loader)


class TestWriteThroughNeverGoesBack:
    @pytest.fixture(params=[False, True], ids=["own listeners", "shared listener"])
    async def pair(self, settings: CacheSettings, request: pytest.FixtureRequest
                   ) -> AsyncIterator[tuple[PostgresCache, Inbox, PostgresCache, FaultProxy]]:
        """A (pool through a proxy, listener direct) and B (direct); each with a listener of
        its own, or sharing the host's relay."""
        settings = replace(settings, shared_listener=request.param)
        async with FaultProxy.for_dsn(settings.dsn) as proxy:
            a, inbox = listening(settings, dsn=proxy.rewrite(settings.dsn),
                                 listener_dsn=settings.dsn, max_pool_size=1)
            b = PostgresCache(settings)
            async with a, b:
                # Prepare every statement on A's one connection: a held reply then always
                # means "executed", never "still being prepared".
                await a.set("warm-up", b"")
                await a.set_many({"warm-up": b"", "warm-up-2": b""})
                await a.get("warm-up-miss")
                await a.get_many(["warm-up-miss", "warm-up-miss-2"])
                yield a, inbox, b, proxy

    @pytest.mark.parametrize("op", [via_set, via_set_many, via_get_or_set],
                             ids=["set", "set_many", "get_or_set"])
    async def test_own_write_overtaken_by_a_newer_one_is_not_installed(
            self, pair: tuple[PostgresCache, Inbox, PostgresCache, FaultProxy], op: Op) -> None:
        """A's write commits at v but its reply is held; B writes v+1 and A hears of it before
        its own write returns: A must not install v (it would serve "from-A" for a minute)."""
        a, inbox, b, proxy = pair
        if op is not via_get_or_set:
            proxy.hold()
        write = asyncio.ensure_future(op(a, proxy))
        await proxy.wait_held()  # A's statement committed; its reply sits in the proxy
        newer = await b.set("k", b"from-B")
        await inbox.wait_for(("k", newer))
        proxy.release()
        ours = await write
        if op is not via_get_or_set:
            assert ours < newer
        assert a.get_local("k") is None
        assert await a.get("k") == b"from-B"
        assert await a.get("k") == b"from-B" and a.get_local("k") == b"from-B"
        assert await row_of(a.settings, "k") == (b"from-B", newer)

    async def test_get_many_overtaken_by_invalidation_does_not_install(
            self, pair: tuple[PostgresCache, Inbox, PostgresCache, FaultProxy]) -> None:
        """A get_many whose answer is held while a newer version is announced installs none
        of the overtaken keys, and still installs the keys nobody touched."""
        a, inbox, b, proxy = pair
        await b.set_many({"k": b"v1", "j": b"j1"})
        proxy.hold()
        read = asyncio.ensure_future(a.get_many(["k", "j"]))
        await proxy.wait_held()
        newer = await b.set("k", b"v2")
        await inbox.wait_for(("k", newer))
        proxy.release()
        assert await read == {"k": b"v1", "j": b"j1"}  # began before the write finished
        assert a.get_local("k") is None and a.get_local("j") == b"j1"
        assert await a.get("k") == b"v2"

    async def test_write_failing_after_commit_leaves_no_old_copy(
            self, pair: tuple[PostgresCache, Inbox, PostgresCache, FaultProxy]) -> None:
        """A write whose outcome A never learns (reset after commit) drops A's older copy: A
        ignores its own notifications, so keeping the copy would serve it forever."""
        a, _, _, proxy = pair
        await a.set("k", b"old")
        assert a.get_local("k") == b"old"
        proxy.hold()
        write = asyncio.ensure_future(a.set("k", b"new"))
        await proxy.wait_held()
        proxy.reset()
        proxy.release()  # nothing is held any more: new connections go through
        with pytest.raises(CacheConnectionError):
            await write
        assert a.get_local("k") is None
        assert await a.get("k") == b"new"


class TestVersionsIncrease:
    async def test_versions_increase_through_delete_and_reinsert(
            self, settings: CacheSettings) -> None:
        """A writer whose transaction id predates a delete still writes a higher version than
        the delete's: the delete's tombstone keeps the key's version counter."""
        async with PostgresCache(settings) as cache:
            await cache.set("k", b"1")
            old = await asyncpg.connect(settings.dsn)
            try:
                async with old.transaction():
                    early_xid = await old.fetchval("SELECT txid_current()")
                    assert await cache.delete("k")
                    rows = await sql(settings.dsn, 'SELECT version FROM '
                                     f'"{cache.table_name}" WHERE key = $1', b"k")
                    deleted = rows[0][0]
                    assert deleted > early_xid
                    statements = Statements.build(SchemaNames.from_settings(settings))
                    written = await old.fetchval(statements.set, key_hash(b"k"), b"k", b"2", 0,
                                                 60.0)
                assert written > deleted
            finally:
                await old.close()
            assert await cache.get("k") == b"2"

    async def test_delete_of_missing_or_expired_key_reports_false(
            self, settings: CacheSettings) -> None:
        """delete() is True only for a live row; a tombstone reads as a miss everywhere."""
        async with PostgresCache(replace(settings, local_max_entries=0)) as cache:
            assert await cache.delete("never") is False
            await cache.set("k", b"v")
            assert await cache.delete("k") is True
            assert await cache.delete("k") is False
            assert await cache.get("k") is None and await cache.get_many(["k"]) == {}
            assert await cache.cleanup_expired() == 1  # the tombstone is swept
