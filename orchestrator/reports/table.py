"""Presenting results: the summary table (text, Markdown, JSON) of a run.

The printed table has the seed harness's columns — write mean/p95/ops/s, read mean/p95/ops/s,
hit rate — plus p99 and errors; "write" is ``set``, "read" is ``get`` (or ``get_or_set``);
deletes and loader executions (``load``), when the workload has them, get their own columns.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

FORMATS = ("table", "markdown", "json")
QUERY_FORMATS = ("table", "markdown", "csv", "json")


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


_PREFIXES = {"set": "write", "get": "read", "get_or_set": "read", "delete": "delete",
             "load": "load"}


def per_backend(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per backend, in order, with ``write_*``/``read_*``/``delete_*`` columns."""
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = table.setdefault(row["backend"], {"backend": row["backend"], "errors": 0})
        prefix = _PREFIXES.get(row["op"], row["op"])
        for column in ("ops", "ops_per_s", "mean_ms", "p50_ms", "p95_ms", "p99_ms",
                       "p999_ms"):
            entry[f"{prefix}_{column}"] = row[column]
        entry["errors"] += row["errors"] or 0
        if prefix == "read":
            entry["hit_rate"] = row["hit_rate"]
            entry["local_rate"] = row.get("local_rate")
    return list(table.values())


_COLUMNS = (
    ("backend", "backend", None),
    ("write mean ms", "write_mean_ms", 3), ("write p95 ms", "write_p95_ms", 3),
    ("write p99 ms", "write_p99_ms", 3), ("write ops/s", "write_ops_per_s", 0),
    ("read mean ms", "read_mean_ms", 3), ("read p95 ms", "read_p95_ms", 3),
    ("read p99 ms", "read_p99_ms", 3), ("read ops/s", "read_ops_per_s", 0),
    ("hit rate", "hit_rate", 3), ("errors", "errors", None),
)
_DELETE_COLUMNS = (("delete mean ms", "delete_mean_ms", 3), ("delete p99 ms", "delete_p99_ms", 3),
                   ("delete ops/s", "delete_ops_per_s", 0))
_LOAD_COLUMNS = (("loads", "load_ops", None), ("load mean ms", "load_mean_ms", 3))


def format_summary(rows: Sequence[dict[str, Any]], fmt: str = "table", *,
                   title: str = "") -> str:
    """The summary of one run in ``fmt`` (table, markdown or json)."""
    if fmt == "json":
        return json.dumps({"title": title, "backends": per_backend(rows), "ops": list(rows)},
                          indent=2, default=str)
    backends = per_backend(rows)
    columns = list(_COLUMNS)
    if any("delete_ops" in b for b in backends):
        columns[-1:-1] = _DELETE_COLUMNS
    if any("load_ops" in b for b in backends):
        columns[-1:-1] = _LOAD_COLUMNS
    cells = [[h for h, _, _ in columns]]
    for entry in backends:
        cells.append([str(entry.get(key, "-")) if digits is None else
                      _num(entry.get(key), digits) for _, key, digits in columns])
    if not backends:
        return (title + "\n" if title else "") + "(no operations recorded)"
    if fmt == "markdown":
        lines = ["| " + " | ".join(cells[0]) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
        return (f"**{title}**\n\n" if title else "") + "\n".join(lines)
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                       for i, cell in enumerate(row)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return (title + "\n" if title else "") + "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return _num(value, 0 if value.is_integer() and abs(value) >= 1000 else 3)
    return str(value)


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table") -> str:
    """Any query result as an aligned table, Markdown, CSV (RFC 4180, NULL as an empty
    field) or JSON."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        return buffer.getvalue().rstrip("\n")
    if fmt == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2,
                          default=str)
    text = [[str(c) for c in columns]] + [[_cell(v) for v in row] for row in rows]
    if fmt == "markdown":
        out = ["| " + " | ".join(text[0]) + " |", "|" + "---|" * len(columns)]
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in text[1:]])
    widths = [max(len(r[i]) for r in text) for i in range(len(columns))] if columns else []
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)) for r in text]
    if lines:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
