"""One self-contained HTML report of a run: tables and inline SVG plots, no scripts, no CDN.

Entry point: :func:`render_html` ``(con, run_id=None) -> str``. It reads the public tables
(``runs``, ``ops``, ``events``), the views of :mod:`orchestrator.results.schema` (those missing
are created first, TEMP ones in a read-only database), and, when present, the tables
``server_cost`` and ``threshold_results``. Sections without data say so instead of vanishing.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from orchestrator.errors import UsageError
from orchestrator.redaction import redact
from orchestrator.results import schema, store

__all__ = ["render_html"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22")

# Percentile curve: x = -log10(1 - p), so p0, p90, p99, p99.9 are evenly spaced.
_CURVE_X = [i / 10 for i in range(31)]
_CURVE_P = [1 - 10 ** -x for x in _CURVE_X]
_CURVE_P[0] = 0.0
_PCT_TICKS = [(0.0, "p0"), (1.0, "p90"), (2.0, "p99"), (3.0, "p99.9")]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1320px;padding:0 16px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
#ddd;padding-bottom:4px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left;white-space:nowrap}
pre{background:#f7f7f7;border:1px solid #e2e2e2;padding:10px;overflow:auto;max-height:420px;
font-size:12px}.meta td{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px}.muted{color:#777}.pass{color:#1a7f37;
font-weight:600}.fail{color:#c62828;font-weight:600}.na{color:#777}
svg{background:#fff;border:1px solid #e5e5e5}
svg text{font:11px system-ui,sans-serif;fill:#333}svg .title{font-size:13px;font-weight:600}
"""


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: its name, colour and (x, y) points."""

    name: str
    color: str
    points: Sequence[tuple[float, float]]


def _esc(value: object) -> str:
    """Text for the page: passwords redacted (also those of databases written before
    redaction), then escaped."""
    return html.escape(redact(str(value)), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.{digits}g}"
    return str(value)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int = 1,
           cell: Callable[[int, Any], str] | None = None) -> str:
    if not rows:
        return '<p class="muted">No data.</p>'
    # Text columns are left-aligned, numbers right-aligned (header included).
    lefts = {i for i in range(len(columns))
             if i < left or all(isinstance(r[i], str) or r[i] is None for r in rows)}

    def td(tag: str, i: int, text: str) -> str:
        return f'<{tag} class="l">{text}</{tag}>' if i in lefts else f"<{tag}>{text}</{tag}>"

    head = "".join(td("th", i, _esc(c).replace("_", " ")) for i, c in enumerate(columns))
    body = "".join(
        "<tr>" + "".join(td("td", i, cell(i, v) if cell is not None else _esc(_fmt(v)))
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            ticks.append(round(t, 12))
        t += step
    return ticks


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks at 1, 2, 5 x 10^k between lo and hi (values > 0)."""
    ticks = []
    # 1-2-5 ticks over a few decades; one per decade when the range is wider.
    mantissas = (1, 2, 5) if math.log10(hi / lo) <= 3 else (1,)
    for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in mantissas:
            v = m * 10.0 ** k
            if lo <= v <= hi:
                ticks.append(v)
    return ticks if len(ticks) >= 2 else [lo, hi]


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def line_chart(
    series: Sequence[Series], *, title: str, x_label: str, y_label: str,
    y_log: bool = False, x_ticks: Sequence[tuple[float, str]] | None = None,
    y_min: float | None = None, y_max: float | None = None, width: int = 640,
    height: int = 300, step: bool = False,
) -> str:
    """An SVG line chart; ``y_log`` plots a log10 axis (non-positive values dropped)."""
    pts = [(s, [(x, y) for x, y in s.points
                if y is not None and math.isfinite(y) and (y > 0 or not y_log)])
           for s in series]
    pts = [(s, p) for s, p in pts if p]
    ml, mr, mb = 64, 16, 42
    # Legend rows (wrapped like the drawing loop below) push the plot down.
    rows, lx = 1, ml
    for s_, _ in pts:
        item = 24 + 6 * len(s_.name)
        if lx + item > width - mr and lx > ml:
            rows, lx = rows + 1, ml
        lx += item
    mt = 31 + 13 * rows
    pw, ph = width - ml - mr, height - mt - mb
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
           f'<text class="title" x="{ml}" y="16">{_esc(title)}</text>']
    if not pts:
        out.append(f'<text x="{ml + pw / 2}" y="{mt + ph / 2}" text-anchor="middle" '
                   f'class="muted">no data</text></svg>')
        return "".join(out)
    xs = [x for _, p in pts for x, _ in p]
    ys = [y for _, p in pts for _, y in p]
    x0, x1 = min(xs), max(xs)
    if x_ticks:
        x0, x1 = min(x0, x_ticks[0][0]), max(x1, x_ticks[-1][0])
    if x1 == x0:
        x1 = x0 + 1
    if y_log:
        lo, hi = min(ys), max(ys)
        if y_min is not None and y_min > 0:
            lo = min(lo, y_min)
        lo = 10 ** math.floor(math.log10(lo))
        hi = 10 ** math.ceil(math.log10(hi)) if hi > lo else lo * 10
        ly0, ly1 = math.log10(lo), math.log10(hi)
        yticks = _log_ticks(lo, hi)

        def ty(v: float) -> float:
            return mt + ph - (math.log10(v) - ly0) / (ly1 - ly0) * ph
    else:
        lo = min(ys) if y_min is None else min(y_min, min(ys))
        hi = max(ys) if y_max is None else max(y_max, max(ys))
        yticks = _nice_ticks(lo, hi if hi > lo else lo + 1)
        lo, hi = min(lo, yticks[0]), max(hi, yticks[-1])
        span = hi - lo or 1.0

        def ty(v: float) -> float:
            return mt + ph - (v - lo) / span * ph

    def tx(v: float) -> float:
        return ml + (v - x0) / (x1 - x0) * pw

    for v in yticks:
        y = ty(v)
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#eee"/><text x="{ml - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{_tick_label(v)}</text>')
    xt = list(x_ticks) if x_ticks else [(v, _tick_label(v)) for v in _nice_ticks(x0, x1, 6)]
    for v, label in xt:
        x = tx(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" '
                   f'stroke="#eee"/><text x="{x:.1f}" y="{mt + ph + 15}" '
                   f'text-anchor="middle">{_esc(label)}</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" '
               f'stroke="#999"/>')
    out.append(f'<text x="{ml + pw / 2}" y="{height - 6}" text-anchor="middle">'
               f'{_esc(x_label)}</text>')
    out.append(f'<text transform="translate(14 {mt + ph / 2}) rotate(-90)" '
               f'text-anchor="middle">{_esc(y_label)}</text>')
    lx, ly = ml, 26
    for s, p in pts:
        coords: list[str] = []
        prev_y: float | None = None
        for x, y in sorted(p, key=lambda xy: xy[0]):  # stable: keeps step pairs
            if step and prev_y is not None:
                coords.append(f"{tx(x):.1f},{ty(prev_y):.1f}")
            coords.append(f"{tx(x):.1f},{ty(y):.1f}")
            prev_y = y
        out.append(f'<polyline fill="none" stroke="{s.color}" stroke-width="1.8" '
                   f'points="{" ".join(coords)}"/>')
        if len(p) == 1:
            out.append(f'<circle cx="{tx(p[0][0]):.1f}" cy="{ty(p[0][1]):.1f}" r="3" '
                       f'fill="{s.color}"/>')
        item = 24 + 6 * len(s.name)
        if lx + item > width - mr and lx > ml:
            lx, ly = ml, ly + 13
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="4" fill="{s.color}"/>'
                   f'<text x="{lx + 16}" y="{ly + 5}">{_esc(s.name)}</text>')
        lx += item
    out.append("</svg>")
    return "".join(out)


