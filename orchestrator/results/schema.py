"""Every table and view of the results database (DuckDB), and the schema's version.

The schema is a public interface, documented in ``results/README.md``. Its statements are
``.sql`` files under ``sql/`` (package data, read with :mod:`importlib.resources`): one table
per file in ``sql/tables/``, one view per file in ``sql/views/``; this module keeps the
version, the order they are installed in and the installing. :func:`install` creates the
tables and views of a results database (idempotent); :func:`ensure_views` gives a reader the
views an older database lacks (TEMP views when it cannot write).

Templating, one mechanism: a ``{{name}}`` marker in a file is replaced by the value ``name``
has for the view being rendered (given in :data:`_VIEWS` below: the key columns of a
summary, the sides of the stale judgement; ``view`` is always the view's own name), else by
the text of the shared fragment ``sql/fragments/name.sql`` (its last newline dropped). The
replacement is rendered in turn, so a value or a fragment may hold markers of its own; a
marker naming neither is an error. Nothing else in the files is interpreted.

Schema history (``schema_info.version``):
  1 -- runs, ops, events tables; summary view; consistency, invalidation-lag and server-cost
       views; server_cost table; threshold_results table (created when thresholds are
       evaluated). Views added since (created by install() and ensure_views() alike):
       repeat_summary, fault_impact, stampede_events, stampede.
  2 -- clock_offsets table (workers on clocks of their own: timestamps mapped onto the
       parent's at ingest); clock_summary and clock_unjudged_reads views; judgements within
       the clocks' uncertainty are unjudged (consistency.clock_unjudged_reads, counted in
       unjudged_reads too; invalidation_lag[_summary].clock_uncertainty_ms).
       Added since (additions only: a database of an earlier version 2 reads as before, and
       gets them when opened for writing): views summary_by_pass and
       invalidation_lag_summary_by_pass; for suites, tables suites and suite_runs with views
       suite_points, suite_pass_metrics and suite_metrics.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

SCHEMA_VERSION = 2

SUMMARY_COLUMNS = ("run_id", "backend", "op", "ops", "errors", "ops_per_s", "mean_ms",
                   "p50_ms", "p95_ms", "p99_ms", "p999_ms", "hit_rate", "local_rate")

# -- server cost -----------------------------------------------------------------------------
# How server_cost_summary reads each metric: a counter's increase over the pass, a gauge's
# maximum. (orchestrator.results.servercost samples them.)
COUNTER = "counter"
GAUGE = "gauge"

METRIC_KINDS: dict[str, str] = {
    # postgres
    "xact_commit": COUNTER,
    "xact_rollback": COUNTER,
    "tup_inserted": COUNTER,
    "tup_updated": COUNTER,
    "tup_deleted": COUNTER,
    "wal_bytes": COUNTER,
    "notification_queue_usage": GAUGE,
    "lock_waiting_backends": GAUGE,
    "locks_not_granted": GAUGE,
    "connections": GAUGE,
    "table_bytes": GAUGE,
    "dead_tuples": GAUGE,
    "live_tuples": GAUGE,
    # valkey
    "total_commands_processed": COUNTER,
    "instantaneous_ops_per_sec": GAUGE,
    "used_memory": GAUGE,
    "tracking_total_keys": GAUGE,
    "tracking_clients": GAUGE,
    "connected_clients": GAUGE,
    "total_net_input_bytes": COUNTER,
    "total_net_output_bytes": COUNTER,
    "keyspace_hits": COUNTER,
    "keyspace_misses": COUNTER,
    "expired_keys": COUNTER,
    "evicted_keys": COUNTER,
    # both
    "cpu_seconds": COUNTER,
}

# The metrics of suite_pass_metrics and suite_metrics, in their column order after the keys:
# what a suite's report plots and tabulates.
SUITE_METRIC_COLUMNS = (
    "ops_per_s", "get_ops_per_s", "get_p50_ms", "get_p99_ms", "local_rate", "set_ops_per_s",
    "set_p50_ms", "set_p99_ms", "stale_rate", "stale_beyond_invalidation", "lag_p99_ms",
    "server", "server_cpu_s", "server_cpu_us_per_op", "server_cpu_us_per_write")

# -- rendering the files ---------------------------------------------------------------------
_SQL = resources.files(__package__) / "sql"
_MARKER = re.compile(r"\{\{(\w+)\}\}")


def _file(folder: str, name: str) -> str:
    return (_SQL / folder / f"{name}.sql").read_text(encoding="utf-8")


def render(folder: str, name: str, values: Mapping[str, str] | None = None) -> str:
    """The statement in ``sql/folder/name.sql`` with its markers replaced (see above)."""
    values = {"view": name, **(values or {})}

    def expand(text: str, within: tuple[str, ...]) -> str:
        def one(marker: re.Match[str]) -> str:
            key = marker.group(1)
            if key in within:
                raise ValueError(f"sql/{folder}/{name}.sql: {{{{{key}}}}} includes itself "
                                 f"({' -> '.join((*within, key))})")
            if key in values:
                return expand(values[key], (*within, key))
            if not (_SQL / "fragments" / f"{key}.sql").is_file():
                raise ValueError(f"sql/{folder}/{name}.sql: {{{{{key}}}}} is neither a value "
                                 f"of this view nor a file in sql/fragments/")
            return expand(_file("fragments", key).removesuffix("\n"), (*within, key))
        return _MARKER.sub(one, text)

    return expand(_file(folder, name), ())


def _grouped(*keys: str, aliases: str) -> dict[str, str]:
    """A grouping's values: ``keys``, and ``X_keys`` (each key qualified by alias X)."""
    out = {"keys": ", ".join(keys)}
    for alias in aliases:
        out[f"{alias}_keys"] = ", ".join(f"{alias}.{k}" for k in keys)
    return out


