"""A model-based test: random interleavings of every public call on three instances of one
cache (one event loop, real PostgreSQL), with calls cancelled and instances closed (and
replaced) at random points, checked against pgcache's invariants.

A trigger on the cache table records every row it ever held (value, version, tombstone) and
every truncate, so that each value a call returns names its version: values are unique per
write. What an instance knows of a key is what it was told (its invalidation callbacks) and
what it wrote itself (``set``/``set_many`` return the version, a fill's value is its own).
Checked: no call returns a version below one its instance knew when the call began; only
pgcache's errors, the loader's own error, and CancelledError for a cancelled call escape;
two fills of a key are separated by a delete or a truncate (the loader ran once per miss)
unless an instance loading it was closed meanwhile; asyncio reports no unretrieved error;
and once every instance has sent its notifications, each local copy equals the table's row.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import pytest
from support.caches import sql, sql_script
from support.faultproxy import FaultProxy
from support.loopchecks import no_unretrieved_errors

from pgcache import CacheSettings, PgCacheError, PostgresCache
from pgcache._schema import SchemaNames

KEYS = [f"k{i}" for i in range(6)]
# Announced for a write whose outcome is unknown ("drop whatever you hold"): not a version.
UNKNOWN = (1 << 63) - 1


class LoaderError(Exception):
    """What the model's raising loaders raise."""


@dataclass
class Instance:
    uid: int
    cache: PostgresCache
    # (tick, key, version) of every invalidation callback.
    told: list[tuple[int, str, int]] = field(default_factory=list)
    closed_at: int | None = None


@dataclass
class Call:
    uid: int  # the instance
    name: str
    keys: list[str]
    start: int
    end: int = -1
    cancelled: bool = False
    result: Any = None
    error: BaseException | None = None
    written: dict[str, int] = field(default_factory=dict)  # set/set_many: key -> version


