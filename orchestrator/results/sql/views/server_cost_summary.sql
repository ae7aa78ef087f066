-- How server_cost_summary reads each metric: a counter's increase over the pass, a gauge's
-- maximum. (orchestrator.results.servercost samples them.)
-- (metric_kinds: schema.METRIC_KINDS as VALUES rows.)
CREATE OR REPLACE VIEW server_cost_summary AS
WITH kinds(metric, kind) AS (VALUES {{metric_kinds}}),
steps AS (
    SELECT c.*, coalesce(k.kind, 'gauge') AS kind,
           coalesce(value - lag(value) OVER w, 0) AS step
    FROM server_cost AS c LEFT JOIN kinds AS k USING (metric)
    WINDOW w AS (PARTITION BY run_id, backend, repetition, server, metric ORDER BY ts_ns)
)
SELECT run_id, backend, repetition, server, metric, any_value(kind) AS kind,
       count(*) AS samples,
       (max(ts_ns) - min(ts_ns)) / 1e9 AS duration_s,
       arg_min(value, ts_ns) AS first_value,
       arg_max(value, ts_ns) AS last_value,
       max(value) AS max_value,
       -- A counter that went down was reset (server restart): count from zero again.
       CASE WHEN any_value(kind) = 'counter'
            THEN coalesce(sum(CASE WHEN step >= 0 THEN step ELSE value END), 0) END AS delta,
       CASE WHEN any_value(kind) = 'counter' AND max(ts_ns) > min(ts_ns)
            THEN coalesce(sum(CASE WHEN step >= 0 THEN step ELSE value END), 0)
                 / ((max(ts_ns) - min(ts_ns)) / 1e9) END AS per_s,
       CASE WHEN any_value(kind) = 'counter'
            THEN coalesce(sum(CASE WHEN step >= 0 THEN step ELSE value END), 0)
            ELSE max(value) END AS value
FROM steps
GROUP BY run_id, backend, repetition, server, metric
