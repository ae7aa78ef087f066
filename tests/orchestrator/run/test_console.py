"""orchestrator.run.console: what a run says, on a terminal and elsewhere."""

from __future__ import annotations

import io

from orchestrator.redaction import learn_secrets
from orchestrator.run.console import Console


class _Terminal(io.StringIO):
    """A console stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class TestConsole:
    def test_lines_elsewhere(self) -> None:
        """Off a terminal: every line is a line of its own, progress included, redacted."""
        learn_secrets({"options": {"password": "s3cret-console"}})
        err, out = io.StringIO(), io.StringIO()
        console = Console(err, out)
        console.say("connecting with s3cret-console")
        console.progress("pg", 50, 1, 2.0, 200)
        console.summary("the summary")
        assert err.getvalue().splitlines() == [
            "connecting with ***", "pg: 50/200 (25%) ops, 25 ops/s, 1 errors, 2.0 s"]
        assert out.getvalue() == "the summary\n"
        assert console.progress_interval_s == 2.0

    def test_quiet_keeps_what_must_be_said(self) -> None:
        """Quiet: no notes and no progress, but failures and the summary."""
        err, out = io.StringIO(), io.StringIO()
        console = Console(err, out, quiet=True)
        console.note("pass started")
        console.progress("pg", 1, 0, 1.0, None)
        console.say("worker 0 failed")
        console.summary("the summary")
        assert (err.getvalue(), out.getvalue()) == ("worker 0 failed\n", "the summary\n")

    def test_a_terminal_rewrites_its_progress_line(self) -> None:
        """On a terminal, progress stays on one line, other lines clear it first, and the
        summary starts after the line progress left open."""
        err, out = _Terminal(), io.StringIO()
        console = Console(err, out)
        console.progress("pg", 10, 0, 1.0, None)
        console.say("a caution")
        console.summary("the summary")
        assert err.getvalue() == ("\r\x1b[Kpg: 10 ops, 10 ops/s, 0 errors, 1.0 s"
                                  "\r\x1b[Ka caution\n\n")
        assert out.getvalue() == "the summary\n"
        assert console.progress_interval_s == 0.5
