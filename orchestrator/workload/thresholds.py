"""Thresholds: ``"get.p99_ms < 5"``, ``"stale_rate == 0"`` -- parsed once, when a workload is.

A workload names thresholds per backend, ``"*"`` meaning every backend of the run::

    thresholds:
      "*": ["get.p99_ms < 5", "get.hit_rate >= 0.9"]
      postgres-cache: ["stale_rate == 0", "invalidation_lag.p99_ms < 5"]

An expression is ``METRIC OP NUMBER`` with OP one of ``< <= > >= == !=``. METRIC is one of:

* ``get.X`` / ``set.X`` / ``delete.X`` (and ``get_or_set.X`` / ``load.X``) with X a column of
  the ``summary`` view (ops, errors, ops_per_s, mean_ms, p50_ms, p95_ms, p99_ms, p999_ms,
  hit_rate, local_rate);
* a column of the ``consistency`` view, bare or as ``consistency.X`` (stale_rate,
  stale_reads, max_staleness_ms, ...);
* ``invalidation_lag.X`` with X a column of ``invalidation_lag_summary`` (p50_ms, p99_ms,
  max_ms, mean_ms, count, missing).

:func:`parse_threshold` is the only parser; the parsed :class:`Threshold` says which view and
column it reads, and :mod:`orchestrator.results.thresholds` evaluates it after the run.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.errors import ThresholdError

ALL_BACKENDS = "*"

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
# The metrics a threshold may name: columns of the views in orchestrator.results.schema
# (tests check that each one is there).
SUMMARY_OPS = ("get", "set", "delete", "get_or_set", "load")
SUMMARY_METRICS = (
    "ops", "errors", "ops_per_s", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms",
    "hit_rate", "local_rate",
)
CONSISTENCY_METRICS = (
    "passes", "reads", "hits", "local_reads", "stale_reads", "stale_local_reads", "stale_rate",
    "stale_beyond_invalidation", "unjudged_reads", "p50_staleness_ms", "p99_staleness_ms",
    "max_staleness_ms", "clock_unjudged_reads",
)
LAG_METRICS = ("writes", "expected", "count", "missing", "p50_ms", "p99_ms", "max_ms",
               "mean_ms", "clock_uncertainty_ms")

_EXPRESSION = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*"
    r"(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_FORM = "a condition '[op.]metric <|<=|>|>=|==|!= number', e.g. 'get.p99_ms < 5'"


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed expression: where the metric comes from, the comparison and the limit."""

    expression: str
    source: str  # 'summary' | 'consistency' | 'invalidation_lag_summary'
    op_filter: str | None  # the summary row's op, for source 'summary'
    column: str
    comparison: str
    limit: float

    def check(self, measured: float) -> bool:
        return _COMPARISONS[self.comparison](measured, self.limit)


def parse_threshold(expression: object) -> Threshold:
    """Parse one expression; raise :class:`ThresholdError` saying what was expected."""
    if not isinstance(expression, str):
        raise ThresholdError(expression, _FORM, type(expression).__name__)
    m = _EXPRESSION.match(expression)
    if m is None:
        raise ThresholdError(expression, _FORM, repr(expression))
    metric, comparison = m["metric"], m["op"]
    limit = float(m["value"])
    if not math.isfinite(limit):
        raise ThresholdError(expression, "a finite number as the limit", m["value"])
    scope, _, column = metric.rpartition(".")
    if scope in SUMMARY_OPS:
        if column not in SUMMARY_METRICS:
            raise ThresholdError(expression, f"a metric of {scope} "
                                 f"({', '.join(SUMMARY_METRICS)})", repr(column))
        return Threshold(expression, "summary", scope, column, comparison, limit)
    if scope in ("", "consistency"):
        if column not in CONSISTENCY_METRICS:
            hint = (f" (latency metrics need an op, e.g. 'get.{column}')"
                    if column in SUMMARY_METRICS else "")
            raise ThresholdError(expression, f"a consistency metric "
                                 f"({', '.join(CONSISTENCY_METRICS)})", repr(column) + hint)
        return Threshold(expression, "consistency", None, column, comparison, limit)
    if scope == "invalidation_lag":
        if column not in LAG_METRICS:
            raise ThresholdError(expression, f"an invalidation_lag metric "
                                 f"({', '.join(LAG_METRICS)})", repr(column))
        return Threshold(expression, "invalidation_lag_summary", None, column, comparison, limit)
    raise ThresholdError(expression, "a metric scope get, set, delete, get_or_set, load, "
                         "consistency or invalidation_lag", repr(scope))
