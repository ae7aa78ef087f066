-- Compare backends in the latest run: throughput, latency percentiles, hit rate, per operation.
-- python -m orchestrator query "$(cat results/queries/compare-backends.sql)"
WITH latest AS (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)
SELECT backend, op, ops, errors,
       round(ops_per_s) AS ops_per_s,
       round(mean_ms, 3) AS mean_ms, round(p50_ms, 3) AS p50_ms, round(p95_ms, 3) AS p95_ms,
       round(p99_ms, 3) AS p99_ms, round(p999_ms, 3) AS p999_ms,
       round(hit_rate, 3) AS hit_rate, round(local_rate, 3) AS local_rate
FROM summary
WHERE run_id = (SELECT run_id FROM latest)
ORDER BY op, ops_per_s DESC;
