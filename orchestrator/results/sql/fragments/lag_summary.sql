-- The invalidation-lag summary grouped by {{keys}}.
CREATE OR REPLACE VIEW {{view}} AS
WITH unversioned_passes AS (
    SELECT DISTINCT run_id, backend, repetition FROM events
    WHERE event = 'invalidation' AND data->>'server_version' IS NULL
),
expected AS (
    SELECT {{s_keys}},
           count(DISTINCT (s.repetition, s.version)) AS writes,
           count(p.process) AS expected
    FROM ops AS s
    LEFT JOIN (SELECT DISTINCT run_id, backend, repetition, process FROM ops) AS p
      ON p.run_id = s.run_id AND p.backend = s.backend AND p.repetition = s.repetition
     AND p.process <> s.process
    LEFT JOIN unversioned_passes AS u
      ON u.run_id = s.run_id AND u.backend = s.backend AND u.repetition = s.repetition
    WHERE s.op = 'set' AND s.error IS NULL
      AND (s.server_version IS NOT NULL OR u.run_id IS NOT NULL)
    GROUP BY ALL
),
lag AS (
    SELECT {{keys}}, count(*) AS delivered,
           quantile_disc(lag_ms, 0.5) AS p50_ms,
           quantile_disc(lag_ms, 0.99) AS p99_ms,
           max(lag_ms) AS max_ms,
           avg(lag_ms) AS mean_ms,
           max(clock_uncertainty_ms) AS clock_uncertainty_ms
    FROM invalidation_lag GROUP BY ALL
)
SELECT {{e_keys}}, e.writes, e.expected,
       coalesce(l.delivered, 0) AS count,
       e.expected - coalesce(l.delivered, 0) AS missing,
       l.p50_ms, l.p99_ms, l.max_ms, l.mean_ms,
       coalesce(l.clock_uncertainty_ms, 0) AS clock_uncertainty_ms
FROM expected AS e
LEFT JOIN lag AS l USING ({{keys}})
