"""SIGINT and SIGTERM during a run: noted at once, reacted to by the event loop.

Two handlers per signal, installed for the run from its first moment to its last
(:meth:`RunSignals.installed`): the interpreter-level one notes the interrupt at once, whatever
the main thread is doing (also synchronous work such as starting a server), so that the run
sees :attr:`RunSignals.interrupted` at its next check; asyncio's, woken by the same signal,
calls the reaction the runner gave (:meth:`RunSignals.react`) with the signal's name and how
many the loop has reacted to (the first stops the workers, a second kills them).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)

Reaction = Callable[[str, int], None]  # (signal name, reactions so far including this one)


class RunSignals:
    """The interrupts of one run."""

    def __init__(self) -> None:
        self.count = 0  # signals received
        self.name = ""  # the first one's name (SIGINT, SIGTERM)
        self._reactions = 0  # signals the event loop has reacted to
        self._react: Reaction | None = None

    @property
    def interrupted(self) -> bool:
        return self.count > 0

    def react(self, reaction: Reaction) -> None:
        """What the event loop does on each signal."""
        self._react = reaction

    def _note(self, sig: int, frame: FrameType | None) -> None:
        """The interpreter's handler: notes the interrupt at once."""
        self.count += 1
        self.name = self.name or signal.Signals(sig).name

    def _on_loop(self, sig: int) -> None:
        self._reactions += 1
        if self._react is not None:
            self._react(signal.Signals(sig).name, self._reactions)

    @contextlib.contextmanager
    def installed(self) -> Iterator[RunSignals]:
        """Both handlers for the block (in a running event loop): the loop wakes and reacts
        (asyncio's handler), and the count is kept even while the loop is busy (ours, which
        replaces asyncio's no-op at the interpreter level)."""
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._on_loop, sig)
            signal.signal(sig, self._note)
        try:
            yield self
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)
