-- The hottest keys of the latest run: reads, writes, hit rate and local-copy rate per backend.
WITH latest AS (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)
SELECT backend, key,
       count(*) FILTER (WHERE op = 'get') AS reads,
       count(*) FILTER (WHERE op IN ('set', 'delete')) AS writes,
       round(avg(CASE WHEN hit THEN 1.0 ELSE 0.0 END) FILTER (WHERE op = 'get'), 3) AS hit_rate,
       round(avg(CASE WHEN local THEN 1.0 ELSE 0.0 END) FILTER (WHERE op = 'get'), 3)
           AS local_rate,
       round(quantile_cont(latency_ns, 0.99) FILTER (WHERE op = 'get') / 1e6, 3) AS read_p99_ms
FROM ops
WHERE run_id = (SELECT run_id FROM latest)
GROUP BY backend, key
ORDER BY reads DESC
LIMIT 20;
