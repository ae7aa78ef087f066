"""orchestrator.run.signals: SIGINT/SIGTERM of a run, noted at once, reacted to by the loop."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from orchestrator.run.signals import SIGNALS, RunSignals


@pytest.fixture(autouse=True)
def _handlers_restored() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


class TestRunSignals:
    def test_noted_at_once_and_reacted_to_by_the_loop(self) -> None:
        """A signal is counted while the main thread is busy (no await), and the loop reacts
        once it runs again: first the one reaction, then a second one for the second signal."""
        signals = RunSignals()
        reactions: list[tuple[str, int]] = []
        signals.react(lambda name, count: reactions.append((name, count)))
        seen: list[tuple[int, int]] = []

        async def run() -> None:
            with signals.installed():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # noqa: ASYNC251 - synchronous work: the loop cannot react
                seen.append((signals.count, len(reactions)))
                await asyncio.sleep(0.2)
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.sleep(0.2)

        asyncio.run(run())
        assert seen == [(1, 0)]
        assert signals.interrupted and signals.count == 2
        assert signals.name == "SIGTERM"  # the first one's
        assert reactions == [("SIGTERM", 1), ("SIGINT", 2)]

    def test_not_interrupted_without_a_signal(self) -> None:
        """No signal, no interrupt; leaving the block restores the default SIGINT handler."""
        signals = RunSignals()

        async def run() -> None:
            with signals.installed():
                await asyncio.sleep(0)

        asyncio.run(run())
        assert not signals.interrupted and signals.name == ""
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
