"""A suite's answer, computed from its measured points: verdicts, crossovers, extrapolation.

* **Verdicts** (:func:`verdicts`): for each point and backend, whether it meets the target
  (threshold conditions joined by ``and``, measured as a run's thresholds are: over every
  pass of the point's run), by how much each missed condition misses, and in how many of the
  passes, each judged alone, every condition held. A condition a backend did not measure
  (plain Valkey has no invalidation lag) does not apply to it.
* **Crossovers** (:func:`crossovers`): for each axis, each compared pair of backends and each
  metric of the target, where the comparison changes along the axis. Two backends *match* at
  a point when the ranges of their per-pass values overlap or their pooled values differ by
  at most 10%; otherwise one is lower. Every sentence is built from the measured values and
  says how many passes it rests on and their range.
* **Extrapolation** (:func:`instance_fits`): invalidation lag p99 and server CPU per write
  against the number of instances, a least-squares line over every pass of the instance
  axis, with its standard errors, evaluated at 100 instances. An extrapolation, said so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.results.suites import AxisRecord, PointRecord, SuiteData
from orchestrator.workload.suite import INSTANCES, LATENCY, READ_SHARE, value_text
from orchestrator.workload.thresholds import Threshold

MATCH_TOLERANCE = 0.10  # pooled values within 10% of each other match
EXTRAPOLATE_TO = 100  # instances
_SOURCES = {"summary": "summary", "consistency": "consistency",
            "invalidation_lag_summary": "invalidation_lag_summary"}
_BY_PASS = {"summary": "summary_by_pass", "consistency": "consistency_by_pass",
            "invalidation_lag_summary": "invalidation_lag_summary_by_pass"}


# -- words ----------------------------------------------------------------------------------

def axis_label(axis: str, value: float) -> str:
    """An axis value in words: ``1.5 ms``, ``90% reads``, ``4 instances``."""
    if axis == LATENCY:
        return f"{value_text(value)} ms"
    if axis == READ_SHARE:
        return f"{value * 100:g}% reads"
    if axis == INSTANCES:
        return f"{value_text(value)} instance{'' if value == 1 else 's'}"
    return f"{axis} {value_text(value)}"


def axis_title(axis: str) -> str:
    """An axis's name in a heading: ``round-trip latency``."""
    return {LATENCY: "round-trip latency", READ_SHARE: "read share",
            INSTANCES: "application instances"}.get(axis, axis)


def axis_noun(axis: str) -> str:
    """An axis's name in a sentence: ``at every latency measured``."""
    return {LATENCY: "latency", READ_SHARE: "read share",
            INSTANCES: "instance count"}.get(axis, f"{axis} value")


def metric_label(t: Threshold) -> str:
    """``get p99``, ``stale rate``, ``invalidation lag p99``."""
    column = t.column.removesuffix("_ms").replace("_", " ")
    if t.source == "summary":
        return f"{t.op_filter} {column}"
    if t.source == "invalidation_lag_summary":
        return f"invalidation lag {column}"
    return column


def _unit(column: str) -> str:
    if column.endswith("_ms"):
        return " ms"
    if column.endswith("_rate"):
        return "%"
    if column.endswith("ops_per_s"):
        return "/s"
    if column.endswith(("_us_per_write", "_us_per_op")):
        return " us"
    return ""


