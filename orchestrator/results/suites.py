"""A suite's records in the results database: the suite, its points' runs, their metrics.

``python -m orchestrator suite`` records the suite (:func:`record_suite`) and, after each
point's run, tags the run with the point (:func:`record_point`). A point whose latest run
with the same workload completed is measured already (:func:`measured_points`): running the
suite again skips it, so a suite can be resumed and extended. :func:`read_suite` reads a
suite back for its report: its axes and target, the run standing for each point (view
``suite_points``), and the metrics of every point and backend, pooled over the passes
(``suite_metrics``) and per pass (``suite_pass_metrics``). The tables and views are defined
in :mod:`orchestrator.results.schema`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import UsageError
from orchestrator.redaction import redact
from orchestrator.results import schema
from orchestrator.results.store import RunStatus

# A point is measured when its run ended in one of these.
MEASURED = (RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS)


@dataclass(frozen=True, slots=True)
class AxisRecord:
    """One axis of a recorded suite."""

    name: str
    values: tuple[float, ...]
    base: float


@dataclass(frozen=True, slots=True)
class PointRecord:
    """One point of a suite, with the run that stands for it."""

    point: str
    run_id: str
    status: str | None
    values: Mapping[str, float]
    on_axes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SuiteData:
    """Everything a suite's report is made of, as recorded."""

    suite_id: str
    name: str
    text: str
    target: str
    axes: tuple[AxisRecord, ...]
    sweep: str
    compare: tuple[tuple[str, str], ...]
    points: tuple[PointRecord, ...]
    metrics: tuple[Mapping[str, Any], ...]  # suite_metrics rows
    pass_metrics: tuple[Mapping[str, Any], ...]  # suite_pass_metrics rows

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends measured, in the order the suite's points first ran them."""
        seen: dict[str, None] = {}
        for row in self.metrics:
            seen.setdefault(str(row["backend"]), None)
        return tuple(seen)

    def point(self, key: str) -> PointRecord:
        return next(p for p in self.points if p.point == key)


def record_suite(conn: Any, suite_id: str, *, name: str, text: str, target: str,
                 axes: Sequence[Mapping[str, Any]], sweep: str,
                 compare: Sequence[tuple[str, str]]) -> None:
    """The suite's row (replaced: the latest file's axes and target are the suite's)."""
    conn.execute("DELETE FROM suites WHERE suite_id = ?", [suite_id])
    conn.execute("INSERT INTO suites VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 [suite_id, name, redact(text), target, json.dumps(list(axes)), sweep,
                  json.dumps([list(pair) for pair in compare]),
                  dt.datetime.now(dt.UTC).replace(tzinfo=None)])


def record_point(conn: Any, suite_id: str, run_id: str, *, point: str, fingerprint: str,
                 values: Mapping[str, float], on_axes: Sequence[str]) -> None:
    """Tag a run with the suite point it measured."""
    conn.execute("INSERT INTO suite_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 [suite_id, run_id, point, fingerprint, json.dumps(dict(values)),
                  json.dumps(list(on_axes)), dt.datetime.now(dt.UTC).replace(tzinfo=None),
                  os.getloadavg()[0] if hasattr(os, "getloadavg") else None])


def measured_points(conn: Any, suite_id: str) -> dict[str, set[str]]:
    """Point -> the fingerprints of its workloads that some completed run measured."""
    rows = conn.execute(
        "SELECT t.point, t.fingerprint FROM suite_runs AS t JOIN runs AS r USING (run_id) "
        f"WHERE t.suite_id = ? AND r.status IN ({', '.join('?' * len(MEASURED))})",
        [suite_id, *MEASURED]).fetchall()
    found: dict[str, set[str]] = {}
    for point, fingerprint in rows:
        found.setdefault(str(point), set()).add(str(fingerprint))
    return found


def suite_ids(conn: Any) -> list[str]:
    """The suites of the database, the most recently recorded first."""
    return [str(r[0]) for r in conn.execute(
        "SELECT suite_id FROM suites ORDER BY updated_at DESC, suite_id").fetchall()]


