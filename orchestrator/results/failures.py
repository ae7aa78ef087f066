"""The failed operations of a run: which backends' operations failed, how many, when, and
whether the workload allows it.

A run whose operations failed did not measure what it set out to (a server died, a network
broke), so it is not simply ``completed``: :func:`judge` decides, per backend, whether its
errors are allowed — its error rate (failed / all operations of all its passes) is at most the
workload's ``allowed_error_rate``, or a threshold on ``errors`` names it (or ``"*"``), in which
case that threshold decides — and the runner marks a run with any backend not allowed
``completed_with_errors`` (exit 1). :func:`error_report` gives, per backend, the counts, the most
frequent error and when the errors happened: spans of a pass (seconds since its first
operation) in which failed operations started, a gap of more than :data:`SPAN_GAP_S` opening a
new span.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.workload.thresholds import ALL_BACKENDS, Threshold

SPAN_GAP_S = 1.0
MAX_SPANS = 5  # per pass, in the console; the rest are counted


@dataclass(frozen=True, slots=True)
class ErrorSpan:
    """Failed operations that started within one stretch of a pass."""

    repetition: int
    start_s: float  # since the pass's first operation
    end_s: float
    errors: int


@dataclass(frozen=True, slots=True)
class BackendErrors:
    """One backend's errors over the run (all its passes)."""

    backend: str
    ops: int
    errors: int
    most_frequent: str  # the error text met most often
    spans: tuple[ErrorSpan, ...]
    allowed: bool = False  # set by judge()
    reason: str = ""  # why allowed or not, for the console

    @property
    def rate(self) -> float:
        return self.errors / self.ops if self.ops else 0.0

    def describe(self) -> str:
        """One line for the console: the backend, how many, when, what."""
        shown = self.spans[:MAX_SPANS]
        when = ", ".join(
            (f"rep {s.repetition} " if self.repeated else "")
            + f"{s.start_s:.1f}-{s.end_s:.1f} s ({s.errors:,})" for s in shown)
        if len(self.spans) > len(shown):
            when += f" and {len(self.spans) - len(shown)} more spans"
        return (f"{self.backend}: {self.errors:,} of {self.ops:,} operations failed "
                f"({100 * self.rate:.2f}%), at {when} into the pass; most often "
                f"{self.most_frequent!r}; {self.reason}")

    @property
    def repeated(self) -> bool:
        return len({s.repetition for s in self.spans}) > 1


_SPANS = f"""
WITH failed AS (
    SELECT backend, repetition, start_ns,
           start_ns - lag(start_ns) OVER (PARTITION BY backend, repetition
                                          ORDER BY start_ns) AS gap_ns
    FROM ops WHERE run_id = $run_id AND error IS NOT NULL
), numbered AS (
    SELECT *, sum(CASE WHEN gap_ns IS NULL OR gap_ns > {int(SPAN_GAP_S * 1e9)} THEN 1 ELSE 0
                  END) OVER (PARTITION BY backend, repetition ORDER BY start_ns
                             ROWS UNBOUNDED PRECEDING) AS span
    FROM failed
), origin AS (
    SELECT backend, repetition, min(start_ns) AS t0 FROM ops WHERE run_id = $run_id
    GROUP BY ALL
)
SELECT n.backend, n.repetition, (min(n.start_ns) - any_value(o.t0)) / 1e9,
       (max(n.start_ns) - any_value(o.t0)) / 1e9, count(*)
FROM numbered n JOIN origin o USING (backend, repetition)
GROUP BY n.backend, n.repetition, n.span
ORDER BY n.backend, n.repetition, 3
"""

_TOTALS = """
SELECT backend, count(*), count(error), mode(left(error, 160))
FROM ops WHERE run_id = $run_id GROUP BY backend HAVING count(error) > 0 ORDER BY backend
"""


def error_report(conn: Any, run_id: str) -> list[BackendErrors]:
    """The backends of a run whose operations failed, with counts and spans (none: [])."""
    spans: dict[str, list[ErrorSpan]] = {}
    for backend, repetition, start, end, count in conn.execute(
            _SPANS, {"run_id": run_id}).fetchall():
        spans.setdefault(backend, []).append(ErrorSpan(int(repetition), float(start),
                                                       float(end), int(count)))
    return [BackendErrors(backend, int(ops), int(errors), str(text),
                          tuple(spans.get(backend, ())))
            for backend, ops, errors, text in conn.execute(
                _TOTALS, {"run_id": run_id}).fetchall()]


def _judged_by_thresholds(backend: str,
                          thresholds: Mapping[str, Sequence[Threshold]]) -> bool:
    return any(t.column == "errors" and t.source == "summary"
               for key in (backend, ALL_BACKENDS) for t in thresholds.get(key, ()))


def judge(report: Sequence[BackendErrors], allowed_error_rate: float,
          thresholds: Mapping[str, Sequence[Threshold]]) -> list[BackendErrors]:
    """Each backend's errors with its verdict: allowed by the rate, left to a threshold on
    ``errors``, or not allowed."""
    judged = []
    for entry in report:
        if _judged_by_thresholds(entry.backend, thresholds):
            allowed, reason = True, "its thresholds on errors decide"
        elif entry.rate <= allowed_error_rate:
            allowed, reason = True, f"within allowed_error_rate {allowed_error_rate:g}"
        else:
            allowed = False
            reason = (f"more than allowed_error_rate {allowed_error_rate:g}" if
                      allowed_error_rate else "the workload allows none (allowed_error_rate)")
        judged.append(BackendErrors(entry.backend, entry.ops, entry.errors,
                                    entry.most_frequent, entry.spans, allowed, reason))
    return judged