class Model:
    """Drives random calls and records what happened."""

    def __init__(self, settings: CacheSettings, seed: int) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.clock = itertools.count()
        self.ids = itertools.count()
        self.slots: list[Instance] = []
        self.instances: list[Instance] = []
        self.calls: list[Call] = []
        self.tasks: set[asyncio.Task[None]] = set()
        # Loader value -> (instance, tick when its loader began).
        self.loaded: dict[bytes, tuple[int, int]] = {}

    async def open(self) -> Instance:
        uid = next(self.ids)
        cache = PostgresCache(self.settings)
        instance = Instance(uid, cache)

        def callback(key: str | None, version: int | None) -> None:
            if key is not None and version is not None and version < UNKNOWN:
                instance.told.append((next(self.clock), key, version))

        cache.add_invalidation_callback(callback)
        await cache.connect()
        self.instances.append(instance)
        return instance

    def value(self, kind: str, uid: int) -> bytes:
        return f"{kind}:{uid}:{next(self.ids)}".encode()

    def loader(self, uid: int) -> Callable[[], Any]:
        kind = self.rng.choice(["sync", "async", "slow", "raises", "none"])
        value = self.value("L", uid)

        def sync() -> bytes:
            self.loaded[value] = (uid, next(self.clock))
            return value

        async def slow() -> bytes:
            self.loaded[value] = (uid, next(self.clock))
            await asyncio.sleep(self.rng.random() * (0.03 if kind == "slow" else 0.002))
            return value

        async def raises() -> bytes:
            await asyncio.sleep(0)
            raise LoaderError("the loader's own error")

        def none() -> None:
            return None

        return {"sync": sync, "async": slow, "slow": slow, "raises": raises,
                "none": none}[kind]

    def operation(self, instance: Instance
                  ) -> tuple[str, list[str], Callable[[], Awaitable[Any]]]:
        """A random call on ``instance``: its name, its keys, and how to start it."""
        rng, cache, uid = self.rng, instance.cache, instance.uid
        key = rng.choice(KEYS)
        name = rng.choices(
            ["get", "get_many", "get_local", "set", "set_many", "delete", "invalidate",
             "get_or_set", "truncate"],
            weights=[6, 2, 3, 4, 2, 3, 1, 10, 0.3])[0]
        if name == "get":
            return name, [key], partial(cache.get, key)
        if name == "get_many":
            keys = rng.sample(KEYS, 3)
            return name, keys, partial(cache.get_many, keys)
        if name == "get_local":
            return name, [key], partial(_now, cache.get_local, key)
        if name == "set":
            return name, [key], partial(cache.set, key, self.value("S", uid))
        if name == "set_many":
            keys = rng.sample(KEYS, 2)
            return name, keys, partial(cache.set_many, {k: self.value("S", uid) for k in keys})
        if name in ("delete", "invalidate"):
            return name, [key], partial(getattr(cache, name), key)
        if name == "get_or_set":
            return name, [key], partial(cache.get_or_set, key, self.loader(uid))
        return name, [], cache.clear if rng.random() < 0.5 else cache.truncate

    async def step(self) -> None:
        rng = self.rng
        if rng.random() < 0.01:
            await self.replace(rng.randrange(len(self.slots)))
            return
        instance = rng.choice(self.slots)
        name, keys, start = self.operation(instance)
        if name == "get_or_set" and rng.random() < 0.3:
            await self.burst(instance, keys[0])
        else:
            await self.maybe_cancel(self.start(instance, name, keys, start))
        if len(self.tasks) > 10 or (self.tasks and rng.random() < 0.3):
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)

    async def burst(self, instance: Instance, key: str) -> None:
        """Calls of one instance sharing a load of a key another instance just deleted, and
        perhaps another write of the key while they load, then more calls joining; one of
        them perhaps cancelled."""
        rng = self.rng
        other = rng.choice(self.slots)
        await self.start(other, "delete", [key], partial(other.cache.delete, key))[1]
        calls = [self.get_or_set(instance, key) for _ in range(rng.randrange(1, 4))]
        if rng.random() < 0.6:
            await asyncio.sleep(rng.random() * 0.015)
            if rng.random() < 0.5:
                self.start(other, "delete", [key], partial(other.cache.delete, key))
            else:
                self.start(other, "set", [key],
                           partial(other.cache.set, key, self.value("S", other.uid)))
            await asyncio.sleep(rng.random() * 0.01)
            calls += [self.get_or_set(instance, key) for _ in range(rng.randrange(1, 3))]
        await self.maybe_cancel(rng.choice(calls), always=rng.random() < 0.5)

    def get_or_set(self, instance: Instance, key: str) -> tuple[Call, asyncio.Task[None]]:
        return self.start(instance, "get_or_set", [key],
                          partial(instance.cache.get_or_set, key, self.loader(instance.uid)))

    def start(self, instance: Instance, name: str, keys: list[str],
              start: Callable[[], Awaitable[Any]]) -> tuple[Call, asyncio.Task[None]]:
        call = Call(instance.uid, name, keys, next(self.clock))
        self.calls.append(call)
        task = asyncio.ensure_future(self.run(call, start))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return call, task

    async def maybe_cancel(self, started: tuple[Call, asyncio.Task[None]], *,
                           always: bool = False) -> None:
        """Cancel the call (sometimes) after a few loop turns or a short delay."""
        rng = self.rng
        if not always and rng.random() >= 0.15:
            return
        if rng.random() < 0.5:
            for _ in range(rng.randrange(40)):
                await asyncio.sleep(0)
        else:
            await asyncio.sleep(rng.random() * 0.01)
        call, task = started
        if not task.done():
            call.cancelled = True
            task.cancel()

    async def run(self, call: Call, start: Callable[[], Awaitable[Any]]) -> None:
        try:
            call.result = await start()
        except asyncio.CancelledError:
            call.error = asyncio.CancelledError()
        except BaseException as exc:  # recorded and judged by check_errors
            call.error = exc
        call.end = next(self.clock)
        if call.error is None:
            if call.name == "set":
                call.written = {call.keys[0]: call.result}
            elif call.name == "set_many":
                call.written = dict(call.result)

    async def replace(self, slot: int) -> None:
        old = self.slots[slot]
        old.closed_at = next(self.clock)
        await old.cache.close()
        self.slots[slot] = await self.open()

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.wait(self.tasks)


