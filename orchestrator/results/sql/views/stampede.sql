-- Miss events per run and backend (see fragments/stampede.sql).
CREATE OR REPLACE VIEW stampede AS
{{stampede}},
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
