-- Invalidation arrivals (with a server version) and local-cache flushes, as workers log them.
arrivals AS (
    SELECT run_id, backend, repetition, process,
           data->>'key' AS key,
           (data->>'server_version')::BIGINT AS server_version,
           coalesce((data->>'ts_ns')::BIGINT, ts_ns) AS arrival_ns
    FROM events
    WHERE event = 'invalidation' AND data->>'server_version' IS NOT NULL
),
flushes AS (
    SELECT run_id, backend, repetition, process,
           coalesce((data->>'ts_ns')::BIGINT, ts_ns) AS flush_ns
    FROM events
    WHERE event = 'local_flush'
),
-- Invalidations without a version (Valkey's), and the passes whose workers record them.
unversioned AS (
    SELECT run_id, backend, repetition, process,
           data->>'key' AS key,
           coalesce((data->>'ts_ns')::BIGINT, ts_ns) AS arrival_ns
    FROM events
    WHERE event = 'invalidation' AND data->>'server_version' IS NULL
),
unversioned_passes AS (
    SELECT DISTINCT run_id, backend, repetition FROM unversioned
)
