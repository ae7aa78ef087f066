-- Errors of the latest run: which backend, which operation, what error, how often, when.
WITH latest AS (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)
SELECT backend, op, error, count(*) AS occurrences,
       count(DISTINCT process) AS processes,
       round((min(start_ns) - any_value(t0)) / 1e9, 3) AS first_s,
       round((max(start_ns) - any_value(t0)) / 1e9, 3) AS last_s
FROM ops
JOIN (SELECT backend, min(start_ns) AS t0 FROM ops
      WHERE run_id = (SELECT run_id FROM latest) GROUP BY backend) USING (backend)
WHERE run_id = (SELECT run_id FROM latest) AND error IS NOT NULL
GROUP BY backend, op, error
ORDER BY occurrences DESC;