def resolve_suite_id(conn: Any, suite_id: str | None) -> str:
    """``latest`` (or None) -> the most recently recorded suite; check a given id."""
    ids = suite_ids(conn) if _has_suites(conn) else []
    if suite_id in (None, "latest"):
        if not ids:
            raise UsageError("the results database holds no suite yet; run one: "
                             "python -m orchestrator suite workloads/suite.yaml")
        return ids[0]
    if suite_id not in ids:
        known = ", ".join(ids) or "none"
        raise UsageError(f"no suite {suite_id!r} in the results database (suites: {known})")
    return str(suite_id)


def _has_suites(conn: Any) -> bool:
    return bool(conn.execute("SELECT count(*) FROM duckdb_tables() "
                             "WHERE table_name = 'suites'").fetchone()[0])


def _dicts(cursor: Any) -> tuple[dict[str, Any], ...]:
    names = [d[0] for d in cursor.description]
    return tuple(dict(zip(names, row, strict=True)) for row in cursor.fetchall())


def _on_axes(values: Mapping[str, float], axes: Sequence[AxisRecord],
             sweep: str) -> tuple[str, ...] | None:
    """The axes whose sweep a point lies on (every other axis at its base), or None when
    the suite's axes no longer have the point."""
    if set(values) != {a.name for a in axes}:
        return None
    if any(values[a.name] not in a.values for a in axes):
        return None
    off_base = [a.name for a in axes if values[a.name] != a.base]
    if sweep != "grid" and len(off_base) > 1:
        return None
    return tuple(a.name for a in axes if all(b.name == a.name or values[b.name] == b.base
                                              for b in axes))


def read_suite(conn: Any, suite_id: str) -> SuiteData:
    """A suite as recorded, with the metrics of the run standing for each point."""
    schema.ensure_views(conn)
    row = conn.execute("SELECT name, suite_yaml, target, axes, sweep, compare FROM suites "
                       "WHERE suite_id = ?", [suite_id]).fetchone()
    if row is None:
        raise UsageError(f"no suite {suite_id!r} in the results database")
    name, text, target, axes_json, sweep, compare_json = row
    axes = tuple(AxisRecord(str(a["name"]), tuple(float(v) for v in a["values"]),
                            float(a["base"])) for a in json.loads(axes_json))
    # The report shows the suite as its file now is: a point measured for an earlier version
    # of it (an axis or a value since removed, a point off a base since moved) is left out,
    # and the axes a point lies on are those of the current base.
    current = []
    for point, run_id, status, values_json in conn.execute(
            "SELECT point, run_id, status, axes FROM suite_points WHERE suite_id = ?",
            [suite_id]).fetchall():
        values = {k: float(v) for k, v in json.loads(values_json).items()}
        on_axes = _on_axes(values, axes, str(sweep))
        if on_axes is not None:
            current.append(PointRecord(str(point), str(run_id),
                                       None if status is None else str(status), values,
                                       on_axes))
    points = tuple(sorted(current, key=lambda p: tuple(p.values[a.name] for a in axes)))
    keys = {p.point for p in points}
    order_sql = ("ORDER BY point, (SELECT min(ts_ns) FROM events e WHERE e.run_id = m.run_id "
                 "AND e.backend = m.backend), backend")
    metrics = tuple(r for r in _dicts(conn.execute(
        f"SELECT * FROM suite_metrics AS m WHERE suite_id = ? {order_sql}", [suite_id]))
        if r["point"] in keys)
    passes = tuple(r for r in _dicts(conn.execute(
        "SELECT * FROM suite_pass_metrics WHERE suite_id = ? "
        "ORDER BY point, backend, repetition", [suite_id])) if r["point"] in keys)
    return SuiteData(suite_id=suite_id, name=str(name), text=str(text or ""),
                     target=str(target or ""), axes=axes, sweep=str(sweep),
                     compare=tuple((str(a), str(b)) for a, b in json.loads(compare_json)),
                     points=points, metrics=metrics, pass_metrics=passes)