async def _now(function: Callable[[str], Any], key: str) -> Any:
    return function(key)


async def _history(settings: CacheSettings) -> list[Any]:
    return list(await sql(settings.dsn, f'SELECT id, key, value, version, dead FROM '
                                        f'"{settings.schema_prefix}model_history" ORDER BY id'))


async def _record_history(settings: CacheSettings, table: str) -> None:
    h = f'"{settings.schema_prefix}model_history"'
    fn = f'"{settings.schema_prefix}model_row"'
    tr = f'"{settings.schema_prefix}model_truncate"'
    await sql_script(settings.dsn, f"""
        CREATE TABLE {h} (id bigserial PRIMARY KEY, key bytea, value bytea, version bigint,
                          dead boolean);
        CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            INSERT INTO {h} (key, value, version, dead)
            VALUES (NEW.key, NEW.value, NEW.version, NEW.expires_at = '-infinity');
            RETURN NULL; END $$;
        CREATE FUNCTION {tr}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            INSERT INTO {h} (key, value, version, dead) VALUES (NULL, NULL, NULL, true);
            RETURN NULL; END $$;
        CREATE TRIGGER model_row AFTER INSERT OR UPDATE ON "{table}"
            FOR EACH ROW EXECUTE FUNCTION {fn}();
        CREATE TRIGGER model_truncate AFTER TRUNCATE ON "{table}"
            FOR EACH STATEMENT EXECUTE FUNCTION {tr}();
    """)


async def _drop_history(settings: CacheSettings) -> None:
    p = settings.schema_prefix
    await sql_script(settings.dsn, f'DROP TABLE IF EXISTS "{p}model_history"; '
                                   f'DROP FUNCTION IF EXISTS "{p}model_row"() CASCADE; '
                                   f'DROP FUNCTION IF EXISTS "{p}model_truncate"() CASCADE')


def check_errors(model: Model) -> list[str]:
    """Only pgcache's errors, the loader's own, and CancelledError for a cancelled call."""
    wrong = []
    for call in model.calls:
        error = call.error
        if error is None or isinstance(error, PgCacheError):
            continue
        if isinstance(error, LoaderError) and call.name == "get_or_set":
            continue
        if isinstance(error, asyncio.CancelledError) and call.cancelled:
            continue
        where = traceback.extract_tb(error.__traceback__)[-1]
        wrong.append(f"{call.name}{call.keys} on {call.uid}: {error!r} at "
                     f"{where.filename}:{where.lineno}")
    return wrong


def check_versions(model: Model, history: list[Any]) -> list[str]:
    """No call returned a version below one its instance knew when the call began."""
    version_of = {bytes(row[2]): row[3] for row in history if row[2]}
    # (instance, key) -> [(tick, version)] of what the instance learned.
    learned: dict[tuple[int, str], list[tuple[int, int]]] = defaultdict(list)
    for instance in model.instances:
        for tick, key, version in instance.told:
            learned[instance.uid, key].append((tick, version))
    for call in model.calls:
        for key, version in call.written.items():
            learned[call.uid, key].append((call.end, version))
        if call.name == "get_or_set" and call.error is None and call.result is not None:
            loader = model.loaded.get(call.result)
            if loader is not None and loader[0] == call.uid:
                learned[call.uid, call.keys[0]].append((call.end,
                                                        version_of[call.result]))
    wrong = []
    for call in model.calls:
        if call.error is not None or call.result is None:
            continue
        if call.name in ("get", "get_local", "get_or_set"):
            served = {call.keys[0]: call.result}
        elif call.name == "get_many":
            served = call.result
        else:
            continue
        for key, value in served.items():
            if value not in version_of:
                wrong.append(f"{call.name}({key}) on {call.uid} returned {value!r}, which "
                             "was never stored")
                continue
            known = max((v for tick, v in learned[call.uid, key] if tick < call.start),
                        default=0)
            if version_of[value] < known:
                wrong.append(f"{call.name}({key}) on {call.uid} (tick {call.start}) returned "
                             f"version {version_of[value]} ({value!r}), below {known} it knew")
    return wrong