def _bare(value: float | None, column: str) -> str:
    """A measured value in its unit's scale, without the unit (rates in percent)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if column.endswith("_rate"):
        return _sig(value * 100)
    if column.endswith("ops_per_s"):
        return f"{value:,.0f}"
    return _sig(value)


def number(value: float | None, column: str = "") -> str:
    """A measured value with its unit: ``1.23 ms``, ``0.05%``, ``1,800/s``."""
    text = _bare(value, column)
    return text if text == "n/a" else text + _unit(column)


def _sig(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


# -- measured values --------------------------------------------------------------------------

class Measures:
    """The views thresholds read (``summary``, ``consistency``, ``invalidation_lag_summary``,
    pooled and per pass), read once for a suite's runs."""

    def __init__(self, conn: Any, run_ids: Iterable[str]) -> None:
        runs = sorted(set(run_ids))
        self._pooled: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        self._passes: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        marks = ", ".join("?" * len(runs)) or "NULL"
        for source, view in _SOURCES.items():
            self._pooled[source] = self._read(conn, view, marks, runs, by_pass=False)
        for source, view in _BY_PASS.items():
            self._passes[source] = self._read(conn, view, marks, runs, by_pass=True)

    @staticmethod
    def _read(conn: Any, view: str, marks: str, runs: list[str],
              by_pass: bool) -> dict[tuple[Any, ...], dict[str, Any]]:
        cursor = conn.execute(f"SELECT * FROM {view} WHERE run_id IN ({marks})", runs)
        names = [d[0] for d in cursor.description]
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            key = (row["run_id"], row["backend"], row.get("op"),
                   row["repetition"] if by_pass else None)
            rows[key] = row
        return rows

    def value(self, t: Threshold, run_id: str, backend: str,
              repetition: int | None = None) -> float | None:
        """What ``t``'s metric measured (over the run, or one pass); None: not measured."""
        table = self._pooled if repetition is None else self._passes
        row = table[t.source].get((run_id, backend, t.op_filter, repetition))
        value = None if row is None else row.get(t.column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return float(value)


# -- verdicts -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Condition:
    """One condition of the target, for one backend at one point."""

    threshold: Threshold
    measured: float | None  # over every pass; None: not measured here (does not apply)
    passed: bool | None  # None: does not apply

    def miss(self) -> str:
        """How far it misses: ``get.p99_ms 3.1 ms, limit < 2 ms: +55%``."""
        t, m = self.threshold, self.measured
        if m is None:
            return f"{t.expression}: not measured"
        head = (f"{_metric(t)} {number(m, t.column)}, limit {t.comparison} "
                f"{number(t.limit, t.column)}")
        if t.comparison in ("<", "<=") and t.limit > 0:
            return head + f": {_ratio(m / t.limit)}"
        if t.comparison in (">", ">=") and t.limit > 0:
            return head + f": {(1 - m / t.limit) * 100:.0f}% short"
        return head


def _ratio(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio >= 2 else f"+{(ratio - 1) * 100:.0f}%"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a backend meets the target at a point, and how it misses."""

    point: str
    backend: str
    conditions: tuple[Condition, ...]
    passes_met: int  # passes in which every applicable condition held, each judged alone
    passes: int

    @property
    def meets(self) -> bool:
        return not any(c.passed is False for c in self.conditions)

    @property
    def missed(self) -> tuple[Condition, ...]:
        return tuple(c for c in self.conditions if c.passed is False)

    def evidence(self) -> str:
        """``3/3 passes``, or what misses and by how much, then the passes."""
        spread = f"{self.passes_met}/{self.passes} passes"
        if self.meets:
            return spread
        return "; ".join(c.miss() for c in self.missed) + f"; {spread}"

    def describe(self) -> str:
        """``meets (3/3 passes)`` or ``misses (set.p99_ms 31 ms, limit < 10 ms: 3.1x; 0/3
        passes)``."""
        return f"{'meets' if self.meets else 'misses'} ({self.evidence()})"


def verdicts(measures: Measures, data: SuiteData,
             target: Sequence[Threshold]) -> list[Verdict]:
    """Every (point, backend) judged against the target, points in the suite's order."""
    repetitions: dict[tuple[str, str], list[int]] = {}
    for row in data.pass_metrics:
        repetitions.setdefault((row["point"], row["backend"]), []).append(
            int(row["repetition"]))
    result = []
    for point in data.points:
        for backend in data.backends:
            reps = repetitions.get((point.point, backend))
            if not reps:
                continue
            conditions = tuple(_condition(t, measures.value(t, point.run_id, backend))
                               for t in target)
            met = sum(1 for rep in reps
                      if not any(_condition(t, measures.value(t, point.run_id, backend, rep))
                                 .passed is False for t in target))
            result.append(Verdict(point.point, backend, conditions, met, len(reps)))
    return result


def _condition(t: Threshold, measured: float | None) -> Condition:
    return Condition(t, measured, None if measured is None else t.check(measured))


# -- slices of the sweep ---------------------------------------------------------------------

def axis_points(data: SuiteData, axis: AxisRecord) -> list[PointRecord]:
    """The points of ``axis``'s sweep (every other axis at its base), by the axis's value."""
    return sorted((p for p in data.points if axis.name in p.on_axes),
                  key=lambda p: p.values[axis.name])


def context(data: SuiteData, axis: AxisRecord) -> str:
    """The other axes' base values, in words: ``90% reads, 2 instances``."""
    return ", ".join(axis_label(a.name, a.base) for a in data.axes if a.name != axis.name)


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _segments(marks: Sequence[Any]) -> list[tuple[Any, int, int]]:
    """Runs of equal marks: (mark, first index, last index)."""
    runs: list[tuple[Any, int, int]] = []
    for i, mark in enumerate(marks):
        if runs and runs[-1][0] == mark:
            runs[-1] = (mark, runs[-1][1], i)
        else:
            runs.append((mark, i, i))
    return runs


def _where(axis: str, values: Sequence[float], first: int, last: int) -> str:
    """Where a run of points lies along an axis: ``at 5 ms`` (one point), ``up to 1.5 ms``
    (from the axis's start), ``from 1.5 ms`` (to its end), ``from 0.5 ms to 1.5 ms``."""
    if first == last:
        return f"at {axis_label(axis, values[first])}"
    if first == 0:
        return f"up to {axis_label(axis, values[last])}"
    if last == len(values) - 1:
        return f"from {axis_label(axis, values[first])}"
    return f"from {axis_label(axis, values[first])} to {axis_label(axis, values[last])}"


def verdict_sentences(data: SuiteData, judged: Sequence[Verdict]) -> dict[str, list[str]]:
    """Per axis: where each backend's verdict changes along it, in sentences."""
    by = {(v.point, v.backend): v for v in judged}
    sentences: dict[str, list[str]] = {}
    for axis in data.axes:
        points = axis_points(data, axis)
        if len(points) < 2:
            continue
        always: list[str] = []
        never: list[str] = []
        lines: list[str] = []
        span = f"{axis_label(axis.name, points[0].values[axis.name])} to " \
               f"{axis_label(axis.name, points[-1].values[axis.name])}"
        for backend in data.backends:
            row = [(p, v) for p in points if (v := by.get((p.point, backend))) is not None]
            if len(row) < 2:
                continue
            runs = _segments([v.meets for _, v in row])
            if len(runs) == 1:
                (always if runs[0][0] else never).append(backend)
                continue
            parts = []
            values = [p.values[axis.name] for p, _ in row]
            for k, (meets, first, last) in enumerate(runs):
                where = _where(axis.name, values, first, last)
                # The point nearest the change: the last of the first run, the first of others.
                shown = row[last][1] if k == 0 else row[first][1]
                what = "meets the target" if meets else "misses it"
                if k == 0 and not meets:
                    what = "misses the target"
                elif k > 0 and meets:
                    what = "meets it"
                parts.append(f"{what} {where} ({shown.evidence()})")
            lines.append(f"{backend} " + ", then ".join(parts) + ".")
        others = context(data, axis)
        head = f"Along {axis_title(axis.name)} ({span}{'; ' + others if others else ''}):"
        summary = []
        if always:
            summary.append(f"{_join(always)} meet{'s' if len(always) == 1 else ''} the "
                           "target at every point")
        if never:
            summary.append(f"{_join(never)} miss{'es' if len(never) == 1 else ''} it at "
                           "every point")
        text = [head] + (["; ".join(summary) + "."] if summary else [])
        sentences[axis.name] = [" ".join(text + lines)]
    return sentences


# -- crossovers ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Comparison:
    """Two backends' values of one metric at one point: pooled, and per pass."""

    point: PointRecord
    first: float
    second: float
    first_passes: tuple[float, ...]
    second_passes: tuple[float, ...]

    @property
    def mark(self) -> str:
        """``match``, ``lower`` or ``higher``: the first against the second."""
        lo1, hi1 = min(self.first_passes), max(self.first_passes)
        lo2, hi2 = min(self.second_passes), max(self.second_passes)
        if lo1 <= hi2 and lo2 <= hi1:
            return "match"
        if abs(self.first - self.second) <= MATCH_TOLERANCE * max(abs(self.first),
                                                                  abs(self.second)):
            return "match"
        return "lower" if self.first < self.second else "higher"

    def evidence(self, column: str) -> str:
        """``1.61 vs 1.58 ms; passes 1.52-1.70 vs 1.50-1.66, 3 and 3``."""
        unit = _unit(column)

        def span(values: tuple[float, ...]) -> str:
            return f"{_bare(min(values), column)}-{_bare(max(values), column)}"

        return (f"{_bare(self.first, column)} vs {_bare(self.second, column)}{unit}; passes "
                f"{span(self.first_passes)} vs {span(self.second_passes)}, "
                f"{len(self.first_passes)} and {len(self.second_passes)}")


def _phrase(mark: str, column: str, other: str | None = None) -> str:
    """``matches other`` / ``is faster than other``; without ``other``: ``matches it`` /
    ``is faster``."""
    if mark == "match":
        return f"matches {other or 'it'}"
    if column.endswith("_ms"):
        word = "faster" if mark == "lower" else "slower"
    else:
        word = "lower" if mark == "lower" else "higher"
    return f"is {word} than {other}" if other else f"is {word}"


@dataclass(frozen=True, slots=True)
class Crossover:
    """Where (if anywhere) the comparison of two backends on a metric changes along an axis."""

    axis: str
    metric: str  # the threshold's metric, e.g. get.p99_ms
    first: str
    second: str
    changes: int  # how often the comparison changes along the axis (0: the same throughout)
    sentence: str


def crossovers(measures: Measures, data: SuiteData, target: Sequence[Threshold]) -> \
        list[Crossover]:
    """For each axis, compared pair and metric of the target: a sentence from the data."""
    reps: dict[tuple[str, str], list[int]] = {}
    for row in data.pass_metrics:
        reps.setdefault((row["point"], row["backend"]), []).append(int(row["repetition"]))
    found = []
    metrics = list({(t.source, t.op_filter, t.column): t for t in target}.values())
    for axis in data.axes:
        points = axis_points(data, axis)
        if len(points) < 2:
            continue
        for first, second in data.compare:
            for t in metrics:
                compared = [c for p in points
                            if (c := _compare(measures, t, p, first, second, reps))
                            is not None]
                if len(compared) >= 2:
                    found.append(_crossover(data, axis, t, first, second, compared))
    # Where the answer changes first; then what holds along a whole axis.
    return sorted(found, key=lambda c: c.changes == 0)


def _compare(measures: Measures, t: Threshold, point: PointRecord, first: str, second: str,
             reps: Mapping[tuple[str, str], list[int]]) -> Comparison | None:
    a = measures.value(t, point.run_id, first)
    b = measures.value(t, point.run_id, second)
    if a is None or b is None:
        return None
    pa = [measures.value(t, point.run_id, first, r) for r in reps.get((point.point, first), [])]
    pb = [measures.value(t, point.run_id, second, r)
          for r in reps.get((point.point, second), [])]
    va = tuple(v for v in pa if v is not None)
    vb = tuple(v for v in pb if v is not None)
    if not va or not vb:
        return None
    return Comparison(point, a, b, va, vb)


def _crossover(data: SuiteData, axis: AxisRecord, t: Threshold, first: str, second: str,
               row: Sequence[Comparison]) -> Crossover:
    column = t.column
    label = metric_label(t)
    runs = _segments([c.mark for c in row])
    where = context(data, axis)
    if len(runs) == 1:
        mark = runs[0][0]
        # The point where the result is closest to changing: the largest gap for a match,
        # the smallest for a difference.
        gaps = [abs(c.first - c.second) / max(abs(c.first), abs(c.second), 1e-12)
                for c in row]
        span = (f"{axis_label(axis.name, row[0].point.values[axis.name])} to "
                f"{axis_label(axis.name, row[-1].point.values[axis.name])}"
                + (f"; {where}" if where else ""))
        if all(c.first == c.second and set(c.first_passes) == set(c.second_passes)
               == {c.first} for c in row):
            same = sorted({number(c.first, column) for c in row})
            return Crossover(axis.name, _metric(t), first, second, 0, (
                f"{first} and {second} measured the same {label} at every "
                f"{axis_noun(axis.name)} ({span}): {', '.join(same)} in every pass "
                f"({len(row[0].first_passes)} and {len(row[0].second_passes)} passes a "
                f"point)."))
        closest = row[max(range(len(row)), key=gaps.__getitem__) if mark == "match"
                      else min(range(len(row)), key=gaps.__getitem__)]
        value = closest.point.values[axis.name]
        sentence = (f"{first} {_phrase(mark, column, second)} on {label} at every "
                    f"{axis_noun(axis.name)} measured ({span}); "
                    f"{'widest' if mark == 'match' else 'closest'} at "
                    f"{axis_label(axis.name, value)}: {closest.evidence(column)}.")
        return Crossover(axis.name, _metric(t), first, second, 0, sentence)
    parts = []
    values = [c.point.values[axis.name] for c in row]
    for k, (mark, i, j) in enumerate(runs):
        shown = row[j] if k == 0 else row[i]
        if k == 0:
            parts.append(f"{first} {_phrase(mark, column, second)} on {label} "
                         f"{_where(axis.name, values, i, j)}"
                         f"{', with ' + where if where else ''} "
                         f"({shown.evidence(column)})")
        else:
            parts.append(f"{_where(axis.name, values, i, j)} it {_phrase(mark, column)} "
                         f"({shown.evidence(column)})")
    return Crossover(axis.name, _metric(t), first, second, len(runs) - 1,
                     "; ".join(parts) + ".")


def _metric(t: Threshold) -> str:
    return t.column if t.op_filter is None else f"{t.op_filter}.{t.column}"


# -- extrapolation to many instances ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Fit:
    """A least-squares line y = intercept + slope x over every measured pass."""

    backend: str
    metric: str  # suite_pass_metrics column: lag_p99_ms or server_cpu_us_per_write
    observations: tuple[tuple[float, float], ...]  # (instances, value), one per pass
    slope: float
    intercept: float
    slope_se: float | None  # None with fewer than 3 observations
    r2: float | None
    at: float
    predicted: float
    predicted_se: float | None  # of the line's value at ``at`` (its mean, not one pass)

    @property
    def measured_range(self) -> tuple[float, float]:
        xs = [x for x, _ in self.observations]
        return min(xs), max(xs)

    @property
    def trend(self) -> bool:
        """Whether the slope stands out of its error (more than twice its standard error
        from zero); without an error (two passes), it is taken as it is."""
        return self.slope_se is None or abs(self.slope) > 2 * self.slope_se

    def sentence(self, server: str) -> str:
        what = ("invalidation lag p99" if self.metric == "lag_p99_ms"
                else f"{server} CPU per write")
        unit = "ms" if self.metric == "lag_p99_ms" else "us"
        lo, hi = self.measured_range
        se = "" if self.slope_se is None else f" +/- {_sig(self.slope_se)}"
        pse = "" if self.predicted_se is None else f" +/- {_sig(self.predicted_se)}"
        r2 = "" if self.r2 is None else f", R^2 {self.r2:.2f}"
        line = (f"a least-squares line over {len(self.observations)} passes at "
                f"{value_text(lo)} to {value_text(hi)} instances{r2}")
        if self.trend:
            change = (f"{'grows' if self.slope >= 0 else 'falls'} by "
                      f"{_sig(abs(self.slope))}{se} {unit} per instance ({line})")
        else:
            change = (f"shows no trend beyond the passes' spread: {_sig(self.slope)}{se} "
                      f"{unit} per instance, within twice its standard error of zero ({line})")
        if self.predicted < 0:
            return (f"{self.backend}: {what} {change}; the line falls below zero before "
                    f"{value_text(self.at)} instances, so it says nothing about them.")
        return (f"{self.backend}: {what} {change}; extrapolated on paper to "
                f"{value_text(self.at)} instances: {_sig(self.predicted)}{pse} {unit} (the "
                f"line's standard error there; far beyond the measured range, so a line's "
                f"guess, not a measurement).")


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float | None,
                                                                  float | None]:
    """Least squares: (slope, intercept, slope standard error, R^2); the error and R^2 are
    None when they cannot be estimated (fewer than 3 points, or no spread in y)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a line needs at least two different x values")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ssr = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    syy = sum((y - my) ** 2 for y in ys)
    se = math.sqrt(ssr / (n - 2) / sxx) if n > 2 else None
    r2 = 1 - ssr / syy if syy > 0 and n > 2 else None
    return slope, intercept, se, r2


def instance_fits(data: SuiteData, at: float = EXTRAPOLATE_TO) -> list[Fit]:
    """Lag p99 and server CPU per write against instances, per backend that has them."""
    axis = next((a for a in data.axes if a.name == INSTANCES), None)
    if axis is None:
        return []
    keys = {p.point: p.values[INSTANCES] for p in axis_points(data, axis)}
    fits = []
    for metric in ("lag_p99_ms", "server_cpu_us_per_write"):
        for backend in data.backends:
            obs = tuple((keys[r["point"]], float(r[metric])) for r in data.pass_metrics
                        if r["backend"] == backend and r["point"] in keys
                        and r[metric] is not None)
            if len(obs) < 2 or len({x for x, _ in obs}) < 2:
                continue
            xs, ys = [x for x, _ in obs], [y for _, y in obs]
            slope, intercept, se, r2 = fit_line(xs, ys)
            n, mx = len(xs), sum(xs) / len(xs)
            sxx = sum((x - mx) ** 2 for x in xs)
            predicted_se = None
            if se is not None:
                s = se * math.sqrt(sxx)  # the residuals' standard deviation
                predicted_se = s * math.sqrt(1 / n + (at - mx) ** 2 / sxx)
            fits.append(Fit(backend, metric, obs, slope, intercept, se, r2, at,
                            intercept + slope * at, predicted_se))
    return fits


# -- everything -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Answer:
    """A suite's answer: verdicts, the sentences where they and the comparisons change, and
    the extrapolation to many instances."""

    target: str
    verdicts: tuple[Verdict, ...]
    verdict_sentences: Mapping[str, list[str]]
    crossovers: tuple[Crossover, ...]
    fits: tuple[Fit, ...]


def answer(conn: Any, data: SuiteData, target: Sequence[Threshold], target_text: str) -> \
        Answer:
    """The answer of a suite's measured points to ``target``."""
    measures = Measures(conn, (p.run_id for p in data.points))
    judged = verdicts(measures, data, target)
    return Answer(target_text, tuple(judged), verdict_sentences(data, judged),
                  tuple(crossovers(measures, data, target)), tuple(instance_fits(data)))
