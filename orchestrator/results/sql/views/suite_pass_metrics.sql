-- Per pass of each point's run: throughput, get and set latency, stale rate, invalidation lag
-- and server CPU. The CPU is the increase of the servers' ``cpu_seconds`` between the first
-- and the last sample taken within the pass's measured span (warm-up and drain left out),
-- divided by the operations (or writes: successful sets and deletes) that started between
-- those two samples.
CREATE OR REPLACE VIEW suite_pass_metrics AS
WITH points AS (SELECT suite_id, point, run_id FROM suite_points),
passes AS (
    SELECT p.suite_id, p.point, o.run_id, o.backend, o.repetition,
           count(*) AS ops,
           (max(o.start_ns + o.latency_ns) - min(o.start_ns)) / 1e9 AS span_s,
           min(o.start_ns) AS first_ns, max(o.start_ns + o.latency_ns) AS last_ns
    FROM points AS p JOIN ops AS o USING (run_id)
    GROUP BY ALL
),
cpu AS (
    SELECT s.run_id, s.backend, s.repetition, c.server,
           arg_max(c.value, c.ts_ns) - arg_min(c.value, c.ts_ns) AS cpu_s,
           min(c.ts_ns) AS from_ns, max(c.ts_ns) AS to_ns
    FROM passes AS s
    JOIN server_cost AS c
      ON c.run_id = s.run_id AND c.backend = s.backend AND c.repetition = s.repetition
     AND c.metric = 'cpu_seconds' AND c.ts_ns BETWEEN s.first_ns AND s.last_ns
    GROUP BY ALL
    HAVING count(*) >= 2
),
windows AS (
    SELECT run_id, backend, repetition, string_agg(server, '+' ORDER BY server) AS server,
           sum(cpu_s) AS cpu_s, min(from_ns) AS from_ns, max(to_ns) AS to_ns
    FROM cpu GROUP BY ALL
),
cost AS (
    SELECT w.run_id, w.backend, w.repetition, w.server, w.cpu_s,
           count(o.start_ns) AS window_ops,
           count(o.start_ns) FILTER (WHERE o.op IN ('set', 'delete') AND o.error IS NULL)
               AS window_writes
    FROM windows AS w
    JOIN ops AS o
      ON o.run_id = w.run_id AND o.backend = w.backend AND o.repetition = w.repetition
     AND o.start_ns >= w.from_ns AND o.start_ns < w.to_ns
    GROUP BY ALL
)
SELECT p.suite_id, p.point, p.run_id, p.backend, p.repetition, p.ops, p.span_s,
       p.ops / nullif(p.span_s, 0) AS ops_per_s,
       g.ops_per_s AS get_ops_per_s, g.p50_ms AS get_p50_ms, g.p99_ms AS get_p99_ms,
       g.local_rate,
       w.ops_per_s AS set_ops_per_s, w.p50_ms AS set_p50_ms, w.p99_ms AS set_p99_ms,
       c.stale_rate, c.stale_beyond_invalidation,
       l.p99_ms AS lag_p99_ms,
       k.server, k.cpu_s AS server_cpu_s, k.window_ops, k.window_writes,
       k.cpu_s * 1e6 / nullif(k.window_ops, 0) AS server_cpu_us_per_op,
       k.cpu_s * 1e6 / nullif(k.window_writes, 0) AS server_cpu_us_per_write
FROM passes AS p
LEFT JOIN summary_by_pass AS g
  ON g.run_id = p.run_id AND g.backend = p.backend AND g.repetition = p.repetition
 AND g.op = 'get'
LEFT JOIN summary_by_pass AS w
  ON w.run_id = p.run_id AND w.backend = p.backend AND w.repetition = p.repetition
 AND w.op = 'set'
LEFT JOIN consistency_by_pass AS c
  ON c.run_id = p.run_id AND c.backend = p.backend AND c.repetition = p.repetition
LEFT JOIN invalidation_lag_summary_by_pass AS l
  ON l.run_id = p.run_id AND l.backend = p.backend AND l.repetition = p.repetition
LEFT JOIN cost AS k
  ON k.run_id = p.run_id AND k.backend = p.backend AND k.repetition = p.repetition
