"""What a run's figures mean: the console text at its end, and its HTML report's first box.

One line per backend and op (ops/s, p50, p99, mean, local share, stale rate, stale reads
beyond invalidation, errors), the threshold verdicts, the cautions that say when the figures
cannot carry a comparison, then the next commands. ``run`` prints it when a run ends, and
``report`` (table format) prints it for any recorded run.

A caution is raised by a measured fact, never by a guess; each limit is stated here and in
docs/reading-results.md:

- a cold start: ``warmup_s`` is 0, so every pass counts its empty caches and new connections;
- a short pass: the shortest measured pass lasted under :data:`SHORT_PASS_S` seconds;
- one repetition (no spread measured), or a spread across repetitions above
  :data:`MAX_RATE_CV` (ops/s) or :data:`MAX_P99_CV` (p99), as coefficients of variation;
- the harness near its own ceiling: a backend's throughput at least :data:`CEILING_SHARE` of
  the ``null`` backend's in the same run, or, without ``null``, a closed loop whose reads are
  at least :data:`LOCAL_SHARE` local (such a backend's figure measures the harness too);
- an open loop behind its schedule: an op kind achieved under :data:`SCHEDULE_SHARE` of its
  ``target_rate``;
- stale reads: a backend that served any, because its latency is not comparable with that of
  a backend serving only fresh values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.results import store
from orchestrator.workload.model import Workload

SHORT_PASS_S = 5.0
MAX_RATE_CV = 0.10
MAX_P99_CV = 0.25
CEILING_SHARE = 0.8
LOCAL_SHARE = 0.9
SCHEDULE_SHARE = 0.95

_READS = ("get", "get_or_set")
_OP_ORDER = {"set": 0, "get": 1, "get_or_set": 1, "delete": 2, "load": 3}


@dataclass(frozen=True, slots=True)
class Line:
    """One backend and op of the run, with its consistency when the op is a read."""

    backend: str
    op: str
    ops: int
    errors: int
    ops_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    local_rate: float | None = None
    stale_rate: float | None = None
    stale_beyond: int | None = None
    p99_staleness_ms: float | None = None


def lines(conn: Any, run_id: str) -> list[Line]:
    """The run's lines, backends in the order they ran (``store.summary``'s order)."""
    consistency = {row[0]: row[1:] for row in conn.execute(
        "SELECT backend, stale_rate, stale_beyond_invalidation, p99_staleness_ms "
        "FROM consistency WHERE run_id = ?", [run_id]).fetchall()}
    out = []
    for row in store.summary(conn, run_id):
        stale = consistency.get(row["backend"]) if row["op"] in _READS else None
        out.append(Line(
            backend=row["backend"], op=row["op"], ops=row["ops"], errors=row["errors"] or 0,
            ops_per_s=row["ops_per_s"], p50_ms=row["p50_ms"], p99_ms=row["p99_ms"],
            mean_ms=row["mean_ms"],
            local_rate=row["local_rate"] if row["op"] in _READS else None,
            stale_rate=None if stale is None else stale[0],
            stale_beyond=None if stale is None else stale[1],
            p99_staleness_ms=None if stale is None else stale[2]))
    return out


def _num(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _share(value: float) -> str:
    """A share in words' precision: 100%, 3.4%, 0.069%."""
    pct = value * 100
    return f"{pct:.0f}%" if pct >= 10 else f"{pct:.1f}%" if pct >= 1 else f"{pct:.2g}%"


_HEAD = ("backend", "op", "ops/s", "p50 ms", "p99 ms", "mean ms", "local", "stale",
         "stale>inv", "errors")


