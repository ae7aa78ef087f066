"""Pass/fail thresholds: ``"get.p99_ms < 5"``, ``"stale_rate == 0"``, per backend.

A workload names thresholds per backend, ``"*"`` meaning every backend of the run::

    thresholds:
      "*": ["get.p99_ms < 5", "get.hit_rate >= 0.9"]
      postgres-cache: ["stale_rate == 0", "invalidation_lag.p99_ms < 5"]

An expression is ``METRIC OP NUMBER`` with OP one of ``< <= > >= == !=``. METRIC is one of:

* ``get.X`` / ``set.X`` / ``delete.X`` with X a column of the ``summary`` view (ops, errors,
  ops_per_s, mean_ms, p50_ms, p95_ms, p99_ms, p999_ms, hit_rate, local_rate);
* a column of the ``consistency`` view, bare or as ``consistency.X`` (stale_rate,
  stale_reads, max_staleness_ms, ...);
* ``invalidation_lag.X`` with X a column of ``invalidation_lag_summary`` (p50_ms, p99_ms,
  max_ms, mean_ms, count, missing).

Entry points: :func:`parse_threshold`, :func:`validate_thresholds` (all problems at once, for
workload validation), :func:`evaluate` (per backend: the measured value and the verdict),
:func:`all_passed` (for the exit code) and :func:`store_results` (for the HTML report).

A metric the run did not measure for a backend (no gets, no invalidation data) fails an
explicitly named backend, but is ``not applicable`` (``passed is None``) under ``"*"``: a
rule for every backend should not fail Valkey for lacking invalidation lag.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb

__all__ = [
    "Threshold",
    "ThresholdError",
    "ThresholdResult",
    "all_passed",
    "evaluate",
    "parse_threshold",
    "store_results",
    "validate_thresholds",
]

ALL_BACKENDS = "*"

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}

_SUMMARY_OPS = ("get", "set", "delete")
_SUMMARY_COLUMNS = (
    "ops", "errors", "ops_per_s", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms",
    "hit_rate", "local_rate",
)
_CONSISTENCY_COLUMNS = (
    "passes", "reads", "hits", "local_reads", "stale_reads", "stale_local_reads", "stale_rate",
    "stale_beyond_invalidation", "unjudged_reads", "p50_staleness_ms", "p99_staleness_ms",
    "max_staleness_ms",
)
_LAG_COLUMNS = ("writes", "expected", "count", "missing", "p50_ms", "p99_ms", "max_ms", "mean_ms")

_EXPR = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*"
    r"(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


class ThresholdError(ValueError):
    """A threshold expression that cannot be understood; the message says what to write."""


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
        return _OPS[self.comparison](measured, self.limit)


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """The verdict of one expression for one backend; ``passed`` is None when not applicable."""

    backend: str
    expression: str
    measured: float | None
    passed: bool | None
    note: str = ""


def _expected() -> str:
    return (
        "expected 'METRIC OP NUMBER' with OP one of < <= > >= == != and METRIC one of "
        f"{{{'|'.join(_SUMMARY_OPS)}}}.{{{'|'.join(_SUMMARY_COLUMNS)}}}, "
        f"[consistency.]{{{'|'.join(_CONSISTENCY_COLUMNS)}}}, "
        f"invalidation_lag.{{{'|'.join(_LAG_COLUMNS)}}}"
    )


def parse_threshold(expression: str) -> Threshold:
    """Parse one expression; raise :class:`ThresholdError` naming it and what was expected."""
    if not isinstance(expression, str):
        raise ThresholdError(
            f"threshold {expression!r}: expected a string such as 'get.p99_ms < 5', "
            f"found {type(expression).__name__}"
        )
    m = _EXPR.match(expression)
    if m is None:
        raise ThresholdError(f"threshold {expression!r} cannot be parsed: {_expected()}")
    metric, comparison = m["metric"], m["op"]
    limit = float(m["value"])
    if not math.isfinite(limit):
        raise ThresholdError(f"threshold {expression!r}: the limit must be a finite number")
    scope, _, column = metric.rpartition(".")
    if scope in _SUMMARY_OPS:
        if column not in _SUMMARY_COLUMNS:
            raise ThresholdError(
                f"threshold {expression!r}: unknown metric {column!r} for {scope!r}; "
                f"expected one of {', '.join(_SUMMARY_COLUMNS)}"
            )
        return Threshold(expression, "summary", scope, column, comparison, limit)
    if scope in ("", "consistency"):
        if column not in _CONSISTENCY_COLUMNS:
            hint = (
                f"; latency metrics need an op, e.g. 'get.{column}'"
                if column in _SUMMARY_COLUMNS else ""
            )
            raise ThresholdError(
                f"threshold {expression!r}: unknown consistency metric {column!r}; expected "
                f"one of {', '.join(_CONSISTENCY_COLUMNS)}{hint}"
            )
        return Threshold(expression, "consistency", None, column, comparison, limit)
    if scope == "invalidation_lag":
        if column not in _LAG_COLUMNS:
            raise ThresholdError(
                f"threshold {expression!r}: unknown invalidation_lag metric {column!r}; "
                f"expected one of {', '.join(_LAG_COLUMNS)}"
            )
        return Threshold(expression, "invalidation_lag_summary", None, column, comparison, limit)
    raise ThresholdError(
        f"threshold {expression!r}: unknown metric scope {scope!r}; "
        f"expected get, set, delete, consistency or invalidation_lag"
    )


def validate_thresholds(
    thresholds: object, path: str = "thresholds", backends: Iterable[str] | None = None
) -> list[str]:
    """Every problem in a ``thresholds`` mapping, each prefixed with its YAML path."""
    if not isinstance(thresholds, Mapping):
        return [f"{path}: expected a mapping of backend name (or '*') to a list of "
                f"expressions, found {type(thresholds).__name__}"]
    known = None if backends is None else set(backends)
    errors: list[str] = []
    for backend, exprs in thresholds.items():
        where = f"{path}.{backend}"
        if not isinstance(backend, str):
            errors.append(f"{where}: expected a backend name or '*', found {backend!r}")
            continue
        if known is not None and backend != ALL_BACKENDS and backend not in known:
            errors.append(
                f"{where}: backend {backend!r} is not in this workload; expected '*' or one of "
                f"{', '.join(sorted(known))}"
            )
        if isinstance(exprs, str) or not isinstance(exprs, Sequence):
            errors.append(
                f"{where}: expected a list of expressions such as ['get.p99_ms < 5'], "
                f"found {type(exprs).__name__}"
            )
            continue
        for i, expr in enumerate(exprs):
            try:
                parse_threshold(expr)
            except ThresholdError as exc:
                errors.append(f"{where}[{i}]: {exc}")
    return errors


def _measure(
    con: duckdb.DuckDBPyConnection, run_id: str, backend: str, t: Threshold
) -> float | None:
    # Column and source names come from the fixed tables above, never from user text.
    sql = f"SELECT {t.column} FROM {t.source} WHERE run_id = ? AND backend = ?"
    params: list[object] = [run_id, backend]
    if t.op_filter is not None:
        sql += " AND op = ?"
        params.append(t.op_filter)
    try:
        row = con.execute(sql, params).fetchone()
    except duckdb.CatalogException:
        return None
    if row is None or row[0] is None:
        return None
    return float(row[0])


def evaluate(
    con: duckdb.DuckDBPyConnection, run_id: str, thresholds: Mapping[str, Sequence[str]]
) -> list[ThresholdResult]:
    """Evaluate every threshold of a run for each backend it applies to.

    The views of :mod:`orchestrator.analysis` and the ``summary`` view must exist. Raises
    :class:`ThresholdError` for an expression that does not parse (validate first).
    """
    backends = [
        r[0] for r in con.execute(
            "SELECT DISTINCT backend FROM ops WHERE run_id = ? ORDER BY backend", [run_id]
        ).fetchall()
    ]
    results: list[ThresholdResult] = []
    for key, exprs in thresholds.items():
        parsed = [parse_threshold(e) for e in exprs]
        if key == ALL_BACKENDS:
            targets = backends
        elif key in backends:
            targets = [key]
        else:
            results.extend(
                ThresholdResult(key, t.expression, None, None, "backend did not run")
                for t in parsed
            )
            continue
        for backend in targets:
            for t in parsed:
                measured = _measure(con, run_id, backend, t)
                if measured is None:
                    if key == ALL_BACKENDS:
                        results.append(ThresholdResult(
                            backend, t.expression, None, None, "not measured for this backend"))
                    else:
                        results.append(ThresholdResult(
                            backend, t.expression, None, False, "not measured"))
                elif math.isnan(measured):
                    results.append(ThresholdResult(backend, t.expression, None, False, "NaN"))
                else:
                    results.append(
                        ThresholdResult(backend, t.expression, measured, t.check(measured)))
    results.sort(key=lambda r: (r.backend, r.expression))
    return results


def all_passed(results: Iterable[ThresholdResult]) -> bool:
    """False when any applicable threshold failed (not-applicable ones do not count)."""
    return not any(r.passed is False for r in results)


def store_results(
    con: duckdb.DuckDBPyConnection, run_id: str, results: Sequence[ThresholdResult]
) -> None:
    """Replace the run's rows in table ``threshold_results`` (created if missing)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS threshold_results (run_id VARCHAR, backend VARCHAR, "
        "expression VARCHAR, measured DOUBLE, passed BOOLEAN, note VARCHAR)"
    )
    con.execute("DELETE FROM threshold_results WHERE run_id = ?", [run_id])
    if results:
        con.executemany(
            "INSERT INTO threshold_results VALUES (?, ?, ?, ?, ?, ?)",
            [[run_id, r.backend, r.expression, r.measured, r.passed, r.note] for r in results],
        )
