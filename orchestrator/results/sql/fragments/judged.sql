-- The stale judgement, one template for both sides: ``lo`` is -1 for *certain* (W2's start
-- taken as early as it may be, every finish as late, the read's start as early) and +1 for
-- *possible* (the other way round). ``scope`` limits the passes judged.
writes AS (
    SELECT o.run_id, o.backend, o.repetition, o.key, o.op, o.version, o.process,
           o.server_version, o.start_ns, o.start_ns + o.latency_ns AS finish_ns,
           coalesce(c.u, 0) AS u,
           o.start_ns + {{lo}} * coalesce(c.u, 0) AS start_edge,
           o.start_ns + o.latency_ns - {{lo}} * coalesce(c.u, 0) AS finish_edge
    FROM ops AS o LEFT JOIN uncertainty AS c USING (run_id, backend, repetition, process)
    WHERE o.op IN ('set', 'delete') AND o.error IS NULL AND {{scope}}
),
-- For writes ordered by (edge) start, descending, the earliest (edge) finish among this write
-- and every write starting later (peers with an equal start share one value: RANGE frame).
suffix AS (
    SELECT run_id, backend, repetition, key, start_edge,
           min(finish_edge) OVER w AS next_finish_edge,
           arg_min(finish_ns, finish_edge) OVER w AS next_finish_ns,
           arg_min(version, finish_edge) OVER w AS next_version,
           arg_min(op, finish_edge) OVER w AS next_op,
           arg_min(process, finish_edge) OVER w AS next_process,
           arg_min(server_version, finish_edge) OVER w AS next_server_version,
           arg_min(u, finish_edge) OVER w AS next_u
    FROM writes
    WINDOW w AS (PARTITION BY run_id, backend, repetition, key ORDER BY start_edge DESC)
),
-- Each set W1 with the earliest-finishing write that started after W1 finished.
superseded AS (
    SELECT w.run_id, w.backend, w.repetition, w.key, w.version, w.finish_ns,
           s.next_finish_edge, s.next_finish_ns, s.next_version, s.next_op, s.next_process,
           s.next_server_version, s.next_u
    FROM writes AS w
    ASOF JOIN suffix AS s
      ON s.run_id = w.run_id AND s.backend = w.backend AND s.repetition = w.repetition
     AND s.key = w.key AND s.start_edge > w.finish_edge
    WHERE w.op = 'set'
),
-- Per key, the earliest-finishing write of the pass: supersedes any unrecorded W1.
first_write AS (
    SELECT run_id, backend, repetition, key,
           min(finish_edge) AS next_finish_edge,
           arg_min(finish_ns, finish_edge) AS next_finish_ns,
           arg_min(version, finish_edge) AS next_version,
           arg_min(op, finish_edge) AS next_op,
           arg_min(process, finish_edge) AS next_process,
           arg_min(server_version, finish_edge) AS next_server_version,
           arg_min(u, finish_edge) AS next_u
    FROM writes
    GROUP BY ALL
),
recorded_sets AS (
    SELECT DISTINCT run_id, backend, repetition, version
    FROM ops WHERE op = 'set' AND version IS NOT NULL
),
reads AS (
    SELECT o.run_id, o.backend, o.repetition, o.process, o.task, o.key, o.start_ns,
           o.latency_ns, o.local, o.version, coalesce(c.u, 0) AS u,
           o.start_ns + {{lo}} * coalesce(c.u, 0) AS start_edge
    FROM ops AS o LEFT JOIN uncertainty AS c USING (run_id, backend, repetition, process)
    WHERE o.op = 'get' AND o.error IS NULL AND o.version IS NOT NULL AND {{scope}}
),
judged AS (
    SELECT r.*, true AS w1_recorded, s.finish_ns AS w1_finish_ns,
           s.next_finish_ns, s.next_version, s.next_op, s.next_process, s.next_server_version,
           s.next_u
    FROM reads AS r
    JOIN superseded AS s
      ON s.run_id = r.run_id AND s.backend = r.backend AND s.repetition = r.repetition
     AND s.key = r.key AND s.version = r.version
    WHERE s.next_finish_edge < r.start_edge
    UNION ALL
    SELECT r.*, false AS w1_recorded, NULL::BIGINT AS w1_finish_ns,
           f.next_finish_ns, f.next_version, f.next_op, f.next_process, f.next_server_version,
           f.next_u
    FROM reads AS r
    ANTI JOIN recorded_sets AS k
      ON k.run_id = r.run_id AND k.backend = r.backend AND k.repetition = r.repetition
     AND k.version = r.version
    JOIN first_write AS f
      ON f.run_id = r.run_id AND f.backend = r.backend AND f.repetition = r.repetition
     AND f.key = r.key
    WHERE f.next_finish_edge < r.start_edge
)