# -- installing ------------------------------------------------------------------------------
# Tables in the order they are created; ``threshold_results`` apart (created once thresholds
# were judged).
_TABLES = ("schema_info", "runs", "ops", "clock_offsets", "events", "server_cost", "suites",
           "suite_runs")

_CONSISTENCY_TABLES = frozenset({"ops", "events", "clock_offsets"})
_SUITE_READS = frozenset({"suite_runs", "runs", "ops", "events", "server_cost", "clock_offsets"})


@dataclass(frozen=True, slots=True)
class View:
    """A view: its file ``sql/views/<name>.sql``, the tables it reads, its markers' values."""

    name: str
    reads: frozenset[str]
    values: Mapping[str, str] = field(default_factory=dict)


# Every view, in dependency order.
_VIEWS: tuple[View, ...] = (
    View("summary", frozenset({"ops"}), _grouped("run_id", "backend", "op", aliases="o")),
    View("summary_by_pass", frozenset({"ops"}),
         _grouped("run_id", "backend", "op", "repetition", aliases="o")),
    View("repeat_summary", frozenset({"ops"})),
    # the stale judgement's side: -1 judges what is *certain*, +1 what is *possible*
    View("stale_reads", _CONSISTENCY_TABLES, {"lo": "-1", "scope": "true"}),
    View("clock_unjudged_reads", _CONSISTENCY_TABLES, {"lo": "1", "scope": "{{uncertain_pass}}"}),
    View("consistency_by_pass", _CONSISTENCY_TABLES,
         _grouped("run_id", "backend", "repetition", aliases="rg")),
    View("consistency", _CONSISTENCY_TABLES, _grouped("run_id", "backend", aliases="rg")),
    View("invalidation_lag", _CONSISTENCY_TABLES),
    View("invalidation_lag_summary", _CONSISTENCY_TABLES,
         _grouped("run_id", "backend", aliases="se")),
    View("invalidation_lag_summary_by_pass", _CONSISTENCY_TABLES,
         _grouped("run_id", "backend", "repetition", aliases="se")),
    View("clock_summary", frozenset({"clock_offsets"})),
    View("fault_impact", frozenset({"ops", "events"})),
    View("stampede_events", frozenset({"ops"})),
    View("stampede", frozenset({"ops"})),
    View("server_cost_summary", frozenset({"server_cost"}),
         {"metric_kinds": ", ".join(f"('{m}', '{k}')" for m, k in METRIC_KINDS.items())}),
    View("suite_points", frozenset({"suite_runs", "runs"})),
    View("suite_pass_metrics", _SUITE_READS),
    View("suite_metrics", _SUITE_READS),
)
VIEW_NAMES: tuple[str, ...] = tuple(v.name for v in _VIEWS)


@functools.cache
def view_sql(name: str) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement of view ``name``."""
    view = next(v for v in _VIEWS if v.name == name)
    return render("views", name, view.values)


def table_sql(name: str) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of table ``name``."""
    return render("tables", name)


def install(conn: Any) -> None:
    """Create the tables (if missing) and the views of a results database; record the version."""
    for table in _TABLES:
        conn.execute(table_sql(table))
    install_views(conn)
    if conn.execute("SELECT count(*) FROM schema_info").fetchone()[0] == 0:
        conn.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION])
    else:  # an older database, now with this version's tables and views
        conn.execute("UPDATE schema_info SET version = ? WHERE version < ?",
                     [SCHEMA_VERSION, SCHEMA_VERSION])


def install_views(conn: Any, names: tuple[str, ...] = VIEW_NAMES, *,
                  temporary: bool = False) -> None:
    """Create or replace the views called ``names`` (TEMP views: for this connection only)."""
    for view in _VIEWS:
        if view.name in names:
            sql = view_sql(view.name)
            if temporary:
                sql = sql.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW", 1)
            conn.execute(sql)


def ensure_views(conn: Any) -> None:
    """Create the views a database lacks, where it has their tables; TEMP ones when it is
    read-only (a database written by an older version, opened by a reader)."""
    views = {row[0] for row in conn.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    tables = {row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "ops" in tables and "clock_offsets" not in tables and read_only(conn):
        # A database from before clock offsets: its workers all shared the parent's clock.
        conn.execute(table_sql("clock_offsets").replace(
            "CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE", 1))
        tables.add("clock_offsets")
    missing = tuple(v.name for v in _VIEWS if v.name not in views and v.reads <= tables)
    if missing:
        install_views(conn, missing, temporary=read_only(conn))


def read_only(conn: Any) -> bool:
    """Whether ``conn``'s database is attached read-only."""
    row = conn.execute("SELECT readonly FROM duckdb_databases() "
                       "WHERE database_name = current_database()").fetchone()
    return bool(row and row[0])


def install_threshold_results(conn: Any) -> None:
    """Create table ``threshold_results`` (if missing): it exists once thresholds were judged."""
    conn.execute(table_sql("threshold_results"))
