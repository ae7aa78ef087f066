-- Invalidations that reached each worker (pgcache listener), and local-cache flushes, per
-- backend and process, latest run.
WITH latest AS (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)
SELECT backend, repetition, process,
       count(*) FILTER (WHERE event = 'invalidation') AS invalidations,
       count(DISTINCT data->>'key') FILTER (WHERE event = 'invalidation') AS distinct_keys,
       count(*) FILTER (WHERE event = 'local_flush') AS local_flushes
FROM events
WHERE run_id = (SELECT run_id FROM latest) AND event IN ('invalidation', 'local_flush')
GROUP BY backend, repetition, process
ORDER BY backend, repetition, process;
