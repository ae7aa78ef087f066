-- Invalidation lag (pgcache backends): for each successful set with a ``server_version`` and
-- each *other* worker process of the pass, the first ``invalidation`` event in that process
-- for the same key whose ``server_version`` is at least the set's (an ASOF join, so a
-- coalesced notification for a newer version counts as delivering the older one), and
-- ``lag = arrival_ns - set.finish_ns``. A ``local_flush`` in that process after the set
-- finished delivers it too (``via = 'flush'``), whichever comes first. The lag can be slightly
-- negative: the server commits and notifies before the writer has read the reply. A (write,
-- process) pair with neither is *missing*: expected with NOTIFY disabled, and for writes in the
-- last moments of a pass whose notification arrived after the worker stopped recording.
--
-- Without versions (Valkey), a set is delivered to another process by the first invalidation
-- of its key there at or after the set *started* (the server announces a write while it
-- executes it, before the writer reads the reply), or a flush after it finished, provided it
-- arrived before the key's next write started: anything later may announce that next write,
-- so the pair counts as missing rather than being credited with a lag it did not have. Missing
-- pairs are expected with Valkey's default tracking mode, which tells only the clients that
-- had read the key since it last changed.
--
-- Quantiles here are ``quantile_disc``: an observed value, never an interpolation.
CREATE OR REPLACE VIEW invalidation_lag AS
WITH {{uncertainty}},
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
{{arrivals}},
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