def check_loads(model: Model, history: list[Any]) -> list[str]:
    """Between two fills of a key there is a delete or a truncate (once per miss), unless
    the instance of one of them was closed after its loader began."""
    exempt = set()
    closed = {i.uid: i.closed_at for i in model.instances}
    for value, (uid, began) in model.loaded.items():
        at = closed[uid]
        if at is not None and at >= began:
            exempt.add(value)
    wrong = []
    last_fill: dict[bytes, Any] = {}
    for row in history:
        ident, key, value, version, dead = row
        if key is None:  # a truncate: every key is missing
            last_fill.clear()
            continue
        key, value = bytes(key), bytes(value)
        if dead:
            last_fill.pop(key, None)
            continue
        if not value.startswith(b"L:"):
            continue
        previous = last_fill.get(key)
        if previous is not None and previous[2] not in exempt and value not in exempt:
            wrong.append(f"{key!r} was loaded twice for one miss: {bytes(previous[2])!r} "
                         f"then {value!r}")
        last_fill[key] = (ident, version, value)
    return wrong


async def check_coherent(model: Model, settings: CacheSettings) -> None:
    """Once notifications are out, every local copy equals the table's row (bounded): the
    writes of an instance closed while they were on the wire included."""
    table = model.slots[0].cache.table_name
    for instance in model.slots:
        assert await instance.cache.wait_notified(10)
    wrong: list[str] = []
    for _ in range(100):
        rows = await sql(settings.dsn, f'SELECT key, value FROM "{table}" '
                                       "WHERE expires_at IS NULL OR expires_at > now()")
        table_rows = {bytes(k).decode(): bytes(v) for k, v in rows}
        wrong = [f"{key} on {instance.uid}: local {local!r}, row {table_rows.get(key)!r}"
                 for instance in model.slots for key in KEYS
                 if (local := instance.cache.get_local(key)) is not None
                 and local != table_rows.get(key)]
        if not wrong:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"local copies differ from the table after quiescence: {wrong[:5]}")


async def run_model(settings: CacheSettings, seed: int, steps: int,
                    caplog: pytest.LogCaptureFixture) -> Model:
    proxy = await FaultProxy.for_dsn(settings.dsn).start()
    # Latency on every route (pool, lock session, notifier, listener) widens the windows in
    # which calls, notifications and cancellations overtake each other.
    proxy.delay(0.002, 0.002)
    direct = settings
    settings = replace(settings, dsn=proxy.rewrite(settings.dsn), lock_timeout_seconds=10)
    model = Model(settings, seed)
    caplog.set_level(logging.WARNING, logger="pgcache")
    async with no_unretrieved_errors():
        await _record_history(direct, SchemaNames.from_settings(settings).table)
        try:
            model.slots = [await model.open() for _ in range(3)]
            for _ in range(steps):
                await model.step()
            await model.drain()
            await check_coherent(model, direct)
            history = await _history(direct)
            problems = check_errors(model) + check_versions(model, history)
            if not any("lock session was lost" in r.getMessage() for r in caplog.records):
                problems += check_loads(model, history)
            assert not problems, f"seed {seed}: {len(problems)} problem(s): {problems[:8]}"
        finally:
            await model.drain()
            for instance in model.slots:
                await instance.cache.close()
            await proxy.close()
            await _drop_history(direct)
    return model


class TestModel:
    @pytest.mark.parametrize("seed", [1, 2])
    async def test_random_interleavings_keep_the_invariants(
            self, settings: CacheSettings, seed: int, caplog: pytest.LogCaptureFixture) -> None:
        """Three instances, 300 random calls (some cancelled, an instance now and then closed
        and replaced): every invariant holds and the copies end equal to the table."""
        model = await run_model(settings, seed, 300, caplog)
        assert sum(c.name == "get_or_set" for c in model.calls) > 50

    @pytest.mark.slow
    @pytest.mark.parametrize("seed", range(10, 20))
    async def test_random_interleavings_keep_the_invariants_long(
            self, settings: CacheSettings, seed: int, caplog: pytest.LogCaptureFixture) -> None:
        """The same, 3000 calls per seed."""
        await run_model(settings, seed, 3000, caplog)
