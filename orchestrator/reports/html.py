"""One self-contained HTML report of a run: tables and inline SVG plots, no scripts, no CDN.

Entry point: :func:`render_html` ``(con, run_id=None) -> str``. It reads the public tables
(``runs``, ``ops``, ``events``), the views of :mod:`orchestrator.results.schema` (those missing
are created first, TEMP ones in a read-only database), and, when present, the tables
``server_cost`` and ``threshold_results``. Sections without data say so instead of vanishing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb

from orchestrator.errors import UsageError
from orchestrator.reports import meaning
from orchestrator.reports.output import MARKER
from orchestrator.reports.page import (
    CSS,
    PALETTE,
    Series,
    answer_box,
    bar_chart,
    esc,
    fmt,
    line_chart,
    table,
    tick_label,
)
from orchestrator.results import schema, store
from orchestrator.workload.loading import recorded_workload
from orchestrator.workload.model import Workload

__all__ = ["render_html"]

# Percentile curve: x = -log10(1 - p), so p0, p90, p99, p99.9 are evenly spaced.
_CURVE_X = [i / 10 for i in range(31)]
_CURVE_P = [1 - 10 ** -x for x in _CURVE_X]
_CURVE_P[0] = 0.0
_PCT_TICKS = [(0.0, "p0"), (1.0, "p90"), (2.0, "p99"), (3.0, "p99.9")]

class _Report:
    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str) -> None:
        self.con = con
        self.run_id = run_id
        self.workload: Workload | None = None  # as recorded; read by header()
        backends = [r[0] for r in self.q(
            "SELECT DISTINCT backend FROM ops WHERE run_id = ? ORDER BY backend")]
        self.colors = {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(backends)}
        self.backends = backends

    def q(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, [self.run_id] if params is None else params).fetchall()

    def exists(self, name: str) -> bool:
        row = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? "
            "UNION ALL SELECT count(*) FROM duckdb_views() WHERE view_name = ?",
            [name, name]).fetchall()
        return sum(int(r[0]) for r in row) > 0

    def color(self, backend: str) -> str:
        return self.colors.get(backend, "#555")

    # -- sections -------------------------------------------------------------------------

    def header(self) -> str:
        row = self.con.execute(
            "SELECT workload, status, seed, host, started_at, finished_at, git_commit, "
            "versions, network, thresholds_passed, workload_yaml FROM runs WHERE run_id = ?",
            [self.run_id]).fetchone()
        title = f"Benchmark run {self.run_id}"
        if row is None:
            return f"<h1>{esc(title)}</h1><p class='muted'>No row in table runs.</p>"
        (workload, status, seed, host, started, finished, commit, versions, network,
         passed, yaml_text) = row
        meta = [("workload", workload), ("status", status), ("seed", seed), ("host", host),
                ("started", started), ("finished", finished), ("git commit", commit),
                ("network", network), ("versions", versions),
                ("thresholds passed", passed)]
        rows = "".join(f"<tr><th class='l'>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>"
                       for k, v in meta if v is not None)
        self.workload = recorded_workload(yaml_text or "", str(workload))
        text = esc(yaml_text or "(not recorded)")
        return (f"<h1>{esc(title)}</h1>" + self.answer()
                + f"<table class='meta'>{rows}</table><h2 id='workload'>Workload</h2>"
                f"<pre>{text}</pre>")

    def answer(self) -> str:
        """The box the report opens with, the thresholds as a matrix (backends x
        conditions, coloured, with the measured value), and the cautions."""
        lines = meaning.lines(self.con, self.run_id)
        notes = meaning.cautions(self.con, self.run_id, lines, self.workload)
        parts = [answer_box(meaning.sentences(self.con, self.run_id, lines, notes))]
        if self.exists("threshold_results"):
            rows = self.q("SELECT backend, expression, measured, passed FROM threshold_results "
                          "WHERE run_id = ?")
            conditions = list(dict.fromkeys(r[1] for r in sorted(rows, key=lambda r: r[1])))
            backends = list(dict.fromkeys(r[0] for r in rows))
            by = {(r[0], r[1]): r for r in rows}
            head = "".join(f"<th>{esc(c)}</th>" for c in conditions)
            body = []
            for backend in backends:
                cells = []
                for condition in conditions:
                    row = by.get((backend, condition))
                    if row is None:
                        cells.append("<td class='na'>\u2013</td>")
                        continue
                    mark, css = {True: ("meets", "meets"), False: ("misses", "misses"),
                                 None: ("n/a", "na")}[row[3]]
                    cells.append(f"<td class='{css}'>{mark} ({esc(fmt(row[2]))})</td>")
                body.append(f"<tr><th class='l'>{esc(backend)}</th>{''.join(cells)}</tr>")
            if body:
                parts.append("<table><tr><th class='l'>backend</th>" + head + "</tr>"
                             + "".join(body) + "</table>")
        if notes:
            parts.append("<p class='muted'>Cautions, each from a measured fact:</p><ul>"
                         + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
        return "".join(parts)

    def summary(self) -> str:
        cols = ["backend", "op", "ops", "errors", "ops_per_s", "mean_ms", "p50_ms", "p95_ms",
                "p99_ms", "p999_ms", "hit_rate"]
        rows = self.q(f"SELECT {', '.join(cols)} FROM summary WHERE run_id = ? "
                      "ORDER BY op, backend")
        return ("<h2 id='summary'>Summary</h2><p class='muted'>Over all operations of the run "
                "(every worker, every repetition); latencies of successful operations, in ms."
                "</p>" + table(cols, rows, left=2))

    def latency(self) -> str:
        ps = ", ".join(f"{p!r}" for p in _CURVE_P)
        rows = self.q(
            f"SELECT op, backend, quantile_disc(latency_ns, [{ps}]) FROM ops "
            "WHERE run_id = ? AND error IS NULL GROUP BY op, backend ORDER BY op, backend")
        charts = []
        for op in sorted({r[0] for r in rows}, key=lambda o: ("get", "set", "delete").index(o)
                         if o in ("get", "set", "delete") else 9):
            series = [Series(b, self.color(b), [(x, v / 1e6) for x, v in zip(
                _CURVE_X, qs, strict=True)]) for o, b, qs in rows if o == op]
            charts.append(line_chart(series, title=f"{op} latency by percentile",
                                     x_label="percentile", y_label="latency (ms, log)",
                                     y_log=True, x_ticks=_PCT_TICKS))
        return ("<h2 id='latency'>Latency percentiles</h2><p class='muted'>Each curve is the "
                "latency at percentile p over all successful operations; the x axis is "
                "-log10(1-p), so the tail gets room.</p><div class='grid'>"
                + "".join(charts) + "</div>")

    def over_time(self) -> str:
        span = self.q("""
            SELECT max(e - s) FROM (
                SELECT max(start_ns + latency_ns) AS e, min(start_ns) AS s FROM ops
                WHERE run_id = ? GROUP BY backend, repetition)""")[0][0] or 0
        # 1 s buckets, finer for passes too short to show a shape at that resolution.
        bucket_ns = next((b for b in (10**9, 10**8, 10**7, 10**6) if span >= 10 * b), 10**6)
        width = tick_label(bucket_ns / 1e9) + " s" if bucket_ns >= 10**9 else \
            f"{bucket_ns // 10**6} ms"
        rows = self.q(f"""
            WITH first AS (
                SELECT backend, min(repetition) AS repetition FROM ops WHERE run_id = ?
                GROUP BY backend),
            pass AS (
                SELECT o.*, min(o.start_ns) OVER (PARTITION BY o.backend) AS t0,
                       max(o.start_ns + o.latency_ns) OVER (PARTITION BY o.backend) AS t1
                FROM ops AS o JOIN first USING (backend, repetition) WHERE o.run_id = ?),
            bucketed AS (
                SELECT *, (start_ns - t0) // {bucket_ns} AS bucket FROM pass)
            SELECT backend, op, bucket, count(*) AS n,
                   avg(CASE WHEN hit THEN 1.0 ELSE 0.0 END)
                       FILTER (WHERE op = 'get' AND error IS NULL) AS hit_rate,
                   -- the last bucket only covers up to the pass's end
                   least({bucket_ns}, t1 - t0 - bucket * {bucket_ns}) AS covered_ns
            FROM bucketed GROUP BY backend, op, bucket, t0, t1
            -- a final bucket covering under half its width would be noise
            HAVING least({bucket_ns}, t1 - t0 - bucket * {bucket_ns}) * 2 >= {bucket_ns}
            ORDER BY backend, op, bucket
        """, [self.run_id, self.run_id])
        w = bucket_ns / 1e9

        def steps(values: list[tuple[float, float]]) -> list[tuple[float, float]]:
            # Each bucket as a flat segment over its width.
            return [p for b, v in values for p in ((b * w, v), ((b + 1) * w, v))]

        charts = []
        for op in ("get", "set", "delete"):
            series = [Series(b, self.color(b), steps([
                (float(r[2]), r[3] / max(r[5], 1) * 1e9) for r in rows
                if r[0] == b and r[1] == op])) for b in self.backends]
            if any(s.points for s in series):
                charts.append(line_chart(series, title=f"{op} throughput ({width} buckets)",
                                         x_label="seconds since the pass started",
                                         y_label="ops/s", y_min=0))
        hits = [Series(b, self.color(b), steps([(float(r[2]), float(r[4])) for r in rows
                                                if r[0] == b and r[1] == "get"
                                                and r[4] is not None]))
                for b in self.backends]
        charts.append(line_chart(hits, title=f"get hit rate ({width} buckets)",
                                 x_label="seconds since the pass started", y_label="hit rate",
                                 y_min=0, y_max=1))
        return ("<h2 id='time'>Throughput and hit rate over time</h2><p class='muted'>First "
                "repetition of each backend, in 1 s buckets (finer when a pass lasts under "
                "10 s).</p><div class='grid'>" + "".join(charts) + "</div>")

    def consistency(self) -> str:
        cols = ["backend", "reads", "local_reads", "stale_reads", "stale_rate",
                "stale_beyond_invalidation", "p50_staleness_ms", "p99_staleness_ms",
                "max_staleness_ms", "unjudged_reads"]
        rows = self.q(f"SELECT {', '.join(cols)} FROM consistency WHERE run_id = ? "
                      "ORDER BY backend")
        lag_cols = ["backend", "writes", "expected", "count", "missing", "p50_ms", "p99_ms",
                    "max_ms"]
        lag_rows = self.q(f"SELECT {', '.join(lag_cols)} FROM invalidation_lag_summary "
                          "WHERE run_id = ? ORDER BY backend")
        bars = bar_chart([(r[0], self.color(r[0]), float(r[4] or 0) * 100) for r in rows],
                         title="stale-read rate", unit="% of reads")
        ps = ", ".join(f"{p!r}" for p in _CURVE_P)
        curves = self.q(f"SELECT backend, quantile_disc(lag_ms, [{ps}]) FROM invalidation_lag "
                        "WHERE run_id = ? GROUP BY backend ORDER BY backend")
        lag_chart = line_chart(
            [Series(b, self.color(b), list(zip(_CURVE_X, qs, strict=True))) for b, qs in curves],
            title="invalidation lag by percentile", x_label="percentile",
            y_label="lag (ms, log)", y_log=True, x_ticks=_PCT_TICKS)
        return ("<h2 id='consistency'>Consistency: stale reads and invalidation lag</h2>"
                "<p class='muted'>A read is stale when it returned write W1 although another "
                "write to the key started after W1 finished and finished before the read "
                "started; its age counts from the first such write's finish. Misses are never "
                "stale. <i>stale_beyond_invalidation</i> counts stale reads made after the "
                "reader's instance had received the superseding write's invalidation (or made "
                "that write itself): 0 for a correct pgcache. Invalidation lag: a set's "
                "completion to its invalidation arriving in each other worker (pgcache "
                "backends; 'missing' counts (write, worker) pairs that never saw one, "
                "which is expected when NOTIFY is disabled).</p>"
                + table(cols, rows) + "<h3>Invalidation lag (ms)</h3>"
                + table(lag_cols, lag_rows)
                + "<div class='grid'>" + bars + lag_chart + "</div>")

    def server_cost(self) -> str:
        head = "<h2 id='cost'>Server cost</h2>"
        if not self.exists("server_cost"):
            return head + "<p class='muted'>No server cost was sampled for this run.</p>"
        rows = self.q("""
            SELECT server, metric, any_value(kind), backend, median(value), median(per_s)
            FROM server_cost_summary WHERE run_id = ?
            GROUP BY server, metric, backend ORDER BY server, metric, backend""")
        if not rows:
            return head + "<p class='muted'>No server cost was sampled for this run.</p>"
        backends = sorted({r[3] for r in rows})
        by: dict[tuple[str, str], dict[str, tuple[Any, Any]]] = {}
        kinds: dict[tuple[str, str], str] = {}
        for server, metric, kind, backend, value, per_s in rows:
            by.setdefault((server, metric), {})[backend] = (value, per_s)
            kinds[(server, metric)] = kind
        table_rows = []
        for (server, metric), vals in by.items():
            kind = kinds[(server, metric)]
            cells: list[Any] = [server, metric, "increase (per s)" if kind == "counter"
                                else "maximum"]
            for b in backends:
                v = vals.get(b)
                if v is None:
                    cells.append(None)
                elif kind == "counter" and v[1] is not None:
                    cells.append(f"{fmt(v[0])} ({fmt(v[1])}/s)")
                else:
                    cells.append(v[0])
            table_rows.append(cells)
        return (head + "<p class='muted'>Sampled during each pass on the server the backend "
                "uses: counters show their increase over the pass, gauges their maximum "
                "(median over repetitions).</p>"
                + table(["server", "metric", "shown", *backends], table_rows, left=3))

    def repetitions(self) -> str:
        head = "<h2 id='repetitions'>Repeated passes</h2>"
        rows = self.q("""
            SELECT backend, op, passes, ops_per_s_median, ops_per_s_min, ops_per_s_max,
                   ops_per_s_cv, p50_ms_median, p50_ms_min, p50_ms_max, p99_ms_median,
                   p99_ms_min, p99_ms_max, local_rate_median
            FROM repeat_summary WHERE run_id = ? AND passes > 1 ORDER BY op, backend""")
        if not rows:
            return head + "<p class='muted'>One pass per backend (no <code>repeat</code>).</p>"
        cols = ["backend", "op", "passes", "ops/s median", "min", "max", "ops/s CV",
                "p50 ms median", "min", "max", "p99 ms median", "min", "max",
                "local rate median"]
        return (head + "<p class='muted'>Each backend ran several interleaved passes; a "
                "difference smaller than the min&ndash;max spread is noise. CV: the "
                "coefficient of variation of ops/s over the passes (standard deviation / "
                "mean).</p>" + table(cols, rows, left=2))

    def fault_impact(self) -> str:
        head = "<h2 id='faults'>Fault impact</h2>"
        rows = self.q("""
            SELECT backend, repetition, label, proxy, toxic, duration_ms, baseline_p99_ms,
                   errors_during, errors_after, stale_during, stale_after, errors_stop_ms,
                   recovery_ms
            FROM fault_impact WHERE run_id = ? ORDER BY start_ns""")
        if not rows:
            return head + "<p class='muted'>No fault schedule ran (faults need Toxiproxy).</p>"
        cols = ["backend", "repetition", "fault", "proxy", "toxic", "duration ms",
                "baseline p99 ms", "errors during", "errors after", "stale during",
                "stale after", "errors stop ms", "recovery ms"]

        def cell(i: int, v: Any) -> str:
            if i == 12 and v is None:
                return "<span class='fail'>not recovered</span>"
            return esc(fmt(v))

        # p99 per 100 ms of each backend's first faulted pass, against the faults' times.
        series = self.q("""
            WITH first AS (
                SELECT backend, min(repetition) AS repetition, min(start_ns) AS t0
                FROM fault_impact WHERE run_id = ? GROUP BY backend),
            pass AS (
                SELECT o.backend, o.start_ns, o.latency_ns,
                       min(o.start_ns) OVER (PARTITION BY o.backend) AS p0
                FROM ops AS o JOIN first USING (backend, repetition)
                WHERE o.run_id = ? AND o.error IS NULL)
            SELECT backend, (start_ns - p0) // 100000000 AS bucket,
                   quantile_cont(latency_ns, 0.99) / 1e6
            FROM pass GROUP BY ALL ORDER BY backend, bucket""", [self.run_id, self.run_id])
        chart = line_chart(
            [Series(b, self.color(b), [(r[1] / 10, r[2]) for r in series if r[0] == b])
             for b in self.backends if any(r[0] == b for r in series)],
            title="p99 latency per 100 ms (first faulted pass)",
            x_label="seconds since the pass's first operation", y_label="p99 (ms, log)",
            y_log=True, width=960)
        return (head + "<p class='muted'>For each fault of the schedule and each backend: "
                "errors and stale reads among the operations started while the fault was on "
                "and after it (until the next fault or the pass's end); when the errors "
                "stopped (the last failed operation completed); and the time to recovery, "
                "from the fault's end until errors stopped and the p99 latency of a sliding "
                "100 ms window was back within 2x the baseline (the p99 of the second before "
                "the pass's first fault).</p>" + table(cols, rows, left=5, cell=cell)
                + chart)

    def stampede(self) -> str:
        head = "<h2 id='stampede'>Stampede</h2>"
        rows = self.q("""
            SELECT backend, miss_events, loads, loads_per_miss, max_loads_per_miss,
                   failed_loads, waiting_per_miss, errors, wait_p50_ms, wait_p99_ms,
                   wait_max_ms, refill_p50_ms
            FROM stampede WHERE run_id = ? ORDER BY backend""")
        if not rows:
            return head + "<p class='muted'>No get_or_set miss events in this run.</p>"
        cols = ["backend", "miss events", "loads", "loads per miss", "max loads per miss",
                "failed loads", "waiting readers per miss", "errors", "wait p50 ms",
                "wait p99 ms", "wait max ms", "refill p50 ms"]
        return (head + "<p class='muted'>A miss event is a delete of a key readers fetch with "
                "get_or_set; its loads are the loader executions it caused; its waiting "
                "readers are the calls that started before the key was refilled and got the "
                "reloaded value (or failed), each waiting its latency.</p>"
                + table(cols, rows))

    def thresholds(self) -> str:
        head = "<h2 id='thresholds'>Thresholds</h2>"
        if not self.exists("threshold_results"):
            return head + "<p class='muted'>No thresholds were evaluated.</p>"
        rows = self.q("SELECT backend, expression, measured, passed, note FROM "
                      "threshold_results WHERE run_id = ? ORDER BY backend, expression")

        def cell(i: int, v: Any) -> str:
            if i == 3:
                return ("<span class='na'>n/a</span>" if v is None else
                        "<span class='pass'>pass</span>" if v else
                        "<span class='fail'>FAIL</span>")
            return esc(fmt(v))

        return head + table(["backend", "expression", "measured", "result", "note"], rows,
                             left=2, cell=cell)


def render_html(con: duckdb.DuckDBPyConnection, run_id: str | None = None) -> str:
    """The HTML report of ``run_id`` (default: the latest run) as one string."""
    if run_id is None or run_id == "latest":
        run_id = store.resolve_run_id(con, run_id)
    schema.ensure_views(con)
    r = _Report(con, run_id)
    if not r.backends:
        raise UsageError(f"run {run_id!r} has no recorded operations")
    sections = [r.header(), r.summary(), r.latency(), r.over_time(), r.consistency(),
                r.fault_impact(), r.stampede(), r.server_cost(), r.repetitions(),
                r.thresholds()]
    nav = " · ".join(f"<a href='#{a}'>{t}</a>" for a, t in (
        ("answer", "answer"), ("workload", "workload"), ("summary", "summary"),
        ("latency", "latency"),
        ("time", "over time"), ("consistency", "consistency"), ("faults", "fault impact"),
        ("stampede", "stampede"), ("cost", "server cost"), ("repetitions", "repetitions"),
        ("thresholds", "thresholds")))
    return (f"<!DOCTYPE html>{MARKER}\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc('pgcache benchmark ' + run_id)}</title><style>{CSS}</style></head>"
            f"<body><nav class='muted'>{nav}</nav>{''.join(sections)}"
            f"<p class='muted'>Generated from the results database; data: "
            f"{esc(json.dumps({'run_id': run_id, 'backends': r.backends}))}</p>"
            "</body></html>")
