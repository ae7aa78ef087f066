"""Concurrent set() calls of one instance, sharing statements.

At most ``slots`` write statements are in flight. A write that finds a free slot goes out at
once on its own (a lone write pays nothing); a write that finds none queues, and when a slot
frees up the oldest queued write takes it and carries up to ``max_batch`` queued writes of
distinct keys in one statement. Every caller still gets its own version or its own error.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

# Handed to a queued write: "a statement slot is yours, lead a batch".
_LEAD = object()


class Write:
    """One set() to be written, possibly together with others."""

    __slots__ = ("data", "epoch", "future", "key", "key_bytes", "key_hash", "kind", "ttl")

    def __init__(self, key: str, key_bytes: bytes, key_hash: bytes, data: bytes, kind: int,
                 ttl: float | None, epoch: int) -> None:
        self.key = key
        self.key_bytes = key_bytes
        self.key_hash = key_hash
        self.data = data
        self.kind = kind
        self.ttl = ttl
        # The local cache's epoch when the write began (see LocalCache.begin).
        self.epoch = epoch
        self.future: asyncio.Future[Any] | None = None


WriteOne = Callable[[Write], Awaitable[int]]
WriteBatch = Callable[[list[Write]], Awaitable[list[int | BaseException]]]


class WriteQueue:
    """Shares write statements between concurrent writers (see the module docstring)."""

    __slots__ = ("_free", "_max_batch", "_queue", "_write_batch", "_write_one")

    def __init__(self, write_one: WriteOne, write_batch: WriteBatch, *, max_batch: int,
                 slots: int) -> None:
        self._write_one = write_one
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._free = slots
        self._queue: deque[Write] = deque()

    async def submit(self, write: Write) -> int:
        """Write ``write`` (alone or with others); its version, or its error raised."""
        if self._free > 0:
            self._free -= 1
            return await self._lead(write)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        write.future = future
        self._queue.append(write)
        try:
            result = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result() is _LEAD:
                self._release_slot()  # handed a slot just as we were cancelled
            raise
        if result is _LEAD:
            return await self._lead(write)
        return int(result)

    async def _lead(self, write: Write) -> int:
        """Holding a slot: write ``write`` and as many queued writes as fit."""
        try:
            batch = [write]
            keys = {write.key_hash}
            queue = self._queue
            while queue and len(batch) < self._max_batch:
                queued = queue[0]
                assert queued.future is not None
                if queued.future.done():  # its caller was cancelled
                    queue.popleft()
                    continue
                if queued.key_hash in keys:
                    break  # one statement cannot upsert a row twice; keep FIFO order
                queue.popleft()
                batch.append(queued)
                keys.add(queued.key_hash)
            if len(batch) == 1:
                return await self._write_one(write)
            # Others wait on this statement: our own cancellation must not fail theirs.
            task = asyncio.ensure_future(self._write_batch(batch))
            try:
                results = await asyncio.shield(task)
            except BaseException:
                if task.done():
                    _settle_followers(batch, task)
                else:
                    task.add_done_callback(lambda done: _settle_followers(batch, done))
                raise
        finally:
            self._release_slot()
        _settle_followers(batch, task)
        own = results[0]
        if isinstance(own, BaseException):
            raise own
        return own

    def _release_slot(self) -> None:
        queue = self._queue
        while queue:
            queued = queue.popleft()
            assert queued.future is not None
            if not queued.future.done():
                queued.future.set_result(_LEAD)  # the slot passes to the oldest waiter
                return
        self._free += 1


def _settle_followers(batch: list[Write],
                      task: asyncio.Future[list[int | BaseException]]) -> None:
    """Give the queued writes of a batch their results once its statement is done."""
    results: list[int | BaseException]
    if task.cancelled():
        results = [asyncio.CancelledError()] * len(batch)
    else:
        error = task.exception()
        results = [error] * len(batch) if error is not None else task.result()
    for queued, result in zip(batch[1:], results[1:], strict=True):
        if queued.future is None or queued.future.done():
            continue
        if isinstance(result, BaseException):
            queued.future.set_exception(result)
        else:
            queued.future.set_result(result)
