"""The errors of the network emulation: one root, :class:`ProxyError`.

Each says what went wrong (``detail``) and how to fix it (``hint``). The orchestrator maps them
into its own errors at its boundary; nothing in this package knows about the orchestrator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One invalid value: where (a dotted path), what was expected, what was found.

    The one problem class of every configuration check, this package's (a fault schedule) and
    the orchestrator's (a workload, a suite): it lives here because the orchestrator may import
    this package and never the other way round.
    """

    path: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{_short(self.path)}: expected {self.expected}, found {_short(self.found)}"


def _short(text: str, limit: int = 160) -> str:
    """``text`` cut to ``limit`` characters: a path or value from a hostile file may be huge."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ProxyError(Exception):
    """Root of the network-emulation errors; ``detail``/``hint`` say what and how to fix."""

    def __init__(self, message: str, *, detail: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail
        self.hint = hint

    def __str__(self) -> str:
        parts = [self.args[0]]
        if self.detail:
            parts.append(f"detail: {self.detail}")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class ProxyConfigError(ProxyError, ValueError):
    """An argument given to this package is invalid (raised synchronously, before any I/O).

    ``problems`` lists every invalid value found, each with its path, when there are several
    (a fault schedule); callers that report problems their own way read them from there.
    """

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None,
                 problems: Sequence[ConfigProblem] = ()) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.problems = tuple(problems)


class ToxiproxyUnreachableError(ProxyError):
    """No Toxiproxy API answers at the configured URL."""


class UnknownProxyError(ProxyError):
    """A proxy name that Toxiproxy does not know."""


class PortConflictError(ProxyError):
    """Toxiproxy could not listen on a proxy's address because something else holds it."""


class UpstreamUnreachableError(ProxyError):
    """A proxy exists but no server answers through it."""


class ToxiproxyAPIError(ProxyError):
    """Toxiproxy answered with an unexpected error status."""

    def __init__(self, message: str, *, status: int, detail: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.status = status
