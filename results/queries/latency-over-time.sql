-- Latency and throughput over time, per 100 ms bucket of the measurement, latest run.
-- Shows warm-up effects, stalls, and (with faults) what happened during each fault.
WITH latest AS (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1),
pass_start AS (
    SELECT backend, repetition, min(start_ns) AS t0
    FROM ops WHERE run_id = (SELECT run_id FROM latest)
    GROUP BY backend, repetition
)
SELECT o.backend, o.repetition, o.op,
       (o.start_ns - p.t0) // 100000000 * 0.1 AS second,
       count(*) AS ops,
       count(*) * 10 AS ops_per_s,
       round(quantile_cont(o.latency_ns, 0.5) / 1e6, 3) AS p50_ms,
       round(quantile_cont(o.latency_ns, 0.99) / 1e6, 3) AS p99_ms,
       count(o.error) AS errors
FROM ops o JOIN pass_start p USING (backend, repetition)
WHERE o.run_id = (SELECT run_id FROM latest)
GROUP BY ALL
ORDER BY o.backend, o.repetition, o.op, second;
