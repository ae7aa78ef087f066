-- Repeated passes side by side: per pass figures, then their median, spread and coefficient
-- of variation (sample standard deviation / mean; NULL with a single pass). A difference
-- between backends smaller than their spread is noise.
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