def bar_chart(bars: Sequence[tuple[str, str, float]], *, title: str, unit: str,
              width: int = 640) -> str:
    """A horizontal SVG bar chart of (label, colour, value)."""
    ml, row = 170, 24
    height = 40 + row * max(1, len(bars)) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
           f'<text class="title" x="8" y="16">{_esc(title)}</text>']
    top = max((v for _, _, v in bars if math.isfinite(v)), default=0.0) or 1.0
    pw = width - ml - 110
    for i, (label, color, value) in enumerate(bars):
        y = 32 + i * row
        w = 0.0 if not math.isfinite(value) else max(0.0, value) / top * pw
        out.append(f'<text x="{ml - 8}" y="{y + 14}" text-anchor="end">{_esc(label)}</text>'
                   f'<rect x="{ml}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
                   f'fill="{color}"/><text x="{ml + w + 6:.1f}" y="{y + 14}">'
                   f'{_esc(_fmt(value, 4))} {_esc(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


class _Report:
    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str) -> None:
        self.con = con
        self.run_id = run_id
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
            return f"<h1>{_esc(title)}</h1><p class='muted'>No row in table runs.</p>"
        (workload, status, seed, host, started, finished, commit, versions, network,
         passed, yaml_text) = row
        meta = [("workload", workload), ("status", status), ("seed", seed), ("host", host),
                ("started", started), ("finished", finished), ("git commit", commit),
                ("network", network), ("versions", versions),
                ("thresholds passed", passed)]
        rows = "".join(f"<tr><th class='l'>{_esc(k)}</th><td>{_esc(_fmt(v))}</td></tr>"
                       for k, v in meta if v is not None)
        return (f"<h1>{_esc(title)}</h1><table class='meta'>{rows}</table>"
                f"<h2 id='workload'>Workload</h2><pre>{_esc(yaml_text or '(not recorded)')}</pre>")

    def summary(self) -> str:
        cols = ["backend", "op", "ops", "errors", "ops_per_s", "mean_ms", "p50_ms", "p95_ms",
                "p99_ms", "p999_ms", "hit_rate"]
        rows = self.q(f"SELECT {', '.join(cols)} FROM summary WHERE run_id = ? "
                      "ORDER BY op, backend")
        return ("<h2 id='summary'>Summary</h2><p class='muted'>Over all operations of the run "
                "(every worker, every repetition); latencies of successful operations, in ms."
                "</p>" + _table(cols, rows, left=2))

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
        width = _tick_label(bucket_ns / 1e9) + " s" if bucket_ns >= 10**9 else \
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
                + _table(cols, rows) + "<h3>Invalidation lag (ms)</h3>"
                + _table(lag_cols, lag_rows)
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
                    cells.append(f"{_fmt(v[0])} ({_fmt(v[1])}/s)")
                else:
                    cells.append(v[0])
            table_rows.append(cells)
        return (head + "<p class='muted'>Sampled during each pass on the server the backend "
                "uses: counters show their increase over the pass, gauges their maximum "
                "(median over repetitions).</p>"
                + _table(["server", "metric", "shown", *backends], table_rows, left=3))

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
                "mean).</p>" + _table(cols, rows, left=2))

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
            return _esc(_fmt(v))

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
                "the pass's first fault).</p>" + _table(cols, rows, left=5, cell=cell)
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
                + _table(cols, rows))

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
            return _esc(_fmt(v))

        return head + _table(["backend", "expression", "measured", "result", "note"], rows,
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
        ("workload", "workload"), ("summary", "summary"), ("latency", "latency"),
        ("time", "over time"), ("consistency", "consistency"), ("faults", "fault impact"),
        ("stampede", "stampede"), ("cost", "server cost"), ("repetitions", "repetitions"),
        ("thresholds", "thresholds")))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_esc('pgcache benchmark ' + run_id)}</title><style>{_CSS}</style></head>"
            f"<body><nav class='muted'>{nav}</nav>{''.join(sections)}"
            f"<p class='muted'>Generated from the results database; data: "
            f"{_esc(json.dumps({'run_id': run_id, 'backends': r.backends}))}</p>"
            "</body></html>")
