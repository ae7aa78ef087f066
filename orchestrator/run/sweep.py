"""Running a suite: every point of its sweep as one run, in one results database, tagged.

:func:`run_suite` records the suite, skips the points a completed run with the same workload
measured already (a suite is resumed, or extended with new values, by running it again),
starts the servers once for all the points, and runs each remaining point's workload with
:func:`~orchestrator.run.runner.run_workload` (each run prints its own progress and summary),
tagging its run with the point. At the end it prints the suite's answer
(:mod:`orchestrator.results.findings`).

Stopping: an interrupt during a point's run stops that run as ``run`` does (what it measured
is ingested, the run is ``interrupted``) and then the suite; between runs it stops the suite
at once. Either way the points measured so far stay measured, and the same command resumes.
A point whose run fails does not stop the suite: the others run, the suite exits 1 and names
it; running the suite again runs it again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from orchestrator.backends.registry import TYPES
from orchestrator.errors import ExitCode
from orchestrator.redaction import (
    check_environment,
    learn_environment,
    learn_secrets,
    redact,
)
from orchestrator.reports.answer import format_answer
from orchestrator.results import store, suites
from orchestrator.results.findings import answer
from orchestrator.run.runner import RunOptions, needs_origin, run_workload
from orchestrator.services import services_for_run
from orchestrator.workload.suite import Point, Suite

# What a pass costs beyond its warm-up and measurement here (prepare, prefill, workers'
# start, drain, ingest): for the time estimate only.
_PASS_OVERHEAD_S = 1.5


@dataclass
class SuiteOptions:
    """Where results go, under which id, where output goes."""

    suite_id: str
    results_path: Path = store.DEFAULT_RESULTS
    console: IO[str] = field(default_factory=lambda: sys.stderr)
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    quiet: bool = False  # its runs print no progress lines


@dataclass
class SuiteOutcome:
    suite_id: str
    exit_code: ExitCode
    ran: list[tuple[str, str, str]] = field(default_factory=list)  # point, run id, status
    skipped: list[str] = field(default_factory=list)  # points measured before


def estimate_s(points: list[Point]) -> float | None:
    """Roughly how long running ``points`` takes (None: a point runs by iterations)."""
    total = 0.0
    for point in points:
        w = point.workload
        if w.duration_s is None:
            return None
        passes = len(w.backends) * w.repeat
        total += passes * (w.warmup_s + w.duration_s + _PASS_OVERHEAD_S)
    return total


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupts_raise() -> Iterator[None]:
    """Between runs, SIGINT and SIGTERM raise KeyboardInterrupt (a run sets its own handlers
    and leaves them behind)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, _raise_interrupt)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _servers_env(postgres_dsn: str, valkey_url: str) -> Iterator[None]:
    """The suite's servers as every run's ``POSTGRES_DSN`` / ``VALKEY_URL``."""
    saved = {k: os.environ.get(k) for k in ("POSTGRES_DSN", "VALKEY_URL")}
    if postgres_dsn:
        os.environ["POSTGRES_DSN"] = postgres_dsn
    if valkey_url:
        os.environ["VALKEY_URL"] = valkey_url
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class SuiteRunner:
    """Runs one suite; see the module docstring."""

    def __init__(self, suite: Suite, options: SuiteOptions) -> None:
        learn_secrets([point.workload.raw for point in suite.points])
        learn_environment()
        check_environment()
        self.suite = suite
        self.options = options

    def say(self, text: str) -> None:
        print(redact(text), file=self.options.console, flush=True)

    def run(self) -> SuiteOutcome:
        suite, options = self.suite, self.options
        outcome = SuiteOutcome(options.suite_id, ExitCode.OK)
        conn = store.connect(options.results_path)
        try:
            suites.record_suite(conn, options.suite_id, name=suite.name, text=suite.text,
                                target=suite.target_text,
                                axes=[a.to_dict() for a in suite.axes], sweep=suite.sweep,
                                compare=suite.compare)
            measured = suites.measured_points(conn, options.suite_id)
        finally:
            conn.close()
        todo = [p for p in suite.points if p.fingerprint not in measured.get(p.key, set())]
        outcome.skipped = [p.key for p in suite.points if p not in todo]
        estimate = estimate_s(todo)
        self.say(f"suite {options.suite_id}: {len(suite.points)} points, "
                 f"{len(outcome.skipped)} measured before, {len(todo)} to run"
                 + (f" (about {estimate / 60:.0f} min)" if estimate and todo else "")
                 + f", results in {options.results_path}")
        with _interrupts_raise():
            try:
                if todo:
                    self._run_points(todo, outcome)
            except KeyboardInterrupt:
                self.say(f"suite {options.suite_id}: interrupted; the points measured so far "
                         "are kept, and the same command runs the rest")
                outcome.exit_code = ExitCode.INTERRUPTED
                return outcome
        if outcome.exit_code != ExitCode.INTERRUPTED:
            unmet = self._print_answer()
            if unmet and outcome.exit_code == ExitCode.OK:
                outcome.exit_code = ExitCode.THRESHOLDS_FAILED
        return outcome

    def _run_points(self, todo: list[Point], outcome: SuiteOutcome) -> None:
        servers = frozenset().union(*(TYPES[b.type].servers for p in todo
                                      for b in p.workload.backends))
        need_pg = "postgres" in servers or any(needs_origin(p.workload) for p in todo)
        with services_for_run(need_postgres=need_pg, need_valkey="valkey" in servers,
                              say=self.say) as svc, \
                _servers_env(svc.postgres_dsn if need_pg else "",
                             svc.valkey_url if "valkey" in servers else ""):
            for number, point in enumerate(todo, 1):
                self.say(f"suite {self.options.suite_id}: point {number}/{len(todo)}: "
                         f"{point.key}")
                started = time.monotonic()
                result = run_workload(point.workload, RunOptions(
                    results_path=self.options.results_path, console=self.options.console,
                    out=self.options.out, quiet=self.options.quiet, in_suite=True))
                signal.signal(signal.SIGINT, _raise_interrupt)
                signal.signal(signal.SIGTERM, _raise_interrupt)
                self._record(point, result.run_id)
                outcome.ran.append((point.key, result.run_id, str(result.status)))
                self.say(f"suite {self.options.suite_id}: point {point.key}: run "
                         f"{result.run_id} {result.status} in "
                         f"{time.monotonic() - started:.0f} s")
                if result.exit_code == ExitCode.INTERRUPTED:
                    raise KeyboardInterrupt
                if result.exit_code != ExitCode.OK:
                    outcome.exit_code = ExitCode.FAILED

    def _record(self, point: Point, run_id: str) -> None:
        conn = store.connect(self.options.results_path)
        try:
            suites.record_point(conn, self.options.suite_id, run_id, point=point.key,
                                fingerprint=point.fingerprint, values=point.values,
                                on_axes=point.on_axes)
            store.checkpoint(conn)
        finally:
            conn.close()

    def _print_answer(self) -> int:
        """Print the suite's answer; return at how many points no backend meets the target.

        A suite compares backends, so a backend that misses the target at a point is an
        answer, not a failure; a point where none of them meets it is the suite's target
        failing, and the suite exits 99 as a run whose thresholds fail."""
        conn = store.connect(self.options.results_path)
        try:
            data = suites.read_suite(conn, self.options.suite_id)
            result = answer(conn, data, self.suite.target, self.suite.target_text)
        finally:
            conn.close()
        print(format_answer(data, result, "table"), file=self.options.out, flush=True)
        self.say(f"the suite's report: python -m orchestrator report --suite "
                 f"{self.options.suite_id} --html --results {self.options.results_path}")
        met: dict[str, bool] = {}
        for v in result.verdicts:
            met[v.point] = met.get(v.point, False) or v.meets
        return sum(1 for ok in met.values() if not ok)


def run_suite(suite: Suite, options: SuiteOptions) -> SuiteOutcome:
    """Run a suite's points not measured yet, then print its answer."""
    return SuiteRunner(suite, options).run()
