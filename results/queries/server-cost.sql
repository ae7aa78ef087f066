-- What the servers paid for each backend pass of the latest run: PostgreSQL commits, WAL,
-- NOTIFY queue, dead tuples, CPU; Valkey commands, memory, tracking keys, CPU.
-- python -m orchestrator query "$(cat results/queries/server-cost.sql)"
WITH latest AS (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)
SELECT backend, repetition, server, metric, kind, round(value, 3) AS value,
       round(per_s, 1) AS per_s
FROM server_cost_summary
WHERE run_id = (SELECT run_id FROM latest)
  AND metric IN ('xact_commit', 'wal_bytes', 'notification_queue_usage', 'dead_tuples',
                 'lock_waiting_backends', 'cpu_seconds', 'total_commands_processed',
                 'used_memory', 'tracking_total_keys')
ORDER BY backend, repetition, server, metric;
