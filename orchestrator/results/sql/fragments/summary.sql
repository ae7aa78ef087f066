-- Latency statistics cover successful operations; ``ops`` and ``errors`` count all of them.
-- ops_per_s divides by the summed measured span of each repetition (first start to last end
-- of that op), so idle time between repetitions is not counted. ``summary`` pools every pass
-- of a run; ``summary_by_pass`` is the same per pass (repetition).
CREATE OR REPLACE VIEW {{view}} AS
WITH spans AS (
    SELECT run_id, backend, op, repetition,
           max(start_ns + latency_ns) - min(start_ns) AS span_ns
    FROM ops GROUP BY run_id, backend, op, repetition
), total_spans AS (
    SELECT {{keys}}, sum(span_ns) AS span_ns
    FROM spans GROUP BY {{keys}}
)
SELECT {{o_keys}},
       count(*) AS ops,
       count(o.error) AS errors,
       count(*) * 1e9 / nullif(any_value(s.span_ns), 0) AS ops_per_s,
       avg(o.latency_ns) FILTER (WHERE o.error IS NULL) / 1e6 AS mean_ms,
       quantile_cont(o.latency_ns, 0.5) FILTER (WHERE o.error IS NULL) / 1e6 AS p50_ms,
       quantile_cont(o.latency_ns, 0.95) FILTER (WHERE o.error IS NULL) / 1e6 AS p95_ms,
       quantile_cont(o.latency_ns, 0.99) FILTER (WHERE o.error IS NULL) / 1e6 AS p99_ms,
       quantile_cont(o.latency_ns, 0.999) FILTER (WHERE o.error IS NULL) / 1e6 AS p999_ms,
       avg(CASE WHEN o.hit THEN 1.0 ELSE 0.0 END)
           FILTER (WHERE o.op = 'get' AND o.error IS NULL) AS hit_rate,
       avg(CASE WHEN o.local THEN 1.0 ELSE 0.0 END)
           FILTER (WHERE o.op = 'get' AND o.error IS NULL) AS local_rate
FROM ops o JOIN total_spans s USING ({{keys}})
GROUP BY {{o_keys}}
