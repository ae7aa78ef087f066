-- The same per point and backend, every pass pooled: percentiles over all operations of the
-- run (the ``summary`` view's), the stale rate and lag over all of them (``consistency``,
-- ``invalidation_lag_summary``), throughput as operations over the summed spans, server CPU as
-- the summed CPU over the summed operations (or writes) of the windows.
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
