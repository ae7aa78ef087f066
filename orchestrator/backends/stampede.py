"""``get_or_set`` recipes for the Valkey backends: what a cache stampede costs without pgcache.

Two recipes, as applications usually write them over a plain key-value store:

* :func:`naive` — get, and on a miss load and set: every caller that misses runs the loader
  (a stampede: N concurrent readers of an expired hot key run it N times).
* :class:`LockRecipe` — the usual ``SET lock NX PX`` lock: a caller that misses takes a lock
  key (``SET <key>:lock <token> NX PX lock_ttl_ms``); the one that gets it reads again (the
  key may have been filled meanwhile), loads, stores, and releases the lock with a
  compare-and-delete script; the others poll: sleep ``lock_poll_ms``, read again, and try the
  lock again when it is gone, for at most ``lock_timeout_seconds``.

A backend chooses with its option ``get_or_set: naive | lock`` (see :func:`recipe_options`);
pgcache has its own, cluster-wide single flight.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.backends.base import GetResult, Loader

__all__ = ["RECIPE_OPTIONS", "LockRecipe", "LockTimeout", "RecipeOptions", "naive",
           "recipe_option_issues", "recipe_options"]

Get = Callable[[str], Awaitable[GetResult]]
Set = Callable[[str, bytes, float], Awaitable[Any]]
# (lock key, token, ttl ms) -> whether the lock was taken; (lock key, token) -> released.
Acquire = Callable[[str, str, int], Awaitable[bool]]
Release = Callable[[str, str], Awaitable[Any]]

# Deletes the lock only if it still holds our token (it may have expired and been retaken).
RELEASE_SCRIPT = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                  "return redis.call('del', KEYS[1]) else return 0 end")


class LockTimeout(TimeoutError):
    """Another caller held the lock and the key was not filled within lock_timeout_seconds."""


@dataclass(frozen=True, slots=True)
class RecipeOptions:
    """How a Valkey backend runs get_or_set."""

    get_or_set: str = "naive"  # naive | lock
    lock_ttl_ms: int = 5000
    lock_poll_ms: float = 10.0
    lock_timeout_seconds: float = 5.0


RECIPE_OPTIONS = frozenset({"get_or_set", "lock_ttl_ms", "lock_poll_ms", "lock_timeout_seconds"})


def recipe_option_issues(options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Problems with the recipe options among ``options``: (option, expected, found)."""
    issues = []
    for key in RECIPE_OPTIONS & set(options):
        value = options[key]
        if key == "get_or_set":
            if value not in ("naive", "lock"):
                issues.append((key, "naive or lock", repr(value)))
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0 \
                or (key == "lock_ttl_ms" and not isinstance(value, int)):
            issues.append((key, "an integer > 0" if key == "lock_ttl_ms" else "a number > 0",
                           repr(value)))
    return issues


def recipe_options(options: Mapping[str, Any]) -> tuple[RecipeOptions, dict[str, Any]]:
    """The recipe options among ``options`` (checked by the caller), and the others."""
    mine = {k: v for k, v in options.items() if k in RECIPE_OPTIONS}
    rest = {k: v for k, v in options.items() if k not in RECIPE_OPTIONS}
    return RecipeOptions(**mine), rest


async def naive(get: Get, set_: Set, key: str, loader: Loader,
                ttl_seconds: float) -> GetResult:
    """get; on a miss, load and set (every caller that misses loads)."""
    found = await get(key)
    if found.value is not None:
        return found
    value = await loader()
    await set_(key, value, ttl_seconds)
    return GetResult(value, False)


class LockRecipe:
    """get; on a miss, SET NX PX a lock key; the winner loads and stores, the others poll."""

    def __init__(self, options: RecipeOptions, get: Get, set_: Set, acquire: Acquire,
                 release: Release) -> None:
        self._options = options
        self._get = get
        self._set = set_
        self._acquire = acquire
        self._release = release

    async def __call__(self, key: str, loader: Loader, ttl_seconds: float) -> GetResult:
        options = self._options
        deadline = time.monotonic() + options.lock_timeout_seconds
        lock = f"{key}:lock"
        while True:
            found = await self._get(key)
            if found.value is not None:
                return found
            token = secrets.token_hex(8)
            if await self._acquire(lock, token, options.lock_ttl_ms):
                try:
                    found = await self._get(key)  # filled while we took the lock?
                    if found.value is not None:
                        return found
                    value = await loader()
                    await self._set(key, value, ttl_seconds)
                    return GetResult(value, False)
                finally:
                    await asyncio.shield(self._release(lock, token))
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"get_or_set({key[:80]!r}): another caller holds {lock!r} and the key was "
                    f"not filled within lock_timeout_seconds={options.lock_timeout_seconds}")
            await asyncio.sleep(options.lock_poll_ms / 1000)
