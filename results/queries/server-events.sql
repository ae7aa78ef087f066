-- The run's timeline from the parent's point of view: passes, barriers, worker exits, network
-- mode, interruptions — every event of process -1, latest run.
WITH latest AS (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)
SELECT ts, backend, repetition, level, event, data
FROM events
WHERE run_id = (SELECT run_id FROM latest) AND process = -1
ORDER BY ts_ns;
