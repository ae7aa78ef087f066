"""One self-contained HTML report of a suite: the answer first, then the curves behind it.

Entry point: :func:`render_suite_html` ``(conn, data, answer) -> str``, from a suite as
recorded (:func:`orchestrator.results.suites.read_suite`) and its answer
(:func:`orchestrator.results.findings.answer`): the verdict table, the sentences where the
answer changes, for each axis the metrics as lines against the axis's value (one line per
backend, whiskers spanning the passes), the cost of more instances with the extrapolation to
100, every number in a table, the points' runs and the suite file.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from typing import Any

from orchestrator.reports.answer import (
    answer_sentences,
    instance_rows,
    point_label,
    servers,
)
from orchestrator.reports.output import MARKER
from orchestrator.reports.page import (
    CSS,
    PALETTE,
    Series,
    answer_box,
    esc,
    fmt,
    line_chart,
    table,
)
from orchestrator.results.findings import (
    Answer,
    Verdict,
    axis_label,
    axis_points,
    axis_title,
    context,
    number,
)
from orchestrator.results.suites import AxisRecord, SuiteData
from orchestrator.workload.suite import INSTANCES

__all__ = ["render_suite_html"]

# What each axis chart plots: (suite_pass_metrics column, title, y label, log scale).
CHARTS = (
    ("ops_per_s", "throughput (all operations)", "ops/s", False),
    ("get_p50_ms", "get p50", "ms (log)", True),
    ("get_p99_ms", "get p99", "ms (log)", True),
    ("set_p50_ms", "set p50", "ms (log)", True),
    ("set_p99_ms", "set p99", "ms (log)", True),
    ("stale_rate", "stale-read rate", "% of reads", False),
    ("lag_p99_ms", "invalidation lag p99", "ms (log)", True),
    ("server_cpu_us_per_op", "server CPU per operation", "us", False),
)
# The metrics table's columns (suite_metrics).
_TABLE = ("passes", "ops_per_s", "get_p50_ms", "get_p99_ms", "local_rate", "set_p50_ms",
          "set_p99_ms", "stale_rate", "stale_beyond_invalidation", "lag_p99_ms", "server",
          "server_cpu_us_per_op", "server_cpu_us_per_write")


def _colors(data: SuiteData) -> dict[str, str]:
    return {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(data.backends)}


def _per_pass(data: SuiteData, column: str) -> dict[tuple[str, str], list[float]]:
    found: dict[tuple[str, str], list[float]] = {}
    for row in data.pass_metrics:
        value = row[column]
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            found.setdefault((row["point"], row["backend"]), []).append(float(value))
    return found


def _pooled(data: SuiteData, column: str) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for row in data.metrics:
        value = row[column]
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            found[(row["point"], row["backend"])] = float(value)
    return found


def _scale(column: str) -> float:
    return 100.0 if column == "stale_rate" else 1.0


def axis_charts(data: SuiteData, axis: AxisRecord, colors: Mapping[str, str]) -> list[str]:
    """One chart per metric: the pooled value at each of the axis's points (evenly spaced,
    labelled with the value), a line per backend, whiskers over the passes' range."""
    points = axis_points(data, axis)
    ticks = [(float(i), axis_label(axis.name, p.values[axis.name]))
             for i, p in enumerate(points)]
    charts = []
    for column, title, y_label, log in CHARTS:
        pooled, passes = _pooled(data, column), _per_pass(data, column)
        scale = _scale(column)
        series = []
        for backend in data.backends:
            pts = [(float(i), pooled[(p.point, backend)] * scale)
                   for i, p in enumerate(points) if (p.point, backend) in pooled]
            spread = [(float(i), min(v) * scale, max(v) * scale) for i, p in enumerate(points)
                      if len(v := passes.get((p.point, backend), [])) > 1]
            if pts:
                series.append(Series(backend, colors[backend], pts, spread))
        if series:
            charts.append(line_chart(series, title=title, x_label=axis_title(axis.name),
                                     y_label=y_label, y_log=log, x_ticks=ticks,
                                     y_min=None if log else 0, width=430, height=280,
                                     x_margin=0.08))
    return charts


def _verdict_cell(verdict: Verdict | None) -> str:
    """A matrix cell: ``meets`` or the margin of each missed condition, coloured; the whole
    verdict as its tooltip."""
    if verdict is None:
        return "<td class='na'>\u2013</td>"
    passes = f"{verdict.passes_met}/{verdict.passes}"
    if verdict.meets:
        text = f"meets ({passes})"
    else:
        # Condition.miss() ends with the margin: "...: 3.1x", "...: +55%", "...: 12% short".
        text = "misses: " + ", ".join(
            f"{c.threshold.expression.split()[0]} "
            + (c.miss().rsplit(": ", 1)[-1] if c.measured is not None else "not measured")
            for c in verdict.missed) + f" ({passes})"
    css = "meets" if verdict.meets else "misses"
    return f"<td class='l {css}' title='{esc(verdict.describe())}'>{esc(text)}</td>"


