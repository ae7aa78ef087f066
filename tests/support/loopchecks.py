"""Checks on the running event loop: errors asyncio reports only to its exception handler
("Future exception was never retrieved", "Task was destroyed but it is pending")."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any


@contextlib.asynccontextmanager
async def no_unretrieved_errors(ignore: Callable[[dict[str, Any]], bool] | None = None
                                ) -> AsyncIterator[list[dict[str, Any]]]:
    """Fail if, while the block runs (and at a garbage collection after it), asyncio reports
    an error nobody retrieved (other than those ``ignore`` accepts); yields the list of
    reports collected so far."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()

    def record(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if ignore is None or not ignore(context):
            reports.append(context)

    loop.set_exception_handler(record)
    try:
        yield reports
        # Let callbacks scheduled by the block run, then collect what it left behind: a
        # future is reported when it is garbage-collected with its exception unread.
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    messages = [f"{r.get('message')}: {r.get('exception')!r}" for r in reports]
    assert not reports, f"asyncio reported {len(reports)} unretrieved error(s): {messages[:5]}"

