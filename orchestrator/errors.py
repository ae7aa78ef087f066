"""The orchestrator's errors: one root, each subclass for one thing a user must fix.

Every error the orchestrator raises on purpose is an :class:`OrchestratorError` and carries the
exit code the command line ends with. Errors of the layers below are mapped into these where
the orchestrator calls them: :class:`proxies.ProxyError` into :class:`NetworkError` (or into
workload issues, for an invalid fault), pgcache's and the drivers' errors into
:class:`BackendError`. One problem found in a workload or a suite is a
:class:`proxies.errors.ConfigProblem`, the class the network emulation's checks use too.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from proxies.errors import ConfigProblem


class ExitCode(enum.IntEnum):
    """How a command ends."""

    OK = 0
    FAILED = 1  # a failed run (a worker died, a server was unreachable), or errors beyond
    # what the workload allows
    BAD_INPUT = 2  # workload, arguments: nothing is written
    THRESHOLDS_FAILED = 99  # the run worked and a threshold (a suite: its target) failed
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises on purpose."""

    exit_code = ExitCode.FAILED


class WorkloadError(OrchestratorError):
    """The workload file is missing, unreadable, or invalid; every issue is kept, the first
    ``MAX_LISTED`` are in the message (then "and N more")."""

    exit_code = ExitCode.BAD_INPUT
    MAX_LISTED = 20

    def __init__(self, source: str, issues: Sequence[ConfigProblem]) -> None:
        self.source = source
        self.issues = tuple(issues)
        count = len(self.issues)
        lines = [f"  - {issue}" for issue in self.issues[:self.MAX_LISTED]]
        if count > self.MAX_LISTED:
            lines.append(f"  ... and {count - self.MAX_LISTED:,} more")
        super().__init__(f"{source}: {count:,} problem{'s' if count != 1 else ''}:\n"
                         + "\n".join(lines))


class ThresholdError(OrchestratorError):
    """A threshold expression that cannot be understood; says what was expected instead."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, expression: object, expected: str, found: str) -> None:
        super().__init__(f"threshold {expression!r}: expected {expected}, found {found}")
        self.expression = expression
        self.expected = expected
        self.found = found


class UsageError(OrchestratorError):
    """A command-line argument is wrong (unknown run id, bad --set, ...)."""

    exit_code = ExitCode.BAD_INPUT


class BackendError(OrchestratorError):
    """A backend could not be created, prepared or connected."""


class NetworkError(OrchestratorError):
    """Network emulation could not be set up (mode unavailable, proxy unreachable, ...)."""


class ServiceError(OrchestratorError):
    """An embedded server could not be started or stopped; the message says why."""


class WorkerError(OrchestratorError):
    """A worker process failed; the message names it and its exit code."""


class InterruptedRun(OrchestratorError):
    """The run was interrupted (Ctrl-C / SIGTERM) before it could finish."""

    exit_code = ExitCode.INTERRUPTED


class ResultsError(OrchestratorError):
    """The results database could not be opened, written or queried."""


class NotResults(ResultsError):
    """The results location is not a results database: another program's DuckDB file, a file
    that is not DuckDB, a directory. Nothing is changed there."""

    exit_code = ExitCode.BAD_INPUT


class ResultsUnopenable(ResultsError):
    """The results database cannot be opened or created where it is asked for (a read-only
    file system, a path through a file, /proc)."""

    exit_code = ExitCode.BAD_INPUT


class ResultsInUse(ResultsError):
    """Another process (a run still going) holds the results database; DuckDB lets no other
    process open it meanwhile."""


class QueryTimeout(ResultsError):
    """A query ran longer than ``query --timeout`` allows and was stopped."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the query ran for --timeout {timeout_s:g} s without finishing and "
                         "was stopped; narrow it (a WHERE, a LIMIT) or allow it longer: "
                         "--timeout SECONDS (0: no limit)")
        self.timeout_s = timeout_s