def _verdicts(data: SuiteData, result: Answer) -> str:
    """The verdict matrix: points x backends, each cell coloured, a miss with its margin
    (the measured value over the limit), the passes that met it in brackets."""
    by = {(v.point, v.backend): v for v in result.verdicts}
    head = "".join(f"<th class='l'>{esc(c)}</th>"
                   for c in ("point", "meet the target", *data.backends))
    body = []
    for point in data.points:
        meeting = [b for b in data.backends if (v := by.get((point.point, b))) and v.meets]
        body.append(f"<tr><td class='l'>{esc(point_label(data, point))}</td>"
                    f"<td class='l'>{esc(', '.join(meeting) or 'none')}</td>"
                    + "".join(_verdict_cell(by.get((point.point, b))) for b in data.backends)
                    + "</tr>")
    return f"<table class='verdicts'><tr>{head}</tr>{''.join(body)}</table>"


def _sentences(data: SuiteData, result: Answer) -> str:
    items = [s for a in data.axes for s in result.verdict_sentences.get(a.name, [])]
    items += [c.sentence for c in result.crossovers]
    if not items:
        return "<p class='muted'>Fewer than two measured points on every axis: nothing to " \
               "compare along one yet.</p>"
    return "<ul>" + "".join(f"<li>{esc(s)}</li>" for s in items) + "</ul>"


def _instances(data: SuiteData, result: Answer, colors: Mapping[str, str]) -> str:
    head = "<h2 id='instances'>Cost of more instances</h2>"
    axis = next((a for a in data.axes if a.name == INSTANCES), None)
    if axis is None:
        return head + "<p class='muted'>This suite has no instance axis.</p>"
    cost = servers(data)
    parts = [head, "<p class='muted'>Along the instance axis (" + esc(context(data, axis))
             + "): each pgcache instance with its own listener is one more session PostgreSQL "
             "delivers every NOTIFY to; with a shared listener, the instances of a worker "
             "process share one (with in-process network emulation each worker process has "
             "a route of its own, so as many listeners as worker processes); Valkey pays "
             "per tracked client. Per pass: median (range).</p>"]
    for column, title in (("lag_p99_ms", "Invalidation lag p99"),
                          ("server_cpu_us_per_write",
                           "Server CPU per write (" + ", ".join(
                               f"{b}: {s}" for b, s in cost.items()) + ")")):
        columns, rows = instance_rows(data, column)
        if rows:
            parts.append(f"<h3>{esc(title)}</h3>" + table(columns, rows, left=1))
    charts = []
    for metric, title, unit in (("lag_p99_ms", "invalidation lag p99", "ms"),
                                ("server_cpu_us_per_write", "server CPU per write", "us")):
        fits = [f for f in result.fits if f.metric == metric]
        series: list[Series] = []
        for fit in fits:
            by_x: dict[float, list[float]] = {}
            for x, y in fit.observations:
                by_x.setdefault(x, []).append(y)
            series.append(Series(fit.backend, colors.get(fit.backend, "#555"),
                                 [(x, statistics.median(v)) for x, v in sorted(by_x.items())],
                                 [(x, min(v), max(v)) for x, v in sorted(by_x.items())]))
            series.append(Series(f"{fit.backend} (fit)", colors.get(fit.backend, "#555"),
                                 [(0.0, fit.intercept), (fit.at, fit.predicted)],
                                 dashed=True))
        if series:
            charts.append(line_chart(series, title=f"{title}: measured, and a line to "
                                     f"{fits[0].at:g} instances", x_label="instances",
                                     y_label=unit, width=640, height=320))
    if result.fits:
        parts.append("<h3>Extrapolated to 100 instances</h3><ul>" + "".join(
            f"<li>{esc(f.sentence(_server(cost.get(f.backend, 'server'))))}</li>"
            for f in result.fits) + "</ul><div class='grid'>" + "".join(charts) + "</div>")
    return "".join(parts)


def _server(server: str) -> str:
    return {"postgres": "PostgreSQL", "valkey": "Valkey"}.get(server, server)


def _numbers(data: SuiteData) -> str:
    rows = []
    for row in data.metrics:
        point = data.point(str(row["point"]))
        rows.append([point_label(data, point), row["backend"],
                     *[_cell(column, row[column]) for column in _TABLE]])
    return table(["point", "backend", *_TABLE], rows, left=2)


def _cell(column: str, value: Any) -> Any:
    if value is None or isinstance(value, str) or column in ("passes",
                                                              "stale_beyond_invalidation"):
        return value
    return number(float(value), column)


