"""get_or_set on every backend, against the embedded Valkey and PostgreSQL: how many loaders
run when many callers miss the same key at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from support.caches import unique_name

from orchestrator.backends.base import Backend
from orchestrator.backends.registry import create_backend, option_issues
from orchestrator.backends.stampede import LockTimeout
from proxies import Endpoints

CALLERS = 12


def endpoints(postgres_dsn: str, valkey_url: str) -> Endpoints:
    return Endpoints(postgres_dsn=postgres_dsn, valkey_url=valkey_url,
                     postgres_listener_dsn=postgres_dsn)


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "postgres-cache": ("pgcache", {}),
    "valkey": ("valkey", {}),
    "valkey-lock": ("valkey", {"get_or_set": "lock"}),
    "valkey-tracking": ("valkey-tracking", {}),
    "valkey-tracking-lock": ("valkey-tracking", {"get_or_set": "lock"}),
    "null": ("null", {}),
}


@pytest.fixture
async def instances(request: pytest.FixtureRequest, postgres_dsn: str,
                    valkey_url: str) -> AsyncIterator[list[Backend]]:
    """Two instances of the backend named by the test's parameter, on fresh server state."""
    backend_type, options = CASES[request.param]
    if backend_type == "pgcache":
        name = unique_name()
        options = {**options, "schema_prefix": name, "notify_channel": f"{name}ch"}
    made = [create_backend(request.param, backend_type, options,
                           endpoints(postgres_dsn, valkey_url)) for _ in range(2)]
    await made[0].prepare()
    for backend in made:
        await backend.connect()
    yield made
    for backend in made:
        await backend.close()


def counting_loader(calls: list[int], value: bytes, seconds: float = 0.05) -> Callable[
        [], Any]:
    async def load() -> bytes:
        calls.append(1)
        await asyncio.sleep(seconds)
        return value
    return load


class TestGetOrSet:
    """The recipes differ exactly in how many loaders run for one miss."""

    @pytest.mark.parametrize(("instances", "loads"), [
        ("postgres-cache", 1), ("valkey-lock", 1), ("valkey-tracking-lock", 1),
        ("valkey", 2 * CALLERS), ("valkey-tracking", 2 * CALLERS),
    ], indirect=["instances"])
    async def test_loads_per_concurrent_miss(self, instances: list[Backend],
                                             loads: int) -> None:
        """Callers in two instances miss one key at once and all get the value: pgcache and
        the lock recipe load once, the naive recipe once per caller."""
        calls: list[int] = []
        loader = counting_loader(calls, b"loaded")
        results = await asyncio.gather(*(
            backend.get_or_set("s:hot", loader, 30) for backend in instances
            for _ in range(CALLERS)))
        assert {r.value for r in results} == {b"loaded"}
        assert len(calls) == loads
        again = await instances[1].get_or_set("s:hot", loader, 30)
        assert again.value == b"loaded" and len(calls) == loads

    @pytest.mark.parametrize("instances", ["null"], indirect=True)
    async def test_null_is_naive(self, instances: list[Backend]) -> None:
        """The null backend loads once per caller that misses, then serves its dict."""
        calls: list[int] = []
        loader = counting_loader(calls, b"v", seconds=0.01)
        await asyncio.gather(*(instances[0].get_or_set("s:n", loader, 30) for _ in range(3)))
        assert len(calls) == 3
        assert (await instances[0].get_or_set("s:n", loader, 30)).local

    @pytest.mark.parametrize("instances", ["valkey-lock"], indirect=True)
    async def test_lock_waiters_give_up(self, instances: list[Backend],
                                        postgres_dsn: str, valkey_url: str) -> None:
        """A caller that finds the lock held and the key never filled fails with LockTimeout
        after lock_timeout_seconds."""
        impatient = create_backend("valkey-lock", "valkey",
                                   {"get_or_set": "lock", "lock_timeout_seconds": 0.1},
                                   endpoints(postgres_dsn, valkey_url))
        await impatient.connect()
        try:
            slow = asyncio.create_task(instances[0].get_or_set(
                "s:slow", counting_loader([], b"v", seconds=1.0), 30))
            await asyncio.sleep(0.05)
            with pytest.raises(LockTimeout, match=r"lock_timeout_seconds=0\.1"):
                await impatient.get_or_set("s:slow", counting_loader([], b"w"), 30)
            assert (await slow).value == b"v"
        finally:
            await impatient.close()

    def test_recipe_options_are_checked(self) -> None:
        """A recipe other than naive/lock, or a bad lock setting, is named."""
        issues = option_issues("valkey", {"get_or_set": "optimistic", "lock_ttl_ms": 1.5})
        assert sorted(key for key, _, _ in issues) == ["get_or_set", "lock_ttl_ms"]
        assert not option_issues("valkey-tracking", {"get_or_set": "lock",
                                                     "lock_poll_ms": 2})
