"""Bad arguments: every public entry point checks its arguments first, and only pgcache's own
errors ever escape (a bad argument is CacheArgumentError, a bad setting or DSN
CacheConfigError), after which the cache still works."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from support.caches import sql

from pgcache import (
    CacheArgumentError,
    CacheConfigError,
    CacheServerError,
    CacheSettings,
    PgCacheError,
    PostgresCache,
)

Call = Callable[[PostgresCache], Awaitable[Any]]


async def _sync(value: Any) -> Any:
    return value


BAD_CALLS: list[tuple[str, Call]] = [
    ("get(list)", lambda c: c.get([1, 2])),  # type: ignore[arg-type]
    ("get(dict)", lambda c: c.get({"a": 1})),  # type: ignore[arg-type]
    ("get_or_set(list)", lambda c: c.get_or_set([1], lambda: 1)),  # type: ignore[arg-type]
    ("get_many(None)", lambda c: c.get_many(None)),  # type: ignore[arg-type]
    ("get_many(123)", lambda c: c.get_many(123)),  # type: ignore[arg-type]
    ("get_many(str)", lambda c: c.get_many("abc")),
    ("get_many([1])", lambda c: c.get_many([1])),  # type: ignore[list-item]
    ("set_many(None)", lambda c: c.set_many(None)),  # type: ignore[arg-type]
    ("set_many(list)", lambda c: c.set_many([("k", 1)])),  # type: ignore[arg-type]
    ("set_many({1: v})", lambda c: c.set_many({1: b"v"})),  # type: ignore[dict-item]
    ("get_or_set(k, None)", lambda c: c.get_or_set("k", None)),  # type: ignore[arg-type]
    ("get_local(123)", lambda c: _sync(c.get_local(123))),  # type: ignore[arg-type]
    ("get_local([])", lambda c: _sync(c.get_local([]))),  # type: ignore[arg-type]
    ("set ttl 1e13", lambda c: c.set("k", b"v", ttl_seconds=1e13)),
    ("set ttl nan", lambda c: c.set("k", b"v", ttl_seconds=math.nan)),
    ("set ttl inf", lambda c: c.set("k", b"v", ttl_seconds=math.inf)),
    ("set ttl -1", lambda c: c.set("k", b"v", ttl_seconds=-1)),
    ("set ttl '5'", lambda c: c.set("k", b"v", ttl_seconds="5")),  # type: ignore[arg-type]
    ("set ttl True", lambda c: c.set("k", b"v", ttl_seconds=True)),
    ("set None", lambda c: c.set("k", None)),
    ("set(bytes key)", lambda c: c.set(b"k", b"v")),  # type: ignore[arg-type]
    ("delete(None)", lambda c: c.delete(None)),  # type: ignore[arg-type]
    ("cleanup_expired(0)", lambda c: c.cleanup_expired(0)),
    ("cleanup_expired('x')", lambda c: c.cleanup_expired("x")),  # type: ignore[arg-type]
    ("loader timeout -1", lambda c: c.get_or_set("k", lambda: 1, loader_timeout_seconds=-1)),
    ("wait_notified(nan)", lambda c: c.wait_notified(math.nan)),
    ("callback 42", lambda c: _sync(c.add_invalidation_callback(42))),  # type: ignore[arg-type]
]


@pytest.fixture
async def cache(settings: CacheSettings) -> AsyncIterator[PostgresCache]:
    async with PostgresCache(settings) as instance:
        yield instance


class TestBadArguments:
    @pytest.mark.parametrize(("label", "call"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
    async def test_bad_argument_is_an_argument_error(self, cache: PostgresCache, label: str,
                                                     call: Call) -> None:
        """Each bad call raises CacheArgumentError (a ValueError too) and nothing else."""
        with pytest.raises(CacheArgumentError) as info:
            await call(cache)
        assert isinstance(info.value, ValueError) and str(info.value)
        await cache.set("after", b"ok")
        assert await cache.get("after") == b"ok"

    @pytest.mark.parametrize("dsn", [
        "postgresql://u:p@127.0.0.1:99999/db", "postgresql://u:p@127.0.0.1:abc/db",
        "postgresql://u:p@h1:5432,h2:70000/db", "mysql://u@h/db", "", 42,
    ])
    async def test_bad_dsn_is_a_config_error(self, dsn: Any) -> None:
        """A DSN that cannot work fails when the settings are built, naming the field."""
        with pytest.raises(CacheConfigError) as info:
            CacheSettings(dsn=dsn)
        assert info.value.field == "dsn"
        with pytest.raises(CacheConfigError):
            CacheSettings(dsn="postgresql://h/db", listener_dsn=dsn)

    async def test_static_calls_check_their_settings(self) -> None:
        """init_db, drop_db and the constructor take a CacheSettings, nothing else."""
        for call in (PostgresCache.init_db, PostgresCache.drop_db):
            with pytest.raises(CacheArgumentError):
                await call("postgresql://h/db")  # type: ignore[arg-type]
        with pytest.raises(CacheArgumentError):
            PostgresCache({"dsn": "postgresql://h/db"})  # type: ignore[arg-type]


async def pool_pids(settings: CacheSettings) -> list[int]:
    """Backend pids of the pool's sessions (the pool's application_name exactly)."""
    rows = await sql(settings.dsn, "SELECT pid FROM pg_stat_activity WHERE "
                     "application_name = $1 ORDER BY pid", settings.application_name)
    return [row[0] for row in rows]


class TestServerCancels:
    async def test_statement_timeout_is_a_server_error_and_keeps_the_connection(
            self, settings: CacheSettings) -> None:
        """A statement the server cancels (statement_timeout, set in the DSN) raises
        CacheServerError with sqlstate 57014 on get, set and get_many, is not retried, and
        the pool keeps its session."""
        dsn = settings.dsn + ("&" if "?" in settings.dsn else "?") + "statement_timeout=300"
        trial = replace(settings, dsn=dsn, min_pool_size=1, max_pool_size=1)
        async with PostgresCache(trial) as cache:
            await cache.set("k", b"v")
            pids = await pool_pids(trial)
            holder = await asyncpg.connect(settings.dsn)
            try:
                await holder.execute("BEGIN")
                await holder.execute(f'LOCK TABLE "{cache.table_name}" IN ACCESS EXCLUSIVE MODE')
                calls: list[Call] = [lambda c: c.get("other"), lambda c: c.set("k", b"w"),
                                     lambda c: c.get_many(["a", "b"])]
                for call in calls:
                    with pytest.raises(CacheServerError) as info:
                        await call(cache)
                    assert info.value.sqlstate == "57014", info.value
                    assert "statement timeout" in str(info.value)
            finally:
                await holder.close()
            assert cache.stats.retries == 0
            assert await pool_pids(trial) == pids
            await cache.set("k", b"x")
            assert await cache.get("k") == b"x"
            assert await pool_pids(trial) == pids


# Anything a caller might pass by mistake.
ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.binary(max_size=20), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.builds(object), st.just(lambda: b"loaded"), st.just(lambda: None),
)
METHODS = ["get", "get_local", "get_many", "set", "set_many", "delete", "invalidate",
           "get_or_set", "cleanup_expired", "wait_notified", "add_invalidation_callback",
           "remove_invalidation_callback"]


class TestFuzz:
    @hsettings(max_examples=300, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(method=st.sampled_from(METHODS), args=st.lists(ANYTHING, max_size=3),
           kwargs=st.dictionaries(st.sampled_from(["ttl_seconds", "batch_size",
                                                   "within_seconds",
                                                   "loader_timeout_seconds"]),
                                  ANYTHING, max_size=2))
    async def test_only_pgcache_errors_escape(self, cache: PostgresCache, method: str,
                                              args: list[Any], kwargs: dict[str, Any]) -> None:
        """Any arguments to any public method: a result or a PgCacheError, never another
        exception, and the cache keeps working."""
        try:
            result = getattr(cache, method)(*args, **kwargs)
            if isinstance(result, Awaitable):
                await result
        except PgCacheError:
            pass
        except TypeError as exc:
            # Python's own call checking (wrong number of arguments, unknown keyword) is
            # not the cache's to translate; anything else is a defect.
            assert "argument" in str(exc), exc
        await cache.set("probe", b"ok")
        assert await cache.get("probe") == b"ok"

    @pytest.mark.filterwarnings("ignore:CacheSettings:DeprecationWarning")  # 0.1.1's names
    @hsettings(max_examples=200, deadline=None)
    @given(field=st.sampled_from([f for f in CacheSettings.field_names() if f != "dsn"]),
           value=ANYTHING)
    def test_any_setting_value_is_accepted_or_a_config_error(self, field: str,
                                                             value: Any) -> None:
        """Any value for any setting: valid settings, or CacheConfigError naming that field
        (itself, or in a rule that ties it to another one)."""
        try:
            replace(CacheSettings(dsn="postgresql://h/db"), **{field: value})
        except CacheConfigError as exc:
            assert exc.field == field or field in str(exc), (field, str(exc))
