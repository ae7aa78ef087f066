"""Every table and view of the results database (DuckDB), and the schema's version.

The schema is a public interface, documented in ``results/README.md``; every statement that
creates part of it is in this module. :func:`install` creates the tables and views of a
results database (idempotent); :func:`ensure_views` gives a reader the views an older database
lacks (TEMP views when it cannot write).

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

from typing import Any

SCHEMA_VERSION = 2

_CLOCK_OFFSETS_COLUMNS = """(
    run_id VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    repetition INTEGER NOT NULL,
    process INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    worker_ns BIGINT,
    offset_ns BIGINT NOT NULL,
    uncertainty_ns BIGINT NOT NULL,
    round_trip_ns BIGINT,
    round_trips INTEGER,
    node VARCHAR,
    host VARCHAR
)"""

_TABLES = """
CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    workload VARCHAR,
    workload_yaml VARCHAR,
    seed BIGINT,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR,
    host VARCHAR,
    versions JSON,
    git_commit VARCHAR,
    network JSON,
    thresholds_passed BOOLEAN
);
CREATE TABLE IF NOT EXISTS ops (
    run_id VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    repetition INTEGER NOT NULL,
    process INTEGER NOT NULL,
    task INTEGER NOT NULL,
    op VARCHAR NOT NULL,
    key VARCHAR,
    start_ns BIGINT NOT NULL,
    latency_ns BIGINT NOT NULL,
    hit BOOLEAN,
    local BOOLEAN,
    version VARCHAR,
    server_version BIGINT,
    error VARCHAR
);
CREATE TABLE IF NOT EXISTS clock_offsets {_CLOCK_OFFSETS_COLUMNS};
CREATE TABLE IF NOT EXISTS events (
    run_id VARCHAR NOT NULL,
    backend VARCHAR,
    repetition INTEGER,
    process INTEGER NOT NULL,
    ts TIMESTAMP,
    ts_ns BIGINT,
    level VARCHAR,
    event VARCHAR,
    data JSON
);
""".replace("{_CLOCK_OFFSETS_COLUMNS}", _CLOCK_OFFSETS_COLUMNS)

# Latency statistics cover successful operations; ``ops`` and ``errors`` count all of them.
# ops_per_s divides by the summed measured span of each repetition (first start to last end
# of that op), so idle time between repetitions is not counted. ``summary`` pools every pass
# of a run; ``summary_by_pass`` is the same per pass (repetition).
def _summary_sql(view: str, *, by_pass: bool) -> str:
    keys = "run_id, backend, op" + (", repetition" if by_pass else "")
    return f"""
CREATE OR REPLACE VIEW {view} AS
WITH spans AS (
    SELECT run_id, backend, op, repetition,
           max(start_ns + latency_ns) - min(start_ns) AS span_ns
    FROM ops GROUP BY run_id, backend, op, repetition
), total_spans AS (
    SELECT {keys}, sum(span_ns) AS span_ns
    FROM spans GROUP BY {keys}
)
SELECT o.run_id, o.backend, o.op,{" o.repetition," if by_pass else ""}
       count(*) AS ops,
       count(o.error) AS errors,
       count(*) * 1e9 / nullif(any_value(s.span_ns), 0) AS ops_per_s,
       avg(o.latency_ns) FILTER (WHERE o.error IS NULL) / 1e6 AS mean_ms,
       quantile_cont(o.latency_ns, 0.5) FILTER (WHERE o.error IS NULL) / 1e6 AS p50_ms,
       quantile_cont(o.latency_ns, 0.95) FILTER (WHERE o.error IS NULL) / 1e6 AS p95_ms,
       quantile_cont(o.latency_ns, 0.99) FILTER (WHERE o.error IS NULL) / 1e6 AS p99_ms,
       quantile_cont(o.latency_ns, 0.999) FILTER (WHERE o.error IS NULL) / 1e6 AS p999_ms,
       avg(CASE WHEN o.hit THEN 1.0 ELSE 0.0 END)
           FILTER (WHERE o.op = 'get' AND o.error IS NULL) AS hit_rate,
       avg(CASE WHEN o.local THEN 1.0 ELSE 0.0 END)
           FILTER (WHERE o.op = 'get' AND o.error IS NULL) AS local_rate
FROM ops o JOIN total_spans s USING ({keys})
GROUP BY {", ".join("o." + k for k in keys.split(", "))}
"""


SUMMARY_VIEW = _summary_sql("summary", by_pass=False)
_SUMMARY_BY_PASS = _summary_sql("summary_by_pass", by_pass=True)

# Repeated passes side by side: per pass figures, then their median, spread and coefficient
# of variation (sample standard deviation / mean; NULL with a single pass). A difference
# between backends smaller than their spread is noise.
REPEAT_SUMMARY_VIEW = """
CREATE OR REPLACE VIEW repeat_summary AS
WITH per_pass AS (
    SELECT run_id, backend, op, repetition,
           count(*) * 1e9 / nullif(max(start_ns + latency_ns) - min(start_ns), 0) AS ops_per_s,
           quantile_cont(latency_ns, 0.5) FILTER (WHERE error IS NULL) / 1e6 AS p50_ms,
           quantile_cont(latency_ns, 0.99) FILTER (WHERE error IS NULL) / 1e6 AS p99_ms,
           avg(CASE WHEN local THEN 1.0 ELSE 0.0 END)
               FILTER (WHERE op = 'get' AND error IS NULL) AS local_rate
    FROM ops GROUP BY ALL
)
SELECT run_id, backend, op, count(*) AS passes,
       median(ops_per_s) AS ops_per_s_median, min(ops_per_s) AS ops_per_s_min,
       max(ops_per_s) AS ops_per_s_max,
       stddev_samp(ops_per_s) / nullif(avg(ops_per_s), 0) AS ops_per_s_cv,
       median(p50_ms) AS p50_ms_median, min(p50_ms) AS p50_ms_min, max(p50_ms) AS p50_ms_max,
       median(p99_ms) AS p99_ms_median, min(p99_ms) AS p99_ms_min, max(p99_ms) AS p99_ms_max,
       stddev_samp(p99_ms) / nullif(avg(p99_ms), 0) AS p99_ms_cv,
       median(local_rate) AS local_rate_median, min(local_rate) AS local_rate_min,
       max(local_rate) AS local_rate_max
FROM per_pass
GROUP BY run_id, backend, op
"""

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

_SERVER_COST_TABLE = """
CREATE TABLE IF NOT EXISTS server_cost (
    run_id VARCHAR, backend VARCHAR, repetition INTEGER, ts_ns BIGINT, ts TIMESTAMP,
    server VARCHAR, metric VARCHAR, value DOUBLE)
"""


def _server_cost_summary_sql() -> str:
    kinds = ", ".join(f"('{m}', '{k}')" for m, k in METRIC_KINDS.items())
    return f"""
CREATE OR REPLACE VIEW server_cost_summary AS
WITH kinds(metric, kind) AS (VALUES {kinds}),
steps AS (
    SELECT c.*, coalesce(k.kind, 'gauge') AS kind,
           coalesce(value - lag(value) OVER w, 0) AS step
    FROM server_cost AS c LEFT JOIN kinds AS k USING (metric)
    WINDOW w AS (PARTITION BY run_id, backend, repetition, server, metric ORDER BY ts_ns)
)
SELECT run_id, backend, repetition, server, metric, any_value(kind) AS kind,
       count(*) AS samples,
       (max(ts_ns) - min(ts_ns)) / 1e9 AS duration_s,
       arg_min(value, ts_ns) AS first_value,
       arg_max(value, ts_ns) AS last_value,
       max(value) AS max_value,
       -- A counter that went down was reset (server restart): count from zero again.
       CASE WHEN any_value(kind) = 'counter'
            THEN coalesce(sum(CASE WHEN step >= 0 THEN step ELSE value END), 0) END AS delta,
       CASE WHEN any_value(kind) = 'counter' AND max(ts_ns) > min(ts_ns)
            THEN coalesce(sum(CASE WHEN step >= 0 THEN step ELSE value END), 0)
                 / ((max(ts_ns) - min(ts_ns)) / 1e9) END AS per_s,
       CASE WHEN any_value(kind) = 'counter'
            THEN coalesce(sum(CASE WHEN step >= 0 THEN step ELSE value END), 0)
            ELSE max(value) END AS value
