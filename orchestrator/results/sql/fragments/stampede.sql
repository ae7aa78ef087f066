-- A *miss event* is a successful delete of a key that readers fetch with get_or_set (op
-- 'get_or_set'); it lasts until the key's next delete (or the end of the pass). Its *loads* are
-- the loader executions (op 'load', recorded by the loader itself) of the key that started in
-- it; it is *refilled* when the first get_or_set call returned a value loaded during it (the
-- value was stored, or handed over, by then). Its *waiting readers* are the get_or_set calls
-- of the key that started between the delete and the refill (or the event's end if it was
-- never refilled) and either returned a value loaded during the event or failed: each waited
-- its latency, as nothing could answer it sooner. A call that returned an older value in that
-- time (a local copy not yet invalidated, or a read answered before the delete) did not wait.

WITH calls AS (
    SELECT run_id, backend, repetition, key, start_ns, latency_ns, version, error
    FROM ops WHERE op = 'get_or_set'
),
asked AS (
    SELECT DISTINCT run_id, backend, repetition, key FROM calls
),
deletes AS (
    SELECT d.run_id, d.backend, d.repetition, d.key, d.start_ns AS miss_ns,
           lead(d.start_ns) OVER (PARTITION BY d.run_id, d.backend, d.repetition, d.key
                                  ORDER BY d.start_ns) AS next_ns
    FROM ops AS d
    SEMI JOIN asked AS a
      ON a.run_id = d.run_id AND a.backend = d.backend AND a.repetition = d.repetition
     AND a.key = d.key
    WHERE d.op = 'delete' AND d.error IS NULL
),
pass_ends AS (
    SELECT run_id, backend, repetition, max(start_ns + latency_ns) AS end_ns
    FROM ops GROUP BY ALL
),
windows AS (
    SELECT d.run_id, d.backend, d.repetition, d.key, d.miss_ns,
           coalesce(d.next_ns, e.end_ns + 1) AS until_ns
    FROM deletes AS d JOIN pass_ends AS e USING (run_id, backend, repetition)
),
-- Each miss event's loader executions.
loads AS (
    SELECT w.run_id, w.backend, w.repetition, w.key, w.miss_ns, l.start_ns, l.latency_ns,
           l.version, l.error
    FROM windows AS w
    JOIN ops AS l
      ON l.run_id = w.run_id AND l.backend = w.backend AND l.repetition = w.repetition
     AND l.key = w.key AND l.start_ns >= w.miss_ns AND l.start_ns < w.until_ns
    WHERE l.op = 'load'
),
-- Each call of the event's time that returned a value loaded during the event.
served AS (
    SELECT l.run_id, l.backend, l.repetition, l.key, l.miss_ns, c.start_ns, c.latency_ns
    FROM loads AS l
    JOIN calls AS c
      ON c.run_id = l.run_id AND c.backend = l.backend AND c.repetition = l.repetition
     AND c.key = l.key AND c.version = l.version AND c.start_ns >= l.miss_ns
    WHERE l.error IS NULL
),
events AS (
    SELECT w.run_id, w.backend, w.repetition, w.key, w.miss_ns, w.until_ns,
           (SELECT count(*) FROM loads AS l
            WHERE l.run_id = w.run_id AND l.backend = w.backend
              AND l.repetition = w.repetition AND l.key = w.key
              AND l.miss_ns = w.miss_ns) AS loads,
           (SELECT count(l.error) FROM loads AS l
            WHERE l.run_id = w.run_id AND l.backend = w.backend
              AND l.repetition = w.repetition AND l.key = w.key
              AND l.miss_ns = w.miss_ns) AS failed_loads,
           (SELECT avg(l.latency_ns) FILTER (WHERE l.error IS NULL) / 1e6 FROM loads AS l
            WHERE l.run_id = w.run_id AND l.backend = w.backend
              AND l.repetition = w.repetition AND l.key = w.key
              AND l.miss_ns = w.miss_ns) AS mean_load_ms,
           (SELECT min(s.start_ns + s.latency_ns) FROM served AS s
            WHERE s.run_id = w.run_id AND s.backend = w.backend
              AND s.repetition = w.repetition AND s.key = w.key
              AND s.miss_ns = w.miss_ns) AS refilled_ns
    FROM windows AS w
),
waiting AS (
    SELECT e.run_id, e.backend, e.repetition, e.key, e.miss_ns, c.latency_ns, c.error
    FROM events AS e
    JOIN calls AS c
      ON c.run_id = e.run_id AND c.backend = e.backend AND c.repetition = e.repetition
     AND c.key = e.key AND c.start_ns >= e.miss_ns
     AND c.start_ns <= least(coalesce(e.refilled_ns, e.until_ns), e.until_ns - 1)
    WHERE c.error IS NOT NULL OR EXISTS (
        SELECT 1 FROM loads AS l
        WHERE l.run_id = e.run_id AND l.backend = e.backend AND l.repetition = e.repetition
          AND l.key = e.key AND l.miss_ns = e.miss_ns AND l.version = c.version
          AND l.error IS NULL)
)

