"""Judging a run against its workload's thresholds: the measured value and verdict of each.

The thresholds were parsed with the workload (:mod:`orchestrator.workload.thresholds`); here
each is measured per backend from the views of :mod:`orchestrator.results.schema`.
:func:`evaluate` gives every verdict, :func:`all_passed` the exit code's answer, and
:func:`store_results` keeps them in table ``threshold_results`` for the HTML report.

A metric the run did not measure for a backend (no gets, no invalidation data) fails an
explicitly named backend, but is ``not applicable`` (``passed is None``) under ``"*"``: a
rule for every backend should not fail Valkey for lacking invalidation lag.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import duckdb

from orchestrator.results import schema
from orchestrator.workload.thresholds import ALL_BACKENDS, Threshold


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """The verdict of one expression for one backend; ``passed`` is None when not applicable."""

    backend: str
    expression: str
    measured: float | None
    passed: bool | None
    note: str = ""


def _measure(
    con: duckdb.DuckDBPyConnection, run_id: str, backend: str, t: Threshold
) -> float | None:
    # Column and source names come from the parser's fixed vocabulary, never from user text.
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
    con: duckdb.DuckDBPyConnection, run_id: str,
    thresholds: Mapping[str, Sequence[Threshold]],
) -> list[ThresholdResult]:
    """Evaluate every threshold of a run for each backend it applies to (the schema's views
    must exist)."""
    backends = [
        r[0] for r in con.execute(
            "SELECT DISTINCT backend FROM ops WHERE run_id = ? ORDER BY backend", [run_id]
        ).fetchall()
    ]
    results: list[ThresholdResult] = []
    for key, parsed in thresholds.items():
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
    schema.install_threshold_results(con)
    con.execute("DELETE FROM threshold_results WHERE run_id = ?", [run_id])
    if results:
        con.executemany(
            "INSERT INTO threshold_results VALUES (?, ?, ?, ?, ?, ?)",
            [[run_id, r.backend, r.expression, r.measured, r.passed, r.note] for r in results],
        )