def table(rows: Sequence[Line]) -> str:
    """The aligned figures: one row per backend and op."""
    cells = [list(_HEAD)]
    for r in rows:
        cells.append([r.backend, r.op, _num(r.ops_per_s, 0), _num(r.p50_ms, 3),
                      _num(r.p99_ms, 3), _num(r.mean_ms, 3), _pct(r.local_rate),
                      _pct(r.stale_rate), "-" if r.stale_beyond is None else f"{r.stale_beyond:,}",
                      f"{r.errors:,}"])
    widths = [max(len(row[i]) for row in cells) for i in range(len(_HEAD))]
    text = ["  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                      for i, c in enumerate(row)) for row in cells]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def verdicts(conn: Any, run_id: str) -> list[str]:
    """The threshold verdicts recorded for the run, failures first."""
    exists = conn.execute("SELECT count(*) FROM duckdb_tables() "
                          "WHERE table_name = 'threshold_results'").fetchone()[0]
    if not exists:
        return []
    rows = conn.execute("SELECT backend, expression, measured, passed, note "
                        "FROM threshold_results WHERE run_id = ? "
                        "ORDER BY passed NULLS LAST, backend, expression", [run_id]).fetchall()
    out = []
    for backend, expression, measured, passed, note in rows:
        mark = {True: "pass", False: "FAIL", None: "n/a "}[passed]
        shown = "-" if measured is None else f"{measured:.4g}"
        out.append(f"{mark}  {backend}: {expression} (measured {shown})"
                   + (f" — {note}" if note else ""))
    return out


def _pass_spans(conn: Any, run_id: str) -> list[tuple[str, int, float]]:
    return [(b, r, float(s)) for b, r, s in conn.execute(
        "SELECT backend, repetition, (max(start_ns + latency_ns) - min(start_ns)) / 1e9 "
        "FROM ops WHERE run_id = ? GROUP BY ALL ORDER BY 3", [run_id]).fetchall()]


def _spreads(conn: Any, run_id: str) -> list[tuple[str, str, int, float | None, float | None]]:
    return [tuple(row) for row in conn.execute(
        "SELECT backend, op, passes, ops_per_s_cv, p99_ms_cv FROM repeat_summary "
        "WHERE run_id = ? ORDER BY backend, op", [run_id]).fetchall()]


def cautions(conn: Any, run_id: str, rows: Sequence[Line],
             workload: Workload | None) -> list[str]:
    """Why the figures may not support a comparison, each said with what was measured."""
    out: list[str] = []
    if not rows:
        return out
    if workload is not None and workload.warmup_s == 0:
        out.append("cold start: no warm-up (warmup_s: 0), so each pass counts its empty "
                   "caches and new connections; set warmup_s for steady-state figures")
    spans = _pass_spans(conn, run_id)
    if spans and spans[0][2] < SHORT_PASS_S:
        backend, repetition, span = spans[0]
        out.append(f"short passes: the shortest ({backend}, repetition {repetition}) "
                   f"measured {span:.1f} s (under {SHORT_PASS_S:g} s); p99 rests on few "
                   "operations and one scheduler hiccup moves it; set duration_s")
    spreads = _spreads(conn, run_id)
    if spreads and max(p for _, _, p, _, _ in spreads) < 2:
        out.append("one repetition: no spread was measured, so a difference between "
                   "backends of under about 10% may be noise; set repeat: 3")
    for backend, op, passes, rate_cv, p99_cv in spreads:
        if passes >= 2 and rate_cv is not None and rate_cv > MAX_RATE_CV:
            out.append(f"spread: {backend} {op} ops/s varied {rate_cv * 100:.0f}% across "
                       f"{passes} repetitions (limit {MAX_RATE_CV * 100:.0f}%)")
        if passes >= 2 and p99_cv is not None and p99_cv > MAX_P99_CV:
            out.append(f"spread: {backend} {op} p99 varied {p99_cv * 100:.0f}% across "
                       f"{passes} repetitions (limit {MAX_P99_CV * 100:.0f}%)")
    out += _ceiling(rows, workload)
    out += _schedule(rows, workload)
    for r in rows:
        if r.stale_rate:
            out.append(f"stale reads: {r.backend} served {_share(r.stale_rate)} stale "
                       f"{r.op}s (p99 staleness {_num(r.p99_staleness_ms, 1)} ms); its "
                       "latency is not comparable with a backend that serves only fresh "
                       "values")
    return out


def _ceiling(rows: Sequence[Line], workload: Workload | None) -> list[str]:
    null = {r.op: r.ops_per_s for r in rows if r.backend == "null" and r.ops_per_s}
    out = []
    if null:
        for r in rows:
            ceiling = null.get(r.op)
            if r.backend != "null" and ceiling and r.ops_per_s and \
                    r.ops_per_s >= CEILING_SHARE * ceiling:
                out.append(f"harness ceiling: {r.backend} {r.op} reached "
                           f"{r.ops_per_s / ceiling * 100:.0f}% of the null backend's "
                           f"{ceiling:,.0f} ops/s, so its figure measures the harness too")
        return out
    closed = workload is None or workload.target_rate.reads is None
    for r in rows:
        if closed and r.local_rate is not None and r.local_rate >= LOCAL_SHARE:
            out.append(f"harness ceiling: {r.backend} served {r.local_rate * 100:.0f}% of "
                       f"{r.op}s locally in a closed loop, so its throughput may be the "
                       "harness's; add the null backend (--backends ... null) to see the "
                       "ceiling")
    return out


def _schedule(rows: Sequence[Line], workload: Workload | None) -> list[str]:
    if workload is None:
        return []
    out = []
    for r in rows:
        offered = (workload.target_rate.writes if r.op == "set" else
                   workload.target_rate.reads if r.op in _READS else None)
        if offered and r.ops_per_s is not None and r.ops_per_s < SCHEDULE_SHARE * offered:
            out.append(f"behind schedule: {r.backend} {r.op} achieved {r.ops_per_s:,.0f} of "
                       f"{offered:,.0f} ops/s offered ({r.ops_per_s / offered * 100:.0f}%); "
                       "its latencies include the backlog")
    return out


def render(conn: Any, run_id: str, *, title: str, results: str,
           workload: Workload | None, next_steps: bool = True) -> str:
    """The whole end-of-run text (``next_steps``: ending with the commands to run next)."""
    rows = lines(conn, run_id)
    if not rows:
        return f"{title}\n(no operations recorded)"
    parts = [title, table(rows),
             "local: reads served from the instance's own copy; stale: reads that returned a "
             "superseded value; stale>inv: stale reads made after the instance knew better "
             "(0 for a correct cache)"]
    found = verdicts(conn, run_id)
    if found:
        failed = sum(1 for v in found if v.startswith("FAIL"))
        parts.append(f"thresholds: {len(found) - failed} of {len(found)} passed"
                     + "".join(f"\n  {v}" for v in found))
    notes = cautions(conn, run_id, rows, workload)
    if notes:
        parts.append("cautions (what these figures cannot support):"
                     + "".join(f"\n  - {n}" for n in notes))
    if next_steps:
        parts.append("next:\n"
                     f"  python -m orchestrator report {run_id} --html --results {results}\n"
                     "  python -m orchestrator suite workloads/suite.yaml --quick   "
                     "(the answer across latency, read share and instances)")
    return "\n\n".join(parts)


def _p99s(rows: Sequence[Line], ops: tuple[str, ...]) -> str:
    ranked = sorted((r for r in rows if r.op in ops and r.p99_ms is not None),
                    key=lambda r: r.p99_ms or 0.0)
    return ", ".join(f"{r.backend} {_num(r.p99_ms, 3)} ms" for r in ranked)


def sentences(conn: Any, run_id: str, rows: Sequence[Line], notes: Sequence[str]) -> list[str]:
    """At most five sentences a reader needs first: read and write p99 by backend, fastest
    first; the stale reads; the thresholds; the cautions (``rows`` and ``notes``: the run's
    :func:`lines` and :func:`cautions`, which the caller shows too)."""
    if not rows:
        return ["This run recorded no operations."]
    out = []
    reads = _p99s(rows, _READS)
    if reads:
        out.append(f"Read p99, fastest first: {reads}.")
    writes = _p99s(rows, ("set",))
    if writes:
        out.append(f"Write p99, fastest first: {writes}.")
    stale = [r for r in rows if r.stale_rate]
    if stale:
        out.append("Stale reads: " + "; ".join(
            f"{r.backend} {_share(r.stale_rate or 0.0)} (p99 staleness "
            f"{_num(r.p99_staleness_ms, 1)} ms)" for r in stale)
            + ", so compare their latency only with backends that also serve local copies.")
    elif any(r.op in _READS for r in rows):
        out.append("No backend served a stale read.")
    found = verdicts(conn, run_id)
    if found:
        failed = [v for v in found if v.startswith("FAIL")]
        out.append(f"Thresholds: {len(found) - len(failed)} of {len(found)} passed"
                   + (f"; failed: {'; '.join(v.removeprefix('FAIL  ') for v in failed[:3])}"
                      + (" ..." if len(failed) > 3 else "") if failed else "") + ".")
    if notes:
        kinds = list(dict.fromkeys(n.split(":", 1)[0] for n in notes))
        out.append(f"Cautions before comparing: {', '.join(kinds)} (listed below).")
    else:
        out.append("No caution: warm, long enough, repeated with a small spread, below the "
                   "harness ceiling and on schedule.")
    return out[:5]
