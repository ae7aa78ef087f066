"""Tests for the valkey-client-cache backend against the embedded Valkey."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from orchestrator.backends.valkey_client_cache import ValkeyClientCacheBackend
from orchestrator.backends.valkey_tracking import ValkeyTrackingBackend
from orchestrator.errors import BackendError
from proxies import Endpoints


def endpoints(valkey_url: str) -> Endpoints:
    return Endpoints(postgres_dsn="", valkey_url=valkey_url, postgres_listener_dsn="")


async def settle(backend: ValkeyClientCacheBackend, key: str, expected: bytes | None) -> None:
    """Wait (bounded) until the server's invalidation can have reached the socket."""
    for _ in range(100):
        await asyncio.sleep(0.01)
        if (await backend.get(key)).value == expected:
            return


@pytest.fixture
async def pair(valkey_url: str) -> AsyncIterator[
        tuple[ValkeyClientCacheBackend, ValkeyClientCacheBackend]]:
    a = ValkeyClientCacheBackend("valkey-client-cache", {}, endpoints(valkey_url))
    b = ValkeyClientCacheBackend("valkey-client-cache", {}, endpoints(valkey_url))
    await a.prepare()
    await a.connect()
    await b.connect()
    yield a, b
    await a.close()
    await b.close()


class TestLocalCache:
    """Reads are served locally once cached, and a write elsewhere invalidates them."""

    async def test_second_read_is_local(
        self, pair: tuple[ValkeyClientCacheBackend, ValkeyClientCacheBackend]
    ) -> None:
        """The first read goes to the server; the next one is answered from the cache."""
        a, b = pair
        await a.set("k1", b"v1", 5)
        first = await b.get("k1")
        assert (first.value, first.local) == (b"v1", False)
        second = await b.get("k1")
        assert (second.value, second.local) == (b"v1", True)
        assert b.stats()["local_hits"] == 1

    async def test_write_from_other_instance_invalidates(
        self, pair: tuple[ValkeyClientCacheBackend, ValkeyClientCacheBackend]
    ) -> None:
        """A's write evicts B's copy, B reports the invalidation, and reads the new value."""
        a, b = pair
        seen: list[tuple[str, int | None, int]] = []
        b.set_invalidation_hook(lambda key, version, ts: seen.append((key, version, ts)))
        await a.set("k2", b"old", 5)
        await b.get("k2")
        assert (await b.get("k2")).local
        await a.set("k2", b"new", 5)
        await settle(b, "k2", b"new")
        fresh = await b.get("k2")
        assert fresh.value == b"new"
        assert [(k, v) for k, v, _ in seen] == [("k2", None)]
        assert seen[0][2] > 0
        again = await b.get("k2")
        assert (again.value, again.local) == (b"new", True)

    async def test_delete_and_unicode_keys(
        self, pair: tuple[ValkeyClientCacheBackend, ValkeyClientCacheBackend]
    ) -> None:
        """A delete elsewhere invalidates a non-ASCII key; the miss is not served locally."""
        a, b = pair
        key = "ключ-🔑"
        seen: list[str] = []
        b.set_invalidation_hook(lambda k, v, ts: seen.append(k))
        await a.set(key, b"x", 5)
        await b.get(key)
        await a.delete(key)
        await settle(b, key, None)
        gone = await b.get(key)
        assert (gone.value, gone.local) == (None, False)
        assert seen == [key]

    async def test_expiry_invalidates(
        self, pair: tuple[ValkeyClientCacheBackend, ValkeyClientCacheBackend]
    ) -> None:
        """A key expiring on the server is not served from the local cache afterwards."""
        a, b = pair
        await a.set("k3", b"short", 0.05)
        await b.get("k3")
        await asyncio.sleep(0.2)
        await settle(b, "k3", None)
        assert (await b.get("k3")).value is None


class TestConcurrency:
    """Many tasks sharing one instance keep the protocol intact and converge."""

    async def test_concurrent_readers_converge(
        self, pair: tuple[ValkeyClientCacheBackend, ValkeyClientCacheBackend]
    ) -> None:
        """After concurrent reads and writes, every pooled connection serves the last value."""
        a, b = pair
        keys = [f"c{i}" for i in range(4)]

        async def reader() -> None:
            for i in range(30):
                await b.get(keys[i % 4])

        async def writer() -> None:
            for i in range(30):
                await a.set(keys[i % 4], str(i).encode(), 5)

        await asyncio.gather(writer(), *(reader() for _ in range(16)))
        await asyncio.sleep(0.1)
        final = {k: (await a.get(k)).value for k in keys}
        results = await asyncio.gather(*(b.get(k) for k in keys for _ in range(16)))
        assert [r.value for r in results] == [final[k] for k in keys for _ in range(16)]
        assert b.stats()["connections"] > 1


class TestPerConnectionCopies:
    """Why the stock client's hit ratio is low: its copies belong to pooled connections."""

    async def test_hit_ratio_below_one_shared_cache(
        self, pair: tuple[ValkeyClientCacheBackend, ValkeyClientCacheBackend], valkey_url: str
    ) -> None:
        """Sixteen tasks reading 80 keys three times in their own orders: each pooled
        connection misses each key once, so far fewer reads are local than with one cache per
        instance (valkey-tracking), which misses each key once."""
        a, b = pair
        keys = [f"pc{i}" for i in range(80)]
        for key in keys:
            await a.set(key, b"v", 30)
        tracking = ValkeyTrackingBackend("valkey-tracking", {}, endpoints(valkey_url))
        await tracking.connect()
        try:
            ratios = []
            for backend in (b, tracking):
                async def reader(seed: int, x: ValkeyClientCacheBackend | ValkeyTrackingBackend
                                 = backend) -> list[bool]:
                    order = random.Random(seed).sample(keys * 3, len(keys) * 3)
                    return [(await x.get(k)).local for k in order]

                reads = [r for task in await asyncio.gather(*(reader(i) for i in range(16)))
                         for r in task]
                ratios.append(sum(reads) / len(reads))
        finally:
            await tracking.close()
        stock, shared = ratios
        assert b.stats()["connections"] > 1
        assert stock < 0.8 and shared > 0.9, ratios


class TestMisuse:
    """Each misuse has its own message."""

    def test_reserved_and_unknown_options(self, valkey_url: str) -> None:
        """Options the backend sets itself, and unknown ones, are refused by name."""
        with pytest.raises(BackendError, match="cache_enabled are set by the orchestrator"):
            ValkeyClientCacheBackend("v", {"cache_enabled": False}, endpoints(valkey_url))
        with pytest.raises(BackendError, match="unknown option\\(s\\) bogus"):
            ValkeyClientCacheBackend("v", {"bogus": 1}, endpoints(valkey_url))

    async def test_not_connected(self, valkey_url: str) -> None:
        """Using the backend before connect says so."""
        backend = ValkeyClientCacheBackend("v", {"cache_max_size": 100}, endpoints(valkey_url))
        with pytest.raises(BackendError, match="backend is not connected"):
            await backend.get("k")
