"""What a run says while it runs: progress lines, failures and cautions on the console (stderr
by default), and the summary at its end on ``out`` (stdout by default).

Every line is redacted (no password reaches a terminal). On a terminal, progress rewrites one
line in place and every other line first clears it; elsewhere each progress line is a line of
its own, printed less often. ``quiet`` keeps failures, cautions and the summary only.
"""

from __future__ import annotations

from typing import IO, Any

import duckdb

from orchestrator.redaction import redact
from orchestrator.reports import meaning
from orchestrator.reports.table import format_summary
from orchestrator.workload.model import Workload

_CLEAR = "\r\x1b[K"  # back to the line's start, and erase it


class Console:
    """The run's console and its output stream."""

    def __init__(self, console: IO[str], out: IO[str], *, quiet: bool = False) -> None:
        self.console = console
        self.out = out
        self.quiet = quiet
        self.tty = console.isatty()

    @property
    def progress_interval_s(self) -> float:
        """How often a progress line is worth printing."""
        return 0.5 if self.tty else 2.0

    def say(self, text: str) -> None:
        """A line that is always said: a failure, a caution, an interrupt."""
        text = redact(text)
        if self.tty:
            text = _CLEAR + text
        print(text, file=self.console, flush=True)

    def note(self, text: str) -> None:
        """A progress line: said unless the run is quiet."""
        if not self.quiet:
            self.say(text)

    def progress(self, label: str, ops: int, errors: int, elapsed_s: float,
                 expected: int | None) -> None:
        """Where a pass is: operations so far (of ``expected``), their rate, errors."""
        if self.quiet:
            return
        rate = ops / elapsed_s if elapsed_s > 0 else 0.0
        share = f"/{expected:,} ({100 * ops / expected:.0f}%)" if expected else ""
        line = (f"{label}: {ops:,}{share} ops, {rate:,.0f} ops/s, {errors} errors, "
                f"{elapsed_s:.1f} s")
        if self.tty:
            print(_CLEAR + line, end="", file=self.console, flush=True)
        else:
            print(line, file=self.console, flush=True)

    def end_line(self) -> None:
        """End the line a terminal's progress left open."""
        if self.tty:
            print(file=self.console)

    def summary_text(self, conn: Any, run_id: str, status: str, rows: list[dict[str, Any]],
                     *, workload: Workload, results: str, recorded: bool,
                     next_steps: bool) -> str:
        """What the run's figures are and mean (:mod:`orchestrator.reports.meaning`); the
        bare table when the database cannot say more (the run's end was not recorded)."""
        title = f"run {run_id} ({workload.name}): {status}"
        if recorded:
            try:
                return meaning.render(conn, run_id, title=title, results=results,
                                      workload=workload, next_steps=next_steps)
            except duckdb.Error as exc:
                self.say(f"run {run_id}: could not summarise the run: {exc}")
        return format_summary(rows, "table", title=title)

    def summary(self, text: str) -> None:
        """The summary, on ``out``, after the console's last line."""
        self.end_line()
        print(text, file=self.out, flush=True)
