-- Consistency per backend in the latest run: how often a read returned a superseded value,
-- how old it was, and whether any stale read happened after the invalidation had arrived
-- (stale_beyond_invalidation must be 0 for a correct pgcache).
-- python -m orchestrator query "$(cat results/queries/consistency.sql)"
WITH latest AS (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)
SELECT c.backend, c.reads, c.stale_reads, round(c.stale_rate, 5) AS stale_rate,
       c.stale_beyond_invalidation, round(c.p99_staleness_ms, 3) AS p99_staleness_ms,
       round(c.max_staleness_ms, 3) AS max_staleness_ms,
       round(l.p50_ms, 3) AS lag_p50_ms, round(l.p99_ms, 3) AS lag_p99_ms, l.missing AS lag_missing
FROM consistency c
LEFT JOIN invalidation_lag_summary l USING (run_id, backend)
WHERE c.run_id = (SELECT run_id FROM latest)
ORDER BY c.stale_rate DESC, c.backend;
