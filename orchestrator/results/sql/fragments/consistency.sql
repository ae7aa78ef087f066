-- The consistency summary grouped by {{keys}} (one scan of stale_reads).
CREATE OR REPLACE VIEW {{view}} AS
WITH gets AS (
    SELECT {{keys}},
           count(DISTINCT repetition) AS passes,
           count(*) AS reads,
           count(*) FILTER (WHERE version IS NOT NULL) AS hits,
           count(*) FILTER (WHERE local) AS local_reads
    FROM ops WHERE op = 'get' AND error IS NULL
    GROUP BY {{keys}}
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
    SELECT {{r_keys}}, count(*) AS unjudged_reads
    FROM ops AS r
    SEMI JOIN failed_only AS f ON f.run_id = r.run_id AND f.backend = r.backend AND f.repetition = r.repetition AND f.version = r.version
    WHERE r.op = 'get' AND r.error IS NULL
    GROUP BY ALL
),
clock_unjudged AS (
    SELECT {{keys}}, count(*) AS clock_unjudged_reads
    FROM clock_unjudged_reads
    GROUP BY {{keys}}
),
stale AS (
    SELECT {{keys}},
           count(*) AS stale_reads,
           count(*) FILTER (WHERE local) AS stale_local_reads,
           count(*) FILTER (WHERE beyond_invalidation) AS stale_beyond_invalidation,
           max(staleness_age_ms) AS max_staleness_ms,
           quantile_disc(staleness_age_ms, 0.99) AS p99_staleness_ms,
           quantile_disc(staleness_age_ms, 0.5) AS p50_staleness_ms
    FROM stale_reads
    GROUP BY {{keys}}
)
SELECT {{g_keys}},
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
LEFT JOIN stale AS s USING ({{keys}})
LEFT JOIN unjudged AS u USING ({{keys}})
LEFT JOIN clock_unjudged AS c USING ({{keys}})
