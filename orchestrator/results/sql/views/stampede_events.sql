-- One row per miss event (see fragments/stampede.sql).
CREATE OR REPLACE VIEW stampede_events AS
{{stampede}}
SELECT e.run_id, e.backend, e.repetition, e.key, e.miss_ns, e.refilled_ns,
       (e.refilled_ns - e.miss_ns) / 1e6 AS refill_ms,
       e.loads, e.failed_loads, e.mean_load_ms,
       count(w.latency_ns) AS waiting_readers,
       count(w.error) AS errors,
       avg(w.latency_ns) / 1e6 AS mean_wait_ms,
       max(w.latency_ns) / 1e6 AS max_wait_ms
FROM events AS e
LEFT JOIN waiting AS w
  ON w.run_id = e.run_id AND w.backend = e.backend AND w.repetition = e.repetition
 AND w.key = e.key AND w.miss_ns = e.miss_ns
GROUP BY ALL
