"""The orchestrator's errors: one root, each subclass for one thing a user must fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises on purpose."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a workload: where, what was expected, what was found."""

    path: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.path}: expected {self.expected}, found {self.found}"


class WorkloadError(OrchestratorError):
    """The workload file is missing, unreadable, or invalid; every issue is listed."""

    exit_code = 2

    def __init__(self, source: str, issues: Sequence[Issue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        count = len(self.issues)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}:\n{lines}")


class UsageError(OrchestratorError):
    """A command-line argument is wrong (unknown run id, bad --set, ...)."""

    exit_code = 2


class BackendError(OrchestratorError):
    """A backend could not be created, prepared or connected."""


class NetworkError(OrchestratorError):
    """Network emulation could not be set up (mode unavailable, proxy unreachable, ...)."""


class WorkerError(OrchestratorError):
    """A worker process failed; the message names it and its exit code."""


class ResultsError(OrchestratorError):
    """The results database could not be opened, written or queried."""
