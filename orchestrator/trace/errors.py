"""The one error of reading, generating and summarising traces."""

from __future__ import annotations

from orchestrator.errors import ExitCode, OrchestratorError

# A found text from a hostile file may be huge: messages show this much of it.
_FOUND_LIMIT = 160


class TraceError(OrchestratorError):
    """A trace that cannot be read (a malformed line, a truncated or corrupt compressed file,
    a missing file), or generator parameters that cannot be used: where, what was expected,
    what was found. ``line`` is None where no line number is known."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, source: str, expected: str, found: str, *,
                 line: int | None = None) -> None:
        self.source = source
        self.line = line
        self.expected = expected
        self.found = found
        where = source if line is None else f"{source}, line {line:,}"
        super().__init__(f"{where}: expected {expected}, found {_shown(found)}")


def _shown(text: str) -> str:
    return text if len(text) <= _FOUND_LIMIT else text[:_FOUND_LIMIT - 3] + "..."