FROM steps
GROUP BY run_id, backend, repetition, server, metric
"""

_THRESHOLD_RESULTS_TABLE = """
CREATE TABLE IF NOT EXISTS threshold_results (run_id VARCHAR, backend VARCHAR,
    expression VARCHAR, measured DOUBLE, passed BOOLEAN, note VARCHAR)
"""

# -- consistency views over the recorded operations: stale reads and invalidation lag ---------
# The views read the public tables ``ops`` and ``events``; a "pass" is one
# ``(run_id, backend, repetition)``.
#
# Definitions (DESIGN.md section 5), made precise here:
#
# * A *write* is a successful ``set`` or ``delete`` (``error IS NULL``); a failed operation is
#   not a write that happened. It occupies ``[start_ns, finish_ns]`` with
#   ``finish_ns = start_ns + latency_ns``. A delete makes the key absent.
# * A read is a successful ``get`` that returned a version (a hit). It saw write W1, the set
#   whose ``version`` it returned. It is **stale** when some write W2 to the same key in the
#   same pass started after W1 finished (``W2.start > W1.finish``) and finished before the
#   read started (``W2.finish < read.start``).
# * Its **staleness age** is ``read.start - min(W2.finish)`` over all such W2: how long the
#   value had already been superseded when the read began. That earliest-finishing W2 is
#   reported as the superseding write.
# * Misses are never stale. A miss returns no superseded data: after a delete it is correct,
#   and a cache may always drop an entry (TTL, eviction); its cost shows in the hit rate.
# * A read returning a version that no recorded set of its pass wrote (a warm-up write: the
#   warm-up is not recorded) is judged as if W1 finished before the pass began, so any write to
#   the key that finished before the read supersedes it (``w1_recorded = false``). A read
#   returning a version written by a *failed* set cannot be judged (the write may have been
#   applied at any time) and is counted as ``unjudged_reads`` instead.
# * ``beyond_invalidation`` tells a stale read that the invalidation protocol explains from one
#   it does not: TRUE when the reader's instance had already been told of the superseding
#   write W2 before the read started (an ``invalidation`` event in the reader's process for
#   W2's ``server_version`` or a newer one, or a ``local_flush`` there after W2 finished,
#   arrived earlier), or wrote W2 itself (pgcache is write-through); FALSE when that
#   invalidation arrived only after the read started (the read fell within the invalidation
#   lag); NULL when it cannot be told (W2 is a delete or has no
#   server version, as with Valkey, or no invalidation for it reached the reader).
#   For a correct pgcache, ``stale_beyond_invalidation`` is 0.
# * Without versions (a pass whose workers record invalidations without a server version:
#   Valkey's tracking invalidations name keys only), the reader was told of W2 by the first
#   invalidation of the key reaching its process at or after W2 *finished* (or a flush after
#   it). Whichever write that invalidation announced, a correct client can no longer serve
#   W1 after it: any copy it held was dropped, and any fetch still in flight was stopped from
#   installing (so a later copy was fetched after W2 finished). TRUE when it arrived before
#   the read started, FALSE after, NULL when none arrived. (An invalidation arriving while W2
#   was in flight may announce an earlier write, so it does not count.)
#
# Computation, linear-ish in the number of ops: for each key, writes sorted by start get the
# suffix minimum of their finish (a window); an ASOF join gives each write W1 the earliest
# finish of any write starting after W1 finished; each read then joins its W1 by version
# (hash join) and is stale iff that earliest finish is before the read's start.
#
# Invalidation lag (pgcache backends): for each successful set with a ``server_version`` and
# each *other* worker process of the pass, the first ``invalidation`` event in that process
# for the same key whose ``server_version`` is at least the set's (an ASOF join, so a
# coalesced notification for a newer version counts as delivering the older one), and
# ``lag = arrival_ns - set.finish_ns``. A ``local_flush`` in that process after the set
# finished delivers it too (``via = 'flush'``), whichever comes first. The lag can be slightly
# negative: the server commits and notifies before the writer has read the reply. A (write,
# process) pair with neither is *missing*: expected with NOTIFY disabled, and for writes in the
# last moments of a pass whose notification arrived after the worker stopped recording.
#
# Without versions (Valkey), a set is delivered to another process by the first invalidation
# of its key there at or after the set *started* (the server announces a write while it
# executes it, before the writer reads the reply), or a flush after it finished, provided it
# arrived before the key's next write started: anything later may announce that next write,
# so the pair counts as missing rather than being credited with a lag it did not have. Missing
# pairs are expected with Valkey's default tracking mode, which tells only the clients that
# had read the key since it last changed.

# Quantiles here are ``quantile_disc``: an observed value, never an interpolation.

# Invalidation arrivals (with a server version) and local-cache flushes, as workers log them.
_ARRIVALS = """arrivals AS (
    SELECT run_id, backend, repetition, process,
           data->>'key' AS key,
           (data->>'server_version')::BIGINT AS server_version,
           coalesce((data->>'ts_ns')::BIGINT, ts_ns) AS arrival_ns
    FROM events
    WHERE event = 'invalidation' AND data->>'server_version' IS NOT NULL
),
flushes AS (
    SELECT run_id, backend, repetition, process,
           coalesce((data->>'ts_ns')::BIGINT, ts_ns) AS flush_ns
    FROM events
    WHERE event = 'local_flush'
),
-- Invalidations without a version (Valkey's), and the passes whose workers record them.
unversioned AS (
    SELECT run_id, backend, repetition, process,
           data->>'key' AS key,
           coalesce((data->>'ts_ns')::BIGINT, ts_ns) AS arrival_ns
    FROM events
    WHERE event = 'invalidation' AND data->>'server_version' IS NULL
),
unversioned_passes AS (
    SELECT DISTINCT run_id, backend, repetition FROM unversioned
)"""

# Clocks (schema version 2). A worker on a clock of its own (another host) has its timestamps
# mapped onto the parent's at ingest, each within +/- its ``uncertainty_ns`` (table
# ``clock_offsets``; a worker without rows shares the parent's clock: 0). A comparison of two
# timestamps is *certain* when it holds however far each is off within its uncertainty
# (``a < b`` certain iff ``a + u_a < b - u_b``), *possible* when it holds for some such error.
# A read is stale when a superseding W2 certainly exists; fresh when none possibly does;
# otherwise it is unjudged (``clock_unjudged_reads``), never guessed. Two timestamps of one
# worker get the margin too (conservative: they share a clock). With every uncertainty 0 both
# coincide, and the views are those of version 1.
_UNCERTAINTY = """uncertainty AS (
    SELECT run_id, backend, repetition, process, max(uncertainty_ns) AS u
    FROM clock_offsets GROUP BY ALL
)"""

# The stale judgement, one template for both sides: ``{lo}`` is -1 for *certain* (W2's start
# taken as early as it may be, every finish as late, the read's start as early) and +1 for
# *possible* (the other way round). ``{scope}`` limits the passes judged.
_JUDGED = """writes AS (
    SELECT o.run_id, o.backend, o.repetition, o.key, o.op, o.version, o.process,
           o.server_version, o.start_ns, o.start_ns + o.latency_ns AS finish_ns,
           coalesce(c.u, 0) AS u,
           o.start_ns + {lo} * coalesce(c.u, 0) AS start_edge,
           o.start_ns + o.latency_ns - {lo} * coalesce(c.u, 0) AS finish_edge
    FROM ops AS o LEFT JOIN uncertainty AS c USING (run_id, backend, repetition, process)
    WHERE o.op IN ('set', 'delete') AND o.error IS NULL AND {scope}
),
-- For writes ordered by (edge) start, descending, the earliest (edge) finish among this write
-- and every write starting later (peers with an equal start share one value: RANGE frame).
suffix AS (
    SELECT run_id, backend, repetition, key, start_edge,
           min(finish_edge) OVER w AS next_finish_edge,
           arg_min(finish_ns, finish_edge) OVER w AS next_finish_ns,
           arg_min(version, finish_edge) OVER w AS next_version,
           arg_min(op, finish_edge) OVER w AS next_op,
           arg_min(process, finish_edge) OVER w AS next_process,
           arg_min(server_version, finish_edge) OVER w AS next_server_version,
           arg_min(u, finish_edge) OVER w AS next_u
    FROM writes
    WINDOW w AS (PARTITION BY run_id, backend, repetition, key ORDER BY start_edge DESC)
),
-- Each set W1 with the earliest-finishing write that started after W1 finished.
superseded AS (
    SELECT w.run_id, w.backend, w.repetition, w.key, w.version, w.finish_ns,
           s.next_finish_edge, s.next_finish_ns, s.next_version, s.next_op, s.next_process,
           s.next_server_version, s.next_u
    FROM writes AS w
    ASOF JOIN suffix AS s
      ON s.run_id = w.run_id AND s.backend = w.backend AND s.repetition = w.repetition
     AND s.key = w.key AND s.start_edge > w.finish_edge
    WHERE w.op = 'set'
),
-- Per key, the earliest-finishing write of the pass: supersedes any unrecorded W1.
first_write AS (
    SELECT run_id, backend, repetition, key,
           min(finish_edge) AS next_finish_edge,
           arg_min(finish_ns, finish_edge) AS next_finish_ns,
           arg_min(version, finish_edge) AS next_version,
           arg_min(op, finish_edge) AS next_op,
           arg_min(process, finish_edge) AS next_process,
           arg_min(server_version, finish_edge) AS next_server_version,
           arg_min(u, finish_edge) AS next_u
    FROM writes
    GROUP BY ALL
),
recorded_sets AS (
    SELECT DISTINCT run_id, backend, repetition, version
    FROM ops WHERE op = 'set' AND version IS NOT NULL
),
reads AS (
    SELECT o.run_id, o.backend, o.repetition, o.process, o.task, o.key, o.start_ns,
           o.latency_ns, o.local, o.version, coalesce(c.u, 0) AS u,
           o.start_ns + {lo} * coalesce(c.u, 0) AS start_edge
    FROM ops AS o LEFT JOIN uncertainty AS c USING (run_id, backend, repetition, process)
    WHERE o.op = 'get' AND o.error IS NULL AND o.version IS NOT NULL AND {scope}
),
judged AS (
    SELECT r.*, true AS w1_recorded, s.finish_ns AS w1_finish_ns,
           s.next_finish_ns, s.next_version, s.next_op, s.next_process, s.next_server_version,
           s.next_u
    FROM reads AS r
    JOIN superseded AS s
      ON s.run_id = r.run_id AND s.backend = r.backend AND s.repetition = r.repetition
     AND s.key = r.key AND s.version = r.version
    WHERE s.next_finish_edge < r.start_edge
    UNION ALL
    SELECT r.*, false AS w1_recorded, NULL::BIGINT AS w1_finish_ns,
           f.next_finish_ns, f.next_version, f.next_op, f.next_process, f.next_server_version,
           f.next_u
    FROM reads AS r
    ANTI JOIN recorded_sets AS k
      ON k.run_id = r.run_id AND k.backend = r.backend AND k.repetition = r.repetition
     AND k.version = r.version
    JOIN first_write AS f
      ON f.run_id = r.run_id AND f.backend = r.backend AND f.repetition = r.repetition
     AND f.key = r.key
    WHERE f.next_finish_edge < r.start_edge
)"""

_STALE_READS = f"""
CREATE OR REPLACE VIEW stale_reads AS
WITH {_UNCERTAINTY},
{_JUDGED.replace("{lo}", "-1").replace("{scope}", "true")},
{{_ARRIVALS}},
-- When the reader's instance learnt of the superseding write: its invalidation (for that
-- server version or a newer one) arriving in the reader's process.
matched AS (
    SELECT j.*, a.arrival_ns
    FROM judged AS j
    ASOF LEFT JOIN arrivals AS a
      ON a.run_id = j.run_id AND a.backend = j.backend AND a.repetition = j.repetition
     AND a.process = j.process AND a.key = j.key
     AND a.server_version >= j.next_server_version
),
-- When the reader was certainly (or possibly, within the clocks' uncertainty) told of the
-- superseding write by what came after it: a local flush, or without versions the first
-- invalidation of the key (whichever write it announced, see above).
edges AS (
    SELECT m.*, m.next_finish_ns + m.next_u + m.u AS certain_after_ns,
           m.next_finish_ns - m.next_u - m.u AS possible_after_ns
    FROM matched AS m
),
unversioned_certain AS (
    SELECT e.*, u.arrival_ns AS unversioned_certain_ns,
           p.run_id IS NOT NULL AS unversioned_pass
    FROM edges AS e
    ASOF LEFT JOIN unversioned AS u
      ON u.run_id = e.run_id AND u.backend = e.backend AND u.repetition = e.repetition
     AND u.process = e.process AND u.key = e.key AND u.arrival_ns >= e.certain_after_ns
    LEFT JOIN unversioned_passes AS p
      ON p.run_id = e.run_id AND p.backend = e.backend AND p.repetition = e.repetition
),
unversioned_possible AS (
    SELECT x.*, u.arrival_ns AS unversioned_possible_ns
    FROM unversioned_certain AS x
    ASOF LEFT JOIN unversioned AS u
      ON u.run_id = x.run_id AND u.backend = x.backend AND u.repetition = x.repetition
     AND u.process = x.process AND u.key = x.key AND u.arrival_ns >= x.possible_after_ns
),
flushed AS (
    SELECT e.*, f.flush_ns AS certain_flush_ns
    FROM unversioned_possible AS e
    ASOF LEFT JOIN flushes AS f
      ON f.run_id = e.run_id AND f.backend = e.backend AND f.repetition = e.repetition
     AND f.process = e.process AND f.flush_ns > e.certain_after_ns
),
told AS (
    SELECT x.* EXCLUDE (arrival_ns, certain_flush_ns, certain_after_ns, possible_after_ns,
                        unversioned_certain_ns, unversioned_possible_ns),
           CASE WHEN x.next_server_version IS NOT NULL
                THEN least(x.arrival_ns, x.certain_flush_ns)
                WHEN x.unversioned_pass
                THEN least(x.unversioned_certain_ns, x.certain_flush_ns)
           END AS invalidation_arrival_ns,
           CASE WHEN x.next_server_version IS NOT NULL
                THEN least(x.arrival_ns, f.flush_ns)
                WHEN x.unversioned_pass
                THEN least(x.unversioned_possible_ns, f.flush_ns) END AS maybe_told_ns
    FROM flushed AS x
    ASOF LEFT JOIN flushes AS f
      ON f.run_id = x.run_id AND f.backend = x.backend AND f.repetition = x.repetition
     AND f.process = x.process AND f.flush_ns > x.possible_after_ns
)
SELECT run_id, backend, repetition, process, task, key,
       start_ns AS read_start_ns, latency_ns AS read_latency_ns, local,
       version AS version_read, w1_recorded, w1_finish_ns,
       next_version AS superseding_version, next_op AS superseding_op,
       next_process AS superseding_process,
       next_server_version AS superseding_server_version,
       next_finish_ns AS superseding_finish_ns,
       start_ns - next_finish_ns AS staleness_age_ns,
       (start_ns - next_finish_ns) / 1e6 AS staleness_age_ms,
       invalidation_arrival_ns,
       -- Arrival and read are both the reader's own timestamps: compared exactly.
       CASE WHEN next_server_version IS NULL AND NOT unversioned_pass THEN NULL
            WHEN next_server_version IS NOT NULL AND next_process = process THEN true
            WHEN invalidation_arrival_ns < start_ns THEN true
            WHEN maybe_told_ns IS NULL OR maybe_told_ns < start_ns THEN NULL
            ELSE false END AS beyond_invalidation
FROM told
"""

# Reads a superseding write possibly but not certainly made stale: unjudged, because the
# clocks' uncertainty covers the difference. Only passes with a clock uncertainty are looked at.
_UNCERTAIN_PASS = """EXISTS (SELECT 1 FROM uncertain_passes AS p WHERE p.run_id = o.run_id
              AND p.backend = o.backend AND p.repetition = o.repetition)"""
_CLOCK_UNJUDGED_READS = f"""
CREATE OR REPLACE VIEW clock_unjudged_reads AS
WITH {_UNCERTAINTY},
uncertain_passes AS (
    SELECT DISTINCT run_id, backend, repetition FROM uncertainty WHERE u > 0
),
{_JUDGED.replace("{lo}", "1").replace("{scope}", _UNCERTAIN_PASS)}
SELECT j.run_id, j.backend, j.repetition, j.process, j.task, j.key,
       j.start_ns AS read_start_ns, j.version AS version_read,
       j.next_version AS superseding_version, j.next_process AS superseding_process,
       j.next_finish_ns AS superseding_finish_ns,
       (j.start_ns - j.next_finish_ns) / 1e6 AS staleness_age_ms,
       (j.u + j.next_u) / 1e6 AS clock_uncertainty_ms
FROM judged AS j
ANTI JOIN stale_reads AS s
  ON s.run_id = j.run_id AND s.backend = j.backend AND s.repetition = j.repetition
 AND s.process = j.process AND s.task = j.task AND s.read_start_ns = j.start_ns
"""

# Per worker of a pass: its clock's offset at the start and at the end of the pass (drift =
# the difference), and the uncertainty of its mapped timestamps.
_CLOCK_SUMMARY = """
CREATE OR REPLACE VIEW clock_summary AS
SELECT run_id, backend, repetition, process,
       any_value(node) AS node, any_value(host) AS host,
       arg_min(offset_ns, worker_ns) FILTER (WHERE stage = 'start') AS start_offset_ns,
       arg_max(offset_ns, worker_ns) FILTER (WHERE stage = 'end') AS end_offset_ns,
       arg_max(offset_ns, worker_ns) FILTER (WHERE stage = 'end')
         - arg_min(offset_ns, worker_ns) FILTER (WHERE stage = 'start') AS drift_ns,
       max(uncertainty_ns) AS uncertainty_ns,
       min(round_trip_ns) AS best_round_trip_ns
FROM clock_offsets
GROUP BY ALL
"""

def _consistency_sql(view: str, keys: str) -> str:
    """The consistency summary grouped by ``keys`` (one scan of stale_reads)."""
    on = " AND ".join(f"f.{k} = r.{k}" for k in ("run_id", "backend", "repetition"))
    return f"""
CREATE OR REPLACE VIEW {view} AS
WITH gets AS (
    SELECT {keys},
           count(DISTINCT repetition) AS passes,
           count(*) AS reads,
           count(*) FILTER (WHERE version IS NOT NULL) AS hits,
           count(*) FILTER (WHERE local) AS local_reads
    FROM ops WHERE op = 'get' AND error IS NULL
    GROUP BY {keys}
),
-- Versions that only a failed set wrote: reads of them cannot be judged.
failed_only AS (
    SELECT run_id, backend, repetition, version FROM ops
    WHERE op = 'set' AND error IS NOT NULL AND version IS NOT NULL
    EXCEPT
    SELECT run_id, backend, repetition, version FROM ops
    WHERE op = 'set' AND error IS NULL AND version IS NOT NULL
),
unjudged AS (
    SELECT {", ".join(f"r.{k.strip()}" for k in keys.split(","))}, count(*) AS unjudged_reads
    FROM ops AS r
    SEMI JOIN failed_only AS f ON {on} AND f.version = r.version
    WHERE r.op = 'get' AND r.error IS NULL
    GROUP BY ALL
),
clock_unjudged AS (
    SELECT {keys}, count(*) AS clock_unjudged_reads
    FROM clock_unjudged_reads
    GROUP BY {keys}
),
stale AS (
    SELECT {keys},
           count(*) AS stale_reads,
           count(*) FILTER (WHERE local) AS stale_local_reads,
           count(*) FILTER (WHERE beyond_invalidation) AS stale_beyond_invalidation,
           max(staleness_age_ms) AS max_staleness_ms,
           quantile_disc(staleness_age_ms, 0.99) AS p99_staleness_ms,
           quantile_disc(staleness_age_ms, 0.5) AS p50_staleness_ms
    FROM stale_reads
    GROUP BY {keys}
)
SELECT {", ".join(f"g.{k.strip()}" for k in keys.split(","))},
       g.passes, g.reads, g.hits, g.local_reads,
       coalesce(s.stale_reads, 0) AS stale_reads,
       coalesce(s.stale_local_reads, 0) AS stale_local_reads,
       coalesce(s.stale_reads, 0) / g.reads AS stale_rate,
       coalesce(s.stale_beyond_invalidation, 0) AS stale_beyond_invalidation,
       coalesce(u.unjudged_reads, 0) + coalesce(c.clock_unjudged_reads, 0) AS unjudged_reads,
       coalesce(s.p50_staleness_ms, 0) AS p50_staleness_ms,
       coalesce(s.p99_staleness_ms, 0) AS p99_staleness_ms,
       coalesce(s.max_staleness_ms, 0) AS max_staleness_ms,
       coalesce(c.clock_unjudged_reads, 0) AS clock_unjudged_reads
FROM gets AS g
LEFT JOIN stale AS s USING ({keys})
LEFT JOIN unjudged AS u USING ({keys})
LEFT JOIN clock_unjudged AS c USING ({keys})
"""


_CONSISTENCY_BY_PASS = _consistency_sql("consistency_by_pass", "run_id, backend, repetition")
_CONSISTENCY = _consistency_sql("consistency", "run_id, backend")

_INVALIDATION_LAG = """
CREATE OR REPLACE VIEW invalidation_lag AS
WITH {_UNCERTAINTY},
sets AS (
    SELECT o.run_id, o.backend, o.repetition, o.key, o.process AS writer_process, o.version,
           o.server_version, o.start_ns + o.latency_ns AS finish_ns,
           coalesce(c.u, 0) AS writer_u
    FROM ops AS o LEFT JOIN uncertainty AS c USING (run_id, backend, repetition, process)
    WHERE o.op = 'set' AND o.error IS NULL AND o.server_version IS NOT NULL
),
processes AS (
    SELECT DISTINCT run_id, backend, repetition, process FROM ops
),
expected AS (
    SELECT s.*, p.process AS receiver_process, coalesce(c.u, 0) AS receiver_u,
           -- a flush in the receiver certainly after the write finished, clocks' errors
           -- included, delivers it
           s.finish_ns + s.writer_u + coalesce(c.u, 0) AS certain_after_ns
    FROM sets AS s
    JOIN processes AS p
      ON p.run_id = s.run_id AND p.backend = s.backend AND p.repetition = s.repetition
     AND p.process <> s.writer_process
    LEFT JOIN uncertainty AS c
      ON c.run_id = s.run_id AND c.backend = s.backend AND c.repetition = s.repetition
     AND c.process = p.process
),
{_ARRIVALS},
matched AS (
    SELECT e.*, a.server_version AS received_server_version, a.arrival_ns
    FROM expected AS e
    ASOF LEFT JOIN arrivals AS a
      ON a.run_id = e.run_id AND a.backend = e.backend AND a.repetition = e.repetition
     AND a.process = e.receiver_process AND a.key = e.key
     AND a.server_version >= e.server_version
),
delivered AS (
    SELECT m.*, f.flush_ns, least(m.arrival_ns, f.flush_ns) AS delivered_ns
    FROM matched AS m
    ASOF LEFT JOIN flushes AS f
      ON f.run_id = m.run_id AND f.backend = m.backend AND f.repetition = m.repetition
     AND f.process = m.receiver_process AND f.flush_ns > m.certain_after_ns
),
-- Without versions: a set of a pass whose workers record unversioned invalidations, paired
-- with each other process of the pass and the first invalidation of the key (or flush) there
-- certainly after the set started and certainly before the key's next write started (the
-- clocks' uncertainty taken against the pair).
unversioned_sets AS (
    SELECT w.* FROM (
        SELECT o.run_id, o.backend, o.repetition, o.key, o.op, o.process AS writer_process,
               o.version, o.start_ns, o.start_ns + o.latency_ns AS finish_ns,
               coalesce(c.u, 0) AS writer_u,
               lead(o.start_ns - coalesce(c.u, 0)) OVER (
                   PARTITION BY o.run_id, o.backend, o.repetition, o.key
                   ORDER BY o.start_ns) AS next_start_ns
        FROM ops AS o LEFT JOIN uncertainty AS c USING (run_id, backend, repetition, process)
        WHERE o.op IN ('set', 'delete') AND o.error IS NULL) AS w
    SEMI JOIN unversioned_passes AS p
      ON p.run_id = w.run_id AND p.backend = w.backend AND p.repetition = w.repetition
    WHERE w.op = 'set'
),
unversioned_expected AS (
    SELECT s.*, p.process AS receiver_process, coalesce(c.u, 0) AS receiver_u,
           s.start_ns + s.writer_u + coalesce(c.u, 0) AS certain_started_ns,
           s.finish_ns + s.writer_u + coalesce(c.u, 0) AS certain_after_ns,
           s.next_start_ns - coalesce(c.u, 0) AS certain_before_ns
    FROM unversioned_sets AS s
    JOIN processes AS p
      ON p.run_id = s.run_id AND p.backend = s.backend AND p.repetition = s.repetition
     AND p.process <> s.writer_process
    LEFT JOIN uncertainty AS c
      ON c.run_id = s.run_id AND c.backend = s.backend AND c.repetition = s.repetition
     AND c.process = p.process
),
unversioned_matched AS (
    SELECT e.*, a.arrival_ns
    FROM unversioned_expected AS e
    ASOF LEFT JOIN unversioned AS a
      ON a.run_id = e.run_id AND a.backend = e.backend AND a.repetition = e.repetition
     AND a.process = e.receiver_process AND a.key = e.key
     AND a.arrival_ns >= e.certain_started_ns
),
unversioned_delivered AS (
    SELECT m.* EXCLUDE (arrival_ns),
           -- whatever arrives once the key's next write started may belong to that one
           CASE WHEN certain_before_ns IS NULL OR m.arrival_ns < certain_before_ns
                THEN m.arrival_ns END AS arrival_ns,
           CASE WHEN certain_before_ns IS NULL OR f.flush_ns < certain_before_ns
                THEN f.flush_ns END AS flush_ns
    FROM unversioned_matched AS m
    ASOF LEFT JOIN flushes AS f
      ON f.run_id = m.run_id AND f.backend = m.backend AND f.repetition = m.repetition
     AND f.process = m.receiver_process AND f.flush_ns > m.certain_after_ns
),
unversioned_lag AS (
    SELECT run_id, backend, repetition, key, version, NULL::BIGINT AS server_version,
           writer_process, receiver_process, NULL::BIGINT AS received_server_version,
           finish_ns, arrival_ns, flush_ns, least(arrival_ns, flush_ns) AS delivered_ns,
           writer_u, receiver_u
    FROM unversioned_delivered
)
SELECT run_id, backend, repetition, key, version, server_version, writer_process,
       receiver_process,
       CASE WHEN arrival_ns IS NOT NULL AND (flush_ns IS NULL OR arrival_ns <= flush_ns)
            THEN 'invalidation' ELSE 'flush' END AS via,
       CASE WHEN arrival_ns IS NOT NULL AND (flush_ns IS NULL OR arrival_ns <= flush_ns)
            THEN received_server_version END AS received_server_version,
       finish_ns AS write_finish_ns, delivered_ns AS arrival_ns,
       delivered_ns - finish_ns AS lag_ns,
       (delivered_ns - finish_ns) / 1e6 AS lag_ms,
       (writer_u + receiver_u) / 1e6 AS clock_uncertainty_ms
FROM delivered
WHERE delivered_ns IS NOT NULL
UNION ALL
SELECT run_id, backend, repetition, key, version, server_version, writer_process,
       receiver_process,
       CASE WHEN arrival_ns IS NOT NULL AND (flush_ns IS NULL OR arrival_ns <= flush_ns)
            THEN 'invalidation' ELSE 'flush' END AS via,
       received_server_version,
       finish_ns AS write_finish_ns, delivered_ns AS arrival_ns,
       delivered_ns - finish_ns AS lag_ns,
       (delivered_ns - finish_ns) / 1e6 AS lag_ms,
       (writer_u + receiver_u) / 1e6 AS clock_uncertainty_ms
FROM unversioned_lag
WHERE delivered_ns IS NOT NULL
"""

def _lag_summary_sql(view: str, *, by_pass: bool) -> str:
    """The invalidation-lag summary per run and backend, or per pass (``by_pass``)."""
    rep = ", s.repetition" if by_pass else ""
    keys = "run_id, backend" + (", repetition" if by_pass else "")
    return f"""
CREATE OR REPLACE VIEW {view} AS
WITH unversioned_passes AS (
    SELECT DISTINCT run_id, backend, repetition FROM events
    WHERE event = 'invalidation' AND data->>'server_version' IS NULL
),
expected AS (
    SELECT s.run_id, s.backend{rep},
           count(DISTINCT (s.repetition, s.version)) AS writes,
           count(p.process) AS expected
    FROM ops AS s
    LEFT JOIN (SELECT DISTINCT run_id, backend, repetition, process FROM ops) AS p
      ON p.run_id = s.run_id AND p.backend = s.backend AND p.repetition = s.repetition
     AND p.process <> s.process
    LEFT JOIN unversioned_passes AS u
      ON u.run_id = s.run_id AND u.backend = s.backend AND u.repetition = s.repetition
    WHERE s.op = 'set' AND s.error IS NULL
      AND (s.server_version IS NOT NULL OR u.run_id IS NOT NULL)
    GROUP BY ALL
),
lag AS (
    SELECT {keys}, count(*) AS delivered,
           quantile_disc(lag_ms, 0.5) AS p50_ms,
           quantile_disc(lag_ms, 0.99) AS p99_ms,
           max(lag_ms) AS max_ms,
           avg(lag_ms) AS mean_ms,
           max(clock_uncertainty_ms) AS clock_uncertainty_ms
    FROM invalidation_lag GROUP BY ALL
)
SELECT e.run_id, e.backend,{" e.repetition," if by_pass else ""} e.writes, e.expected,
       coalesce(l.delivered, 0) AS count,
       e.expected - coalesce(l.delivered, 0) AS missing,
       l.p50_ms, l.p99_ms, l.max_ms, l.mean_ms,
       coalesce(l.clock_uncertainty_ms, 0) AS clock_uncertainty_ms
FROM expected AS e
LEFT JOIN lag AS l USING ({keys})
"""


_INVALIDATION_LAG_SUMMARY = _lag_summary_sql("invalidation_lag_summary", by_pass=False)
_LAG_SUMMARY_BY_PASS = _lag_summary_sql("invalidation_lag_summary_by_pass", by_pass=True)

_STALE_READS = _STALE_READS.replace("{_ARRIVALS}", _ARRIVALS)
_INVALIDATION_LAG = _INVALIDATION_LAG.replace("{_ARRIVALS}", _ARRIVALS).replace(
    "{_UNCERTAINTY}", _UNCERTAINTY)

# -- stampede: get_or_set around a miss ------------------------------------------------------
# A *miss event* is a successful delete of a key that readers fetch with get_or_set (op
# 'get_or_set'); it lasts until the key's next delete (or the end of the pass). Its *loads* are
# the loader executions (op 'load', recorded by the loader itself) of the key that started in
# it; it is *refilled* when the first get_or_set call returned a value loaded during it (the
# value was stored, or handed over, by then). Its *waiting readers* are the get_or_set calls
# of the key that started between the delete and the refill (or the event's end if it was
# never refilled) and either returned a value loaded during the event or failed: each waited
# its latency, as nothing could answer it sooner. A call that returned an older value in that
# time (a local copy not yet invalidated, or a read answered before the delete) did not wait.
_STAMPEDE_BASE = """
WITH calls AS (
    SELECT run_id, backend, repetition, key, start_ns, latency_ns, version, error
    FROM ops WHERE op = 'get_or_set'
),
asked AS (
    SELECT DISTINCT run_id, backend, repetition, key FROM calls
),
deletes AS (
    SELECT d.run_id, d.backend, d.repetition, d.key, d.start_ns AS miss_ns,
           lead(d.start_ns) OVER (PARTITION BY d.run_id, d.backend, d.repetition, d.key
                                  ORDER BY d.start_ns) AS next_ns
    FROM ops AS d
    SEMI JOIN asked AS a
      ON a.run_id = d.run_id AND a.backend = d.backend AND a.repetition = d.repetition
     AND a.key = d.key
    WHERE d.op = 'delete' AND d.error IS NULL
),
pass_ends AS (
    SELECT run_id, backend, repetition, max(start_ns + latency_ns) AS end_ns
    FROM ops GROUP BY ALL
),
windows AS (
    SELECT d.run_id, d.backend, d.repetition, d.key, d.miss_ns,
           coalesce(d.next_ns, e.end_ns + 1) AS until_ns
    FROM deletes AS d JOIN pass_ends AS e USING (run_id, backend, repetition)
),
-- Each miss event's loader executions.
loads AS (
    SELECT w.run_id, w.backend, w.repetition, w.key, w.miss_ns, l.start_ns, l.latency_ns,
           l.version, l.error
    FROM windows AS w
    JOIN ops AS l
      ON l.run_id = w.run_id AND l.backend = w.backend AND l.repetition = w.repetition
     AND l.key = w.key AND l.start_ns >= w.miss_ns AND l.start_ns < w.until_ns
    WHERE l.op = 'load'
),
-- Each call of the event's time that returned a value loaded during the event.
served AS (
    SELECT l.run_id, l.backend, l.repetition, l.key, l.miss_ns, c.start_ns, c.latency_ns
    FROM loads AS l
    JOIN calls AS c
      ON c.run_id = l.run_id AND c.backend = l.backend AND c.repetition = l.repetition
     AND c.key = l.key AND c.version = l.version AND c.start_ns >= l.miss_ns
    WHERE l.error IS NULL
),
events AS (
    SELECT w.run_id, w.backend, w.repetition, w.key, w.miss_ns, w.until_ns,
           (SELECT count(*) FROM loads AS l
            WHERE l.run_id = w.run_id AND l.backend = w.backend
              AND l.repetition = w.repetition AND l.key = w.key
              AND l.miss_ns = w.miss_ns) AS loads,
           (SELECT count(l.error) FROM loads AS l
            WHERE l.run_id = w.run_id AND l.backend = w.backend
              AND l.repetition = w.repetition AND l.key = w.key
              AND l.miss_ns = w.miss_ns) AS failed_loads,
           (SELECT avg(l.latency_ns) FILTER (WHERE l.error IS NULL) / 1e6 FROM loads AS l
            WHERE l.run_id = w.run_id AND l.backend = w.backend
              AND l.repetition = w.repetition AND l.key = w.key
              AND l.miss_ns = w.miss_ns) AS mean_load_ms,
           (SELECT min(s.start_ns + s.latency_ns) FROM served AS s
            WHERE s.run_id = w.run_id AND s.backend = w.backend
              AND s.repetition = w.repetition AND s.key = w.key
              AND s.miss_ns = w.miss_ns) AS refilled_ns
    FROM windows AS w
),
waiting AS (
    SELECT e.run_id, e.backend, e.repetition, e.key, e.miss_ns, c.latency_ns, c.error
    FROM events AS e
    JOIN calls AS c
      ON c.run_id = e.run_id AND c.backend = e.backend AND c.repetition = e.repetition
     AND c.key = e.key AND c.start_ns >= e.miss_ns
     AND c.start_ns <= least(coalesce(e.refilled_ns, e.until_ns), e.until_ns - 1)
    WHERE c.error IS NOT NULL OR EXISTS (
        SELECT 1 FROM loads AS l
        WHERE l.run_id = e.run_id AND l.backend = e.backend AND l.repetition = e.repetition
          AND l.key = e.key AND l.miss_ns = e.miss_ns AND l.version = c.version
          AND l.error IS NULL)
)"""

_STAMPEDE_EVENTS = f"""
CREATE OR REPLACE VIEW stampede_events AS
{_STAMPEDE_BASE}
SELECT e.run_id, e.backend, e.repetition, e.key, e.miss_ns, e.refilled_ns,
       (e.refilled_ns - e.miss_ns) / 1e6 AS refill_ms,
       e.loads, e.failed_loads, e.mean_load_ms,
       count(w.latency_ns) AS waiting_readers,
       count(w.error) AS errors,
       avg(w.latency_ns) / 1e6 AS mean_wait_ms,
       max(w.latency_ns) / 1e6 AS max_wait_ms
FROM events AS e
LEFT JOIN waiting AS w
  ON w.run_id = e.run_id AND w.backend = e.backend AND w.repetition = e.repetition
 AND w.key = e.key AND w.miss_ns = e.miss_ns
GROUP BY ALL
"""

_STAMPEDE = f"""
CREATE OR REPLACE VIEW stampede AS
{_STAMPEDE_BASE},
per_backend_events AS (
    SELECT run_id, backend, count(*) AS miss_events, sum(loads) AS loads,
           avg(loads) AS loads_per_miss, max(loads) AS max_loads_per_miss,
           sum(failed_loads) AS failed_loads,
           quantile_disc((refilled_ns - miss_ns) / 1e6, 0.5) AS refill_p50_ms
    FROM events GROUP BY ALL
),
per_backend_waits AS (
    SELECT run_id, backend, count(*) AS waiting_readers, count(error) AS errors,
           quantile_disc(latency_ns / 1e6, 0.5) AS wait_p50_ms,
           quantile_disc(latency_ns / 1e6, 0.99) AS wait_p99_ms,
           max(latency_ns) / 1e6 AS wait_max_ms
    FROM waiting GROUP BY ALL
)
SELECT e.run_id, e.backend, e.miss_events, e.loads, e.loads_per_miss, e.max_loads_per_miss,
       e.failed_loads, coalesce(w.waiting_readers, 0) / e.miss_events AS waiting_per_miss,
       coalesce(w.errors, 0) AS errors, w.wait_p50_ms, w.wait_p99_ms, w.wait_max_ms,
       e.refill_p50_ms
FROM per_backend_events AS e
LEFT JOIN per_backend_waits AS w USING (run_id, backend)
"""

# -- fault impact: what each fault of a schedule did to each backend --------------------------
# A fault lasts from the moment the schedule asked Toxiproxy to apply it (its ``fault_start``
# event's ``t_ns``, when the change had taken effect, minus how late that was: ``offset_s -
# at_s``) to its ``fault_end`` event's ``t_ns`` (the change undone; a fault never ended counts
# until the pass's last operation): a fault may act from the moment it is asked for. Around
# it, in each pass:
# * *before*: the steady state before the schedule began: the second before the pass's first
#   fault started (not before the pass's first operation). Its p99 latency (successful
#   operations started then) is the baseline of every fault of the pass: the second before a
#   later fault may still be recovering from an earlier one;
# * *during*: operations started while it was on;
# * *after*: operations started after it ended, until the next fault starts or the pass ends
#   (and, when a next fault starts, completed before it: one in flight then is that fault's).
# Errors and stale reads (the ``stale_reads`` view) are counted during and after. Time to
# recovery: from the fault's end until errors stop (the last failed operation that started
# during or after the fault has completed) and the p99 latency of a sliding 100 ms window
# (successful operations that started in it; the window moves in 10 ms steps from the fault's
# end, and must lie within the after period) is back within 2x the baseline: the start of the
# first such window. NULL when that never happened before the after period ended (or there
# was no baseline).
_FAULT_IMPACT = """
CREATE OR REPLACE VIEW fault_impact AS
WITH starts AS (
    SELECT run_id, backend, repetition, (data->>'fault')::INTEGER AS fault,
           data->>'label' AS label, data->>'proxy' AS proxy, data->>'toxic' AS toxic,
           -- when the schedule asked for it (it took effect between then and t_ns)
           least(coalesce((data->>'t_ns')::BIGINT, ts_ns),
                 coalesce((data->>'t_ns')::BIGINT, ts_ns)
                 - coalesce(round(((data->>'offset_s')::DOUBLE - (data->>'at_s')::DOUBLE)
                                  * 1e9)::BIGINT, 0)) AS start_ns
    FROM events WHERE event = 'fault_start'
),
ends AS (
    SELECT run_id, backend, repetition, (data->>'fault')::INTEGER AS fault,
           min(coalesce((data->>'t_ns')::BIGINT, ts_ns)) AS end_ns
    FROM events WHERE event = 'fault_end' GROUP BY ALL
),
passes AS (
    SELECT run_id, backend, repetition, min(start_ns) AS first_ns,
           max(start_ns + latency_ns) AS last_ns
    FROM ops GROUP BY ALL
),
spans AS (
    SELECT s.*, e.end_ns, coalesce(e.end_ns, p.last_ns) AS stop_ns, p.first_ns, p.last_ns,
           min(s.start_ns) OVER pass AS first_fault_ns,
           greatest(least(coalesce(min(s.start_ns) OVER later, p.last_ns), p.last_ns),
                    coalesce(e.end_ns, p.last_ns)) AS after_until_ns
    FROM starts AS s
    JOIN passes AS p USING (run_id, backend, repetition)
    LEFT JOIN ends AS e USING (run_id, backend, repetition, fault)
    WINDOW pass AS (PARTITION BY s.run_id, s.backend, s.repetition),
           later AS (PARTITION BY s.run_id, s.backend, s.repetition ORDER BY s.start_ns
                     ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
),
baseline AS (
    SELECT s.run_id, s.backend, s.repetition, s.fault,
           quantile_cont(o.latency_ns, 0.99) / 1e6 AS baseline_p99_ms
    FROM spans AS s
    JOIN ops AS o
      ON o.run_id = s.run_id AND o.backend = s.backend AND o.repetition = s.repetition
     AND o.start_ns >= greatest(s.first_fault_ns - 1000000000, s.first_ns)
     AND o.start_ns < s.first_fault_ns AND o.error IS NULL
    GROUP BY ALL
),
counts AS (
    SELECT s.run_id, s.backend, s.repetition, s.fault,
           count(o.start_ns) FILTER (WHERE o.start_ns <= s.stop_ns) AS ops_during,
           count(o.error) FILTER (WHERE o.start_ns <= s.stop_ns) AS errors_during,
           count(o.start_ns) FILTER (WHERE o.start_ns > s.stop_ns) AS ops_after,
           count(o.error) FILTER (WHERE o.start_ns > s.stop_ns) AS errors_after,
           max(o.start_ns + o.latency_ns) FILTER (WHERE o.error IS NOT NULL) AS last_error_ns
    FROM spans AS s
    LEFT JOIN ops AS o
      ON o.run_id = s.run_id AND o.backend = s.backend AND o.repetition = s.repetition
     AND o.start_ns >= s.start_ns AND o.start_ns < s.after_until_ns
     -- an operation still running when the next fault starts is that fault's to judge
     AND (o.start_ns <= s.stop_ns OR s.after_until_ns >= s.last_ns
          OR o.start_ns + o.latency_ns < s.after_until_ns)
    GROUP BY ALL
),
stale AS (
    SELECT s.run_id, s.backend, s.repetition, s.fault,
           count(r.read_start_ns) FILTER (WHERE r.read_start_ns <= s.stop_ns) AS stale_during,
           count(r.read_start_ns) FILTER (WHERE r.read_start_ns > s.stop_ns) AS stale_after
    FROM spans AS s
    LEFT JOIN stale_reads AS r
      ON r.run_id = s.run_id AND r.backend = s.backend AND r.repetition = s.repetition
     AND r.read_start_ns >= s.start_ns AND r.read_start_ns < s.after_until_ns
    GROUP BY ALL
),
windows AS (
    SELECT run_id, backend, repetition, fault, after_until_ns,
           stop_ns + 10000000 * unnest(range(0, greatest(
               0, (after_until_ns - stop_ns - 100000000) // 10000000 + 1))) AS window_ns
    FROM spans
),
window_p99 AS (
    SELECT w.run_id, w.backend, w.repetition, w.fault, w.window_ns,
           quantile_cont(o.latency_ns, 0.99) / 1e6 AS p99_ms
    FROM windows AS w
    JOIN ops AS o
      ON o.run_id = w.run_id AND o.backend = w.backend AND o.repetition = w.repetition
     AND o.start_ns >= w.window_ns AND o.start_ns < w.window_ns + 100000000
     AND o.error IS NULL
    GROUP BY ALL
),
recovery AS (
    SELECT w.run_id, w.backend, w.repetition, w.fault, min(w.window_ns) AS recovered_ns
    FROM window_p99 AS w
    JOIN baseline AS b USING (run_id, backend, repetition, fault)
    JOIN counts AS c USING (run_id, backend, repetition, fault)
    WHERE w.p99_ms <= 2 * b.baseline_p99_ms
      AND w.window_ns >= coalesce(c.last_error_ns, w.window_ns)
    GROUP BY ALL
)
SELECT s.run_id, s.backend, s.repetition, s.fault, s.label, s.proxy, s.toxic,
       s.start_ns, s.end_ns, (s.stop_ns - s.start_ns) / 1e6 AS duration_ms,
       b.baseline_p99_ms,
       c.ops_during, c.errors_during, c.ops_after, c.errors_after,
       coalesce(t.stale_during, 0) AS stale_during, coalesce(t.stale_after, 0) AS stale_after,
       greatest(c.last_error_ns - s.stop_ns, 0) / 1e6 AS errors_stop_ms,
       r.recovered_ns, (r.recovered_ns - s.stop_ns) / 1e6 AS recovery_ms
FROM spans AS s
LEFT JOIN baseline AS b USING (run_id, backend, repetition, fault)
LEFT JOIN counts AS c USING (run_id, backend, repetition, fault)
LEFT JOIN stale AS t USING (run_id, backend, repetition, fault)
LEFT JOIN recovery AS r USING (run_id, backend, repetition, fault)
"""

# -- suites: runs tagged with the point of a sweep they measured -----------------------------
# ``python -m orchestrator suite`` runs every point of a sweep as one run and tags it here.
# ``suites``: one row per suite id (its file's text, the target its report judges by, its
# axes with their values and base value, how it sweeps, the pairs its crossovers compare).
# ``suite_runs``: one row per run of a point: the point's name (``latency_ms=0.5
# read_share=0.9 instances=2``), the fingerprint of its workload (a point whose workload
# changed is run again), every axis's value there, the axes whose sweep it lies on, and the
# host's 1-minute load average when the run ended (how busy the machine was).
_SUITE_TABLES = """
CREATE TABLE IF NOT EXISTS suites (
    suite_id VARCHAR PRIMARY KEY,
    name VARCHAR,
    suite_yaml VARCHAR,
    target VARCHAR,
    axes JSON,
    sweep VARCHAR,
    compare JSON,
    updated_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS suite_runs (
    suite_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    point VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    axes JSON NOT NULL,
    on_axes JSON NOT NULL,
    recorded_at TIMESTAMP,
    load_avg DOUBLE
);
"""

# The run that stands for each point of a suite: its latest run that completed (with or
# without errors beyond the allowed), else its latest run whatever its status.
_SUITE_POINTS = """
CREATE OR REPLACE VIEW suite_points AS
WITH tagged AS (
    SELECT t.suite_id, t.point, t.run_id, t.fingerprint, t.axes, t.on_axes, t.load_avg,
           r.status, r.started_at,
           row_number() OVER (
               PARTITION BY t.suite_id, t.point
               ORDER BY coalesce(r.status IN ('completed', 'completed_with_errors'), false)
                        DESC, r.started_at DESC NULLS LAST, t.recorded_at DESC) AS rank
    FROM suite_runs AS t LEFT JOIN runs AS r USING (run_id)
)
SELECT suite_id, point, run_id, status, started_at, fingerprint, axes, on_axes, load_avg
FROM tagged WHERE rank = 1
"""

# Per pass of each point's run: throughput, get and set latency, stale rate, invalidation lag
# and server CPU. The CPU is the increase of the servers' ``cpu_seconds`` between the first
# and the last sample taken within the pass's measured span (warm-up and drain left out),
# divided by the operations (or writes: successful sets and deletes) that started between
# those two samples.
_SUITE_PASS_METRICS = """
CREATE OR REPLACE VIEW suite_pass_metrics AS
WITH points AS (SELECT suite_id, point, run_id FROM suite_points),
passes AS (
    SELECT p.suite_id, p.point, o.run_id, o.backend, o.repetition,
           count(*) AS ops,
           (max(o.start_ns + o.latency_ns) - min(o.start_ns)) / 1e9 AS span_s,
           min(o.start_ns) AS first_ns, max(o.start_ns + o.latency_ns) AS last_ns
    FROM points AS p JOIN ops AS o USING (run_id)
    GROUP BY ALL
),
cpu AS (
    SELECT s.run_id, s.backend, s.repetition, c.server,
           arg_max(c.value, c.ts_ns) - arg_min(c.value, c.ts_ns) AS cpu_s,
           min(c.ts_ns) AS from_ns, max(c.ts_ns) AS to_ns
    FROM passes AS s
    JOIN server_cost AS c
      ON c.run_id = s.run_id AND c.backend = s.backend AND c.repetition = s.repetition
     AND c.metric = 'cpu_seconds' AND c.ts_ns BETWEEN s.first_ns AND s.last_ns
    GROUP BY ALL
    HAVING count(*) >= 2
),
windows AS (
    SELECT run_id, backend, repetition, string_agg(server, '+' ORDER BY server) AS server,
           sum(cpu_s) AS cpu_s, min(from_ns) AS from_ns, max(to_ns) AS to_ns
    FROM cpu GROUP BY ALL
),
cost AS (
    SELECT w.run_id, w.backend, w.repetition, w.server, w.cpu_s,
           count(o.start_ns) AS window_ops,
           count(o.start_ns) FILTER (WHERE o.op IN ('set', 'delete') AND o.error IS NULL)
               AS window_writes
    FROM windows AS w
    JOIN ops AS o
      ON o.run_id = w.run_id AND o.backend = w.backend AND o.repetition = w.repetition
     AND o.start_ns >= w.from_ns AND o.start_ns < w.to_ns
    GROUP BY ALL
)
SELECT p.suite_id, p.point, p.run_id, p.backend, p.repetition, p.ops, p.span_s,
       p.ops / nullif(p.span_s, 0) AS ops_per_s,
       g.ops_per_s AS get_ops_per_s, g.p50_ms AS get_p50_ms, g.p99_ms AS get_p99_ms,
       g.local_rate,
       w.ops_per_s AS set_ops_per_s, w.p50_ms AS set_p50_ms, w.p99_ms AS set_p99_ms,
       c.stale_rate, c.stale_beyond_invalidation,
       l.p99_ms AS lag_p99_ms,
       k.server, k.cpu_s AS server_cpu_s, k.window_ops, k.window_writes,
       k.cpu_s * 1e6 / nullif(k.window_ops, 0) AS server_cpu_us_per_op,
       k.cpu_s * 1e6 / nullif(k.window_writes, 0) AS server_cpu_us_per_write
FROM passes AS p
LEFT JOIN summary_by_pass AS g
  ON g.run_id = p.run_id AND g.backend = p.backend AND g.repetition = p.repetition
 AND g.op = 'get'
LEFT JOIN summary_by_pass AS w
  ON w.run_id = p.run_id AND w.backend = p.backend AND w.repetition = p.repetition
 AND w.op = 'set'
LEFT JOIN consistency_by_pass AS c
  ON c.run_id = p.run_id AND c.backend = p.backend AND c.repetition = p.repetition
LEFT JOIN invalidation_lag_summary_by_pass AS l
  ON l.run_id = p.run_id AND l.backend = p.backend AND l.repetition = p.repetition
LEFT JOIN cost AS k
  ON k.run_id = p.run_id AND k.backend = p.backend AND k.repetition = p.repetition
"""

# The same per point and backend, every pass pooled: percentiles over all operations of the
# run (the ``summary`` view's), the stale rate and lag over all of them (``consistency``,
# ``invalidation_lag_summary``), throughput as operations over the summed spans, server CPU as
# the summed CPU over the summed operations (or writes) of the windows.
_SUITE_METRICS = """
CREATE OR REPLACE VIEW suite_metrics AS
WITH pooled AS (
    SELECT suite_id, point, run_id, backend, count(*) AS passes,
           sum(ops) / nullif(sum(span_s), 0) AS ops_per_s,
           string_agg(DISTINCT server, ',') AS server,
           sum(server_cpu_s) AS server_cpu_s,
           sum(server_cpu_s) * 1e6 / nullif(sum(window_ops), 0) AS server_cpu_us_per_op,
           sum(server_cpu_s) * 1e6 / nullif(sum(window_writes), 0) AS server_cpu_us_per_write
    FROM suite_pass_metrics GROUP BY ALL
)
SELECT p.suite_id, p.point, p.run_id, p.backend, p.passes, p.ops_per_s,
       g.ops_per_s AS get_ops_per_s, g.p50_ms AS get_p50_ms, g.p99_ms AS get_p99_ms,
       g.local_rate,
       w.ops_per_s AS set_ops_per_s, w.p50_ms AS set_p50_ms, w.p99_ms AS set_p99_ms,
       c.stale_rate, c.stale_beyond_invalidation,
       l.p99_ms AS lag_p99_ms,
       p.server, p.server_cpu_s, p.server_cpu_us_per_op, p.server_cpu_us_per_write
FROM pooled AS p
LEFT JOIN summary AS g ON g.run_id = p.run_id AND g.backend = p.backend AND g.op = 'get'
LEFT JOIN summary AS w ON w.run_id = p.run_id AND w.backend = p.backend AND w.op = 'set'
LEFT JOIN consistency AS c ON c.run_id = p.run_id AND c.backend = p.backend
LEFT JOIN invalidation_lag_summary AS l ON l.run_id = p.run_id AND l.backend = p.backend
"""
# The metrics of both views, in their column order after the keys: what a suite's report
# plots and tabulates.
SUITE_METRIC_COLUMNS = (
    "ops_per_s", "get_ops_per_s", "get_p50_ms", "get_p99_ms", "local_rate", "set_ops_per_s",
    "set_p50_ms", "set_p99_ms", "stale_rate", "stale_beyond_invalidation", "lag_p99_ms",
    "server", "server_cpu_s", "server_cpu_us_per_op", "server_cpu_us_per_write")

# -- installing ------------------------------------------------------------------------------
# Every view, in dependency order, with the tables it reads.
_VIEWS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("summary", SUMMARY_VIEW, frozenset({"ops"})),
    ("summary_by_pass", _SUMMARY_BY_PASS, frozenset({"ops"})),
    ("repeat_summary", REPEAT_SUMMARY_VIEW, frozenset({"ops"})),
    ("stale_reads", _STALE_READS, frozenset({"ops", "events", "clock_offsets"})),
    ("clock_unjudged_reads", _CLOCK_UNJUDGED_READS,
     frozenset({"ops", "events", "clock_offsets"})),
    ("consistency_by_pass", _CONSISTENCY_BY_PASS, frozenset({"ops", "events", "clock_offsets"})),
    ("consistency", _CONSISTENCY, frozenset({"ops", "events", "clock_offsets"})),
    ("invalidation_lag", _INVALIDATION_LAG, frozenset({"ops", "events", "clock_offsets"})),
    ("invalidation_lag_summary", _INVALIDATION_LAG_SUMMARY,
     frozenset({"ops", "events", "clock_offsets"})),
    ("invalidation_lag_summary_by_pass", _LAG_SUMMARY_BY_PASS,
     frozenset({"ops", "events", "clock_offsets"})),
    ("clock_summary", _CLOCK_SUMMARY, frozenset({"clock_offsets"})),
    ("fault_impact", _FAULT_IMPACT, frozenset({"ops", "events"})),
    ("stampede_events", _STAMPEDE_EVENTS, frozenset({"ops"})),
    ("stampede", _STAMPEDE, frozenset({"ops"})),
    ("server_cost_summary", _server_cost_summary_sql(), frozenset({"server_cost"})),
    ("suite_points", _SUITE_POINTS, frozenset({"suite_runs", "runs"})),
    ("suite_pass_metrics", _SUITE_PASS_METRICS,
     frozenset({"suite_runs", "runs", "ops", "events", "server_cost", "clock_offsets"})),
    ("suite_metrics", _SUITE_METRICS,
     frozenset({"suite_runs", "runs", "ops", "events", "server_cost", "clock_offsets"})),
)
VIEW_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _VIEWS)


def install(conn: Any) -> None:
    """Create the tables (if missing) and the views of a results database; record the version."""
    conn.execute(_TABLES)
    conn.execute(_SERVER_COST_TABLE)
    conn.execute(_SUITE_TABLES)
    install_views(conn)
    if conn.execute("SELECT count(*) FROM schema_info").fetchone()[0] == 0:
        conn.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION])
    else:  # an older database, now with this version's tables and views
        conn.execute("UPDATE schema_info SET version = ? WHERE version < ?",
                     [SCHEMA_VERSION, SCHEMA_VERSION])


def install_views(conn: Any, names: tuple[str, ...] = VIEW_NAMES, *,
                  temporary: bool = False) -> None:
    """Create or replace the views called ``names`` (TEMP views: for this connection only)."""
    for name, sql, _ in _VIEWS:
        if name in names:
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
        conn.execute(f"CREATE TEMP TABLE clock_offsets {_CLOCK_OFFSETS_COLUMNS}")
        tables.add("clock_offsets")
    missing = tuple(name for name, _, needs in _VIEWS if name not in views and needs <= tables)
    if missing:
        install_views(conn, missing, temporary=read_only(conn))


def read_only(conn: Any) -> bool:
    """Whether ``conn``'s database is attached read-only."""
    row = conn.execute("SELECT readonly FROM duckdb_databases() "
                       "WHERE database_name = current_database()").fetchone()
    return bool(row and row[0])


def install_threshold_results(conn: Any) -> None:
    """Create table ``threshold_results`` (if missing): it exists once thresholds were judged."""
    conn.execute(_THRESHOLD_RESULTS_TABLE)
