"""The building blocks of the HTML reports: the page's style, escaping, number formats,
tables and inline SVG charts (no scripts, nothing fetched).

:mod:`orchestrator.reports.html` (a run's report) and :mod:`orchestrator.reports.suite_html`
(a suite's) are made of these.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.redaction import redact

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22")

CSS = """
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
.answer{border:2px solid #3465a4;background:#f3f7fc;border-radius:6px;padding:10px 16px;
margin:12px 0 8px;font-size:15px}.answer p{margin:4px 0}
td.meets{background:#dff3e4;color:#14532d}td.misses{background:#fbe0e0;color:#7f1d1d}
details{margin:6px 0 12px}summary{cursor:pointer;font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#333}svg .title{font-size:13px;font-weight:600}
"""


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: its name, colour and (x, y) points; ``spread``: (x, low, high)
    whiskers (e.g. the range of repeated passes); ``dashed``: drawn dashed (e.g. a fit)."""

    name: str
    color: str
    points: Sequence[tuple[float, float]]
    spread: Sequence[tuple[float, float, float]] = ()
    dashed: bool = False


def answer_box(sentences: Sequence[str]) -> str:
    """The box a report opens with: at most five sentences."""
    return ("<div class='answer' id='answer'>"
            + "".join(f"<p>{esc(s)}</p>" for s in sentences[:5]) + "</div>")


def esc(value: object) -> str:
    """Text for the page: passwords redacted (also those of databases written before
    redaction), then escaped."""
    return html.escape(redact(str(value)), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
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


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int = 1,
           cell: Callable[[int, Any], str] | None = None) -> str:
    if not rows:
        return '<p class="muted">No data.</p>'
    # Text columns are left-aligned, numbers right-aligned (header included).
    lefts = {i for i in range(len(columns))
             if i < left or all(isinstance(r[i], str) or r[i] is None for r in rows)}

    def td(tag: str, i: int, text: str) -> str:
        return f'<{tag} class="l">{text}</{tag}>' if i in lefts else f"<{tag}>{text}</{tag}>"

    head = "".join(td("th", i, esc(c).replace("_", " ")) for i, c in enumerate(columns))
    body = "".join(
        "<tr>" + "".join(td("td", i, cell(i, v) if cell is not None else esc(fmt(v)))
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
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


def log_ticks(lo: float, hi: float) -> list[float]:
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


def tick_label(v: float) -> str:
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
    height: int = 300, step: bool = False, x_margin: float = 0.0,
) -> str:
    """An SVG line chart; ``y_log`` plots a log10 axis (non-positive values dropped);
    ``x_margin`` widens the x range by that share of it on each side."""
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
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
           f'<text class="title" x="{ml}" y="16">{esc(title)}</text>']
    if not pts:
        out.append(f'<text x="{ml + pw / 2}" y="{mt + ph / 2}" text-anchor="middle" '
                   f'class="muted">no data</text></svg>')
        return "".join(out)
    xs = [x for _, p in pts for x, _ in p]
    ys = [y for _, p in pts for _, y in p] + [
        v for s_, _ in pts for _, lo_, hi_ in s_.spread for v in (lo_, hi_)
        if math.isfinite(v) and (v > 0 or not y_log)]
    x0, x1 = min(xs), max(xs)
    if x_ticks:
        x0, x1 = min(x0, x_ticks[0][0]), max(x1, x_ticks[-1][0])
    if x1 == x0:
        x1 = x0 + 1
    x0, x1 = x0 - x_margin * (x1 - x0), x1 + x_margin * (x1 - x0)
    if y_log:
        lo, hi = min(ys), max(ys)
        if y_min is not None and y_min > 0:
            lo = min(lo, y_min)
        lo = 10 ** math.floor(math.log10(lo))
        hi = 10 ** math.ceil(math.log10(hi)) if hi > lo else lo * 10
        ly0, ly1 = math.log10(lo), math.log10(hi)
        yticks = log_ticks(lo, hi)

        def ty(v: float) -> float:
            return mt + ph - (math.log10(v) - ly0) / (ly1 - ly0) * ph
    else:
        lo = min(ys) if y_min is None else min(y_min, min(ys))
        hi = max(ys) if y_max is None else max(y_max, max(ys))
        yticks = nice_ticks(lo, hi if hi > lo else lo + 1)
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
                   f'text-anchor="end">{tick_label(v)}</text>')
    xt = list(x_ticks) if x_ticks else [(v, tick_label(v)) for v in nice_ticks(x0, x1, 6)]
    for v, label in xt:
        x = tx(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + ph}" '
                   f'stroke="#eee"/><text x="{x:.1f}" y="{mt + ph + 15}" '
                   f'text-anchor="middle">{esc(label)}</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" '
               f'stroke="#999"/>')
    out.append(f'<text x="{ml + pw / 2}" y="{height - 6}" text-anchor="middle">'
               f'{esc(x_label)}</text>')
    out.append(f'<text transform="translate(14 {mt + ph / 2}) rotate(-90)" '
               f'text-anchor="middle">{esc(y_label)}</text>')
    lx, ly = ml, 26
    for s, p in pts:
        coords: list[str] = []
        prev_y: float | None = None
        for x, y in sorted(p, key=lambda xy: xy[0]):  # stable: keeps step pairs
            if step and prev_y is not None:
                coords.append(f"{tx(x):.1f},{ty(prev_y):.1f}")
            coords.append(f"{tx(x):.1f},{ty(y):.1f}")
            prev_y = y
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        out.append(f'<polyline fill="none" stroke="{s.color}" stroke-width="1.8"{dash} '
                   f'points="{" ".join(coords)}"/>')
        for x, low, high in s.spread:
            if y_log and (low <= 0 or high <= 0):
                continue
            out.append(f'<line x1="{tx(x):.1f}" x2="{tx(x):.1f}" y1="{ty(low):.1f}" '
                       f'y2="{ty(high):.1f}" stroke="{s.color}" stroke-width="1.2"/>'
                       f'<line x1="{tx(x) - 3:.1f}" x2="{tx(x) + 3:.1f}" y1="{ty(low):.1f}" '
                       f'y2="{ty(low):.1f}" stroke="{s.color}"/>'
                       f'<line x1="{tx(x) - 3:.1f}" x2="{tx(x) + 3:.1f}" y1="{ty(high):.1f}" '
                       f'y2="{ty(high):.1f}" stroke="{s.color}"/>')
        if len(p) == 1:
            out.append(f'<circle cx="{tx(p[0][0]):.1f}" cy="{ty(p[0][1]):.1f}" r="3" '
                       f'fill="{s.color}"/>')
        item = 24 + 6 * len(s.name)
        if lx + item > width - mr and lx > ml:
            lx, ly = ml, ly + 13
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="4" fill="{s.color}"/>'
                   f'<text x="{lx + 16}" y="{ly + 5}">{esc(s.name)}</text>')
        lx += item
    out.append("</svg>")
    return "".join(out)


def bar_chart(bars: Sequence[tuple[str, str, float]], *, title: str, unit: str,
              width: int = 640) -> str:
    """A horizontal SVG bar chart of (label, colour, value)."""
    ml, row = 170, 24
    height = 40 + row * max(1, len(bars)) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
           f'<text class="title" x="8" y="16">{esc(title)}</text>']
    top = max((v for _, _, v in bars if math.isfinite(v)), default=0.0) or 1.0
    pw = width - ml - 110
    for i, (label, color, value) in enumerate(bars):
        y = 32 + i * row
        w = 0.0 if not math.isfinite(value) else max(0.0, value) / top * pw
        out.append(f'<text x="{ml - 8}" y="{y + 14}" text-anchor="end">{esc(label)}</text>'
                   f'<rect x="{ml}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
                   f'fill="{color}"/><text x="{ml + w + 6:.1f}" y="{y + 14}">'
                   f'{esc(fmt(value, 4))} {esc(unit)}</text>')
    out.append("</svg>")
    return "".join(out)
