"""A suite's answer as text: the verdict table, the sentences, the cost of more instances.

:func:`format_answer` renders :class:`~orchestrator.results.findings.Answer` as an aligned
table (what ``suite`` prints at its end and ``report --suite`` shows), Markdown, or JSON.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.reports.table import format_rows
from orchestrator.results.findings import (
    Answer,
    Verdict,
    axis_label,
    axis_points,
    number,
)
from orchestrator.results.suites import PointRecord, SuiteData
from orchestrator.workload.suite import INSTANCES


def point_label(data: SuiteData, point: PointRecord) -> str:
    """A point in words: ``0.5 ms, 90% reads, 2 instances``."""
    return ", ".join(axis_label(a.name, point.values[a.name]) for a in data.axes)


def answer_sentences(data: SuiteData, result: Answer) -> list[str]:
    """The answer in at most five sentences: where no backend meets the target, then, for
    up to four backends (those meeting it most often first), where each meets it and by how
    much it misses elsewhere."""
    by_point: dict[str, list[Verdict]] = {}
    for v in result.verdicts:
        by_point.setdefault(v.point, []).append(v)
    if not by_point:
        return [f"No point of suite {data.suite_id} is measured yet."]
    labels = {p.point: point_label(data, p) for p in data.points}
    unmet = [labels.get(p, p) for p, vs in by_point.items() if not any(v.meets for v in vs)]
    out = [f"Target: {result.target}. " + (
        f"At {len(unmet)} of {len(by_point)} points no backend meets it "
        f"({' | '.join(unmet)})." if unmet else
        f"At every measured point ({len(by_point)}), at least one backend meets it.")]
    per_backend: dict[str, list[Verdict]] = {}
    for v in result.verdicts:
        per_backend.setdefault(v.backend, []).append(v)
    ranked = sorted(per_backend.items(), key=lambda item: (-sum(v.meets for v in item[1]),
                                                           data.backends.index(item[0])
                                                           if item[0] in data.backends else 99))
    for backend, verdicts in ranked[:4]:
        met = sum(v.meets for v in verdicts)
        missed = [v for v in verdicts if not v.meets]
        if not missed:
            out.append(f"{backend} meets it at all {len(verdicts)} points.")
            continue
        worst = missed[0]
        text = (f"{backend} meets it at {met} of {len(verdicts)} points; it misses at "
                f"{labels.get(worst.point, worst.point)} ({worst.missed[0].miss()})"
                if worst.missed else f"{backend} meets it at {met} of {len(verdicts)} points")
        if len(missed) > 1:
            text += f" and {len(missed) - 1} more"
        out.append(text + ".")
    return out[:5]


def verdict_rows(data: SuiteData, result: Answer) -> tuple[list[str], list[list[str]]]:
    """The verdict table: one row per point, who meets the target, then each backend's
    verdict (met, or by how much it misses)."""
    backends = list(data.backends)
    by: dict[tuple[str, str], Verdict] = {(v.point, v.backend): v for v in result.verdicts}
    rows = []
    for point in data.points:
        judged = [by[(point.point, b)] for b in backends if (point.point, b) in by]
        meeting = [v.backend for v in judged if v.meets]
        cells = [point_label(data, point), ", ".join(meeting) or "none"]
        for backend in backends:
            verdict = by.get((point.point, backend))
            cells.append("-" if verdict is None else verdict.describe())
        rows.append(cells)
    return ["point", "meet the target", *backends], rows


def _spread(values: Sequence[float], column: str) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return number(med, column)
    return (f"{number(med, column)} ({number(min(values), column)}-"
            f"{number(max(values), column)})")


def instance_rows(data: SuiteData, column: str) -> tuple[list[str], list[list[str]]]:
    """Along the instance axis: per backend, the median of a per-pass metric (and its
    range), for the backends that have it."""
    axis = next((a for a in data.axes if a.name == INSTANCES), None)
    if axis is None:
        return [], []
    points = axis_points(data, axis)
    values: dict[tuple[str, str], list[float]] = {}
    for row in data.pass_metrics:
        if row[column] is not None:
            values.setdefault((row["point"], row["backend"]), []).append(float(row[column]))
    backends = [b for b in data.backends if any((p.point, b) in values for p in points)]
    if not backends:
        return [], []
    rows = [[axis_label(INSTANCES, p.values[INSTANCES])]
            + [_spread(values.get((p.point, b), []), column) for b in backends]
            for p in points]
    return ["instances", *backends], rows


def servers(data: SuiteData) -> Mapping[str, str]:
    """Backend -> the server whose CPU is counted for it."""
    found: dict[str, str] = {}
    for row in data.metrics:
        if row["server"]:
            found.setdefault(str(row["backend"]), str(row["server"]))
    return found


def format_answer(data: SuiteData, result: Answer, fmt: str = "table") -> str:
    """The answer in ``fmt`` (table, markdown or json)."""
    if fmt == "json":
        return json.dumps(_as_json(data, result), indent=2, default=str)
    measured = sum(1 for p in data.points if p.status in ("completed",
                                                          "completed_with_errors"))
    head = (f"suite {data.suite_id}: {len(data.points)} points ({measured} measured), "
            f"target: {result.target}")
    table_fmt = "markdown" if fmt == "markdown" else "table"
    out = [f"**{head}**" if fmt == "markdown" else head, ""]

    def section(title: str) -> None:
        out.extend(["", f"### {title}" if fmt == "markdown" else f"{title}:", ""])

    section("Verdicts (over each point's passes; n/m passes: in how many passes, each judged "
            "alone, every condition held)")
    columns, rows = verdict_rows(data, result)
    out.append(format_rows(columns, rows, table_fmt))
    section("Where the answer changes")
    bullet = "- " if fmt == "markdown" else "* "
    for axis in data.axes:
        for sentence in result.verdict_sentences.get(axis.name, []):
            out.append(bullet + sentence)
    for crossover in result.crossovers:
        out.append(bullet + crossover.sentence)
    cost = servers(data)
    for column, title in (("lag_p99_ms", "invalidation lag p99 (per pass: median, range)"),
                          ("server_cpu_us_per_write",
                           "server CPU per write (PostgreSQL for pgcache, Valkey for Valkey "
                           "backends; per pass: median, range)")):
        columns, rows = instance_rows(data, column)
        if rows:
            section(f"Cost of more instances: {title}")
            out.append(format_rows(columns, rows, table_fmt))
    if result.fits:
        section("Extrapolated to 100 instances")
        for fit in result.fits:
            out.append(bullet + fit.sentence(_server_name(cost.get(fit.backend, "server"))))
    return "\n".join(out).strip() + "\n"


def _server_name(server: str) -> str:
    return {"postgres": "PostgreSQL", "valkey": "Valkey"}.get(server, server)


def _as_json(data: SuiteData, result: Answer) -> dict[str, Any]:
    return {
        "suite_id": data.suite_id,
        "target": result.target,
        "axes": [{"name": a.name, "values": list(a.values), "base": a.base}
                 for a in data.axes],
        "points": [{"point": p.point, "run_id": p.run_id, "status": p.status,
                    "values": dict(p.values), "on_axes": list(p.on_axes)}
                   for p in data.points],
        "verdicts": [{"point": v.point, "backend": v.backend, "meets": v.meets,
                      "passes_met": v.passes_met, "passes": v.passes,
                      "text": v.describe(),
                      "conditions": [{"expression": c.threshold.expression,
                                      "metric": c.threshold.column,
                                      "op": c.threshold.op_filter,
                                      "comparison": c.threshold.comparison,
                                      "limit": c.threshold.limit,
                                      "measured": c.measured, "passed": c.passed,
                                      "miss": c.miss() if c.passed is False else None}
                                     for c in v.conditions]}
                     for v in result.verdicts],
        "verdict_sentences": dict(result.verdict_sentences),
        "crossovers": [{"axis": c.axis, "metric": c.metric, "first": c.first,
                        "second": c.second, "changes": c.changes, "sentence": c.sentence}
                       for c in result.crossovers],
        "fits": [{"backend": f.backend, "metric": f.metric, "slope": f.slope,
                  "slope_se": f.slope_se, "intercept": f.intercept, "r2": f.r2, "at": f.at,
                  "predicted": f.predicted, "predicted_se": f.predicted_se,
                  "observations": [list(o) for o in f.observations]}
                 for f in result.fits],
        "metrics": [dict(row) for row in data.metrics],
    }
