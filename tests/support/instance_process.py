"""A pgcache instance in a process of its own, driven over a pipe (for tests of what crosses
process boundaries: a relay hosted in another process, a process that is stopped or
killed)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from typing import Any

from pgcache import CacheSettings, PostgresCache
from pgcache._relay import RelayLink


def runs_relay(cache: PostgresCache) -> bool:
    """Whether the host's relay runs in the process of ``cache``."""
    link = cache._parts.listener if cache._parts is not None else None
    return isinstance(link, RelayLink) and link.runs_relay


async def _serve(fields: dict[str, Any], pipe: Connection) -> None:
    cache = PostgresCache(CacheSettings(**fields))
    await cache.connect()
    pipe.send(("ready", cache.instance_id, runs_relay(cache)))
    while True:
        command, *args = await asyncio.to_thread(pipe.recv)
        if command == "close":
            await cache.close()
            pipe.send(("closed",))
            return
        try:
            if command == "stats":
                result: Any = cache.stats.as_dict() | {"hosts_relay": runs_relay(cache)}
            elif command == "get_local":
                result = cache.get_local(*args)
            else:
                result = await getattr(cache, command)(*args)
        except Exception as exc:
            pipe.send(("error", repr(exc)))
        else:
            pipe.send(("ok", result))


def _main(fields: dict[str, Any], pipe: Connection) -> None:
    asyncio.run(_serve(fields, pipe))


class InstanceProcess:
    """Start with ``start()``; ``call(command, *args)`` runs a cache method in the child."""

    def __init__(self, settings: CacheSettings) -> None:
        fields = {name: getattr(settings, name) for name in CacheSettings.field_names()
                  if getattr(settings, name) is not None or name in ("listener_dsn",)}
        fields.pop("serializer", None)
        for legacy in ("disable_notiffy", "notification_queue_size", "fetch_timeout_seconds",
                       "cleanup_batch_size"):
            fields.pop(legacy, None)
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(target=_main, args=(fields, child), daemon=True)
        self.instance_id = ""
        self.hosts_relay = False

    async def start(self) -> InstanceProcess:
        self.process.start()
        reply = await asyncio.wait_for(asyncio.to_thread(self._pipe.recv), 60)
        assert reply[0] == "ready", reply
        self.instance_id, self.hosts_relay = reply[1], reply[2]
        return self

    async def call(self, command: str, *args: Any, within: float = 30.0) -> Any:
        self._pipe.send((command, *args))
        reply = await asyncio.wait_for(asyncio.to_thread(self._pipe.recv), within)
        if reply[0] == "error":
            raise AssertionError(f"{command}{args} failed in the child: {reply[1]}")
        return reply[1] if len(reply) > 1 else None

    def signal(self, signum: int) -> None:
        assert self.process.pid is not None
        os.kill(self.process.pid, signum)

    async def stop(self) -> None:
        if self.process.is_alive():
            self.signal(signal.SIGCONT)
            try:
                await self.call("close", within=10)
            except (AssertionError, TimeoutError, EOFError, OSError):
                self.process.kill()
        await asyncio.to_thread(self.process.join, 10)