def _points(data: SuiteData, loads: Mapping[str, float | None]) -> str:
    rows = [[point_label(data, p), p.run_id, p.status, ", ".join(p.on_axes),
             loads.get(p.point)] for p in data.points]
    return ("<p class='muted'>Each point is one run; its own report: <code>python -m "
            "orchestrator report RUN_ID --html</code>. Load: the host's 1-minute load average "
            "when the run ended (2 cores here: above 2, other work competed for them).</p>"
            + table(["point", "run", "status", "on axes", "load"], rows, left=4))


def render_suite_html(conn: Any, data: SuiteData, result: Answer) -> str:
    """The HTML report of a suite."""
    colors = _colors(data)
    runs = conn.execute(
        "SELECT min(started_at), max(finished_at), string_agg(DISTINCT host, ', '), "
        "string_agg(DISTINCT git_commit, ', ') FROM runs WHERE run_id IN (SELECT run_id "
        "FROM suite_points WHERE suite_id = ?)", [data.suite_id]).fetchone()
    point_loads = {str(p): v for p, v in conn.execute(
        "SELECT point, load_avg FROM suite_points WHERE suite_id = ?",
        [data.suite_id]).fetchall()}
    known = [v for v in point_loads.values() if v is not None]
    loads = (min(known), max(known)) if known else (None, None)
    measured = sum(1 for p in data.points if p.status in ("completed",
                                                          "completed_with_errors"))
    meta = [("target", result.target), ("axes", "; ".join(
                f"{a.name}: {', '.join(f'{v:g}' for v in a.values)} (base {a.base:g})"
                for a in data.axes)),
            ("sweep", "one axis at a time around the base point" if data.sweep == "axes"
             else "every combination"),
            ("points", f"{len(data.points)} ({measured} measured)"),
            ("backends", ", ".join(data.backends)),
            ("runs", f"{runs[0]} to {runs[1]}" if runs and runs[0] else None),
            ("host", runs[2] if runs else None), ("git commit", runs[3] if runs else None),
            ("host load (1-min average when each run ended)",
             f"{loads[0]:.2f} to {loads[1]:.2f}" if loads[0] is not None else None)]
    head = (f"<h1>{esc('Suite ' + data.suite_id)}</h1>"
            + answer_box(answer_sentences(data, result)) + "<table class='meta'>"
            + "".join(f"<tr><th class='l'>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>"
                      for k, v in meta if v is not None) + "</table>")
    sections = [
        head,
        "<h2 id='verdicts'>The answer: who meets the target</h2><p class='muted'>For each "
        "point, judged over all its passes as a run's thresholds are (a condition a backend "
        "does not measure does not apply to it); <i>n/m passes</i>: in how many of the "
        "passes, each judged alone, every condition held.</p>" + _verdicts(data, result),
        "<h2 id='changes'>Where the answer changes</h2><details><summary>Every sentence, "
        "axis by axis</summary><p class='muted'>From the measured points. Two backends match "
        "when the ranges of their passes overlap or their values differ by at most 10%.</p>"
        + _sentences(data, result) + "</details>",
    ]
    for axis in data.axes:
        charts = axis_charts(data, axis, colors)
        sections.append(f"<h2 id='axis-{esc(axis.name)}'>Along {esc(axis_title(axis.name))}"
                        f"</h2><p class='muted'>{esc(context(data, axis))}; the value over "
                        "every pass, whiskers from the lowest to the highest pass.</p>"
                        "<div class='grid'>" + "".join(charts) + "</div>")
    sections += [
        _instances(data, result, colors),
        "<h2 id='numbers'>Every number</h2><p class='muted'>Per point and backend, over all "
        "passes (the views suite_metrics and, per pass, suite_pass_metrics).</p>"
        + _numbers(data),
        "<h2 id='points'>Points</h2>" + _points(data, point_loads),
        f"<h2 id='suite'>Suite file</h2><pre>{esc(data.text or '(not recorded)')}</pre>",
    ]
    nav = " · ".join(f"<a href='#{a}'>{t}</a>" for a, t in (
        ("verdicts", "verdicts"), ("changes", "where it changes"),
        *((f"axis-{a.name}", axis_title(a.name)) for a in data.axes),
        ("instances", "cost of instances"), ("numbers", "numbers"), ("points", "points"),
        ("suite", "suite file")))
    return (f"<!DOCTYPE html>{MARKER}\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc('pgcache suite ' + data.suite_id)}</title><style>{CSS}</style>"
            f"</head><body><nav class='muted'>{nav}</nav>{''.join(sections)}"
            "<p class='muted'>Generated from the results database; data: "
            f"{esc(json.dumps({'suite_id': data.suite_id, 'backends': data.backends}))}</p>"
            "</body></html>")
