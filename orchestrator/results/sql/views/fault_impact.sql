-- A fault lasts from the moment the schedule asked Toxiproxy to apply it (its ``fault_start``
-- event's ``t_ns``, when the change had taken effect, minus how late that was: ``offset_s -
-- at_s``) to its ``fault_end`` event's ``t_ns`` (the change undone; a fault never ended counts
-- until the pass's last operation): a fault may act from the moment it is asked for. Around
-- it, in each pass:
-- * *before*: the steady state before the schedule began: the second before the pass's first
--   fault started (not before the pass's first operation). Its p99 latency (successful
--   operations started then) is the baseline of every fault of the pass: the second before a
--   later fault may still be recovering from an earlier one;
-- * *during*: operations started while it was on;
-- * *after*: operations started after it ended, until the next fault starts or the pass ends
--   (and, when a next fault starts, completed before it: one in flight then is that fault's).
-- Errors and stale reads (the ``stale_reads`` view) are counted during and after. Time to
-- recovery: from the fault's end until errors stop (the last failed operation that started
-- during or after the fault has completed) and the p99 latency of a sliding 100 ms window
-- (successful operations that started in it; the window moves in 10 ms steps from the fault's
-- end, and must lie within the after period) is back within 2x the baseline: the start of the
-- first such window. NULL when that never happened before the after period ended (or there
-- was no baseline).
CREATE OR REPLACE VIEW fault_impact AS
WITH starts AS (
    SELECT run_id, backend, repetition, (data->>'fault')::INTEGER AS fault,
           data->>'label' AS label, data->>'proxy' AS proxy, data->>'toxic' AS toxic,
           -- when the schedule asked for it (it took effect between then and t_ns)
           least(coalesce((data->>'t_ns')::BIGINT, ts_ns),
                 coalesce((data->>'t_ns')::BIGINT, ts_ns)
                 - coalesce(round(((data->>'offset_s')::DOUBLE - (data->>'at_s')::DOUBLE)
                                  * 1e9)::BIGINT, 0)) AS start_ns
    FROM events WHERE event = 'fault_start'
),
ends AS (
    SELECT run_id, backend, repetition, (data->>'fault')::INTEGER AS fault,
           min(coalesce((data->>'t_ns')::BIGINT, ts_ns)) AS end_ns
    FROM events WHERE event = 'fault_end' GROUP BY ALL
),
passes AS (
    SELECT run_id, backend, repetition, min(start_ns) AS first_ns,
           max(start_ns + latency_ns) AS last_ns
    FROM ops GROUP BY ALL
),
spans AS (
    SELECT s.*, e.end_ns, coalesce(e.end_ns, p.last_ns) AS stop_ns, p.first_ns, p.last_ns,
           min(s.start_ns) OVER pass AS first_fault_ns,
           greatest(least(coalesce(min(s.start_ns) OVER later, p.last_ns), p.last_ns),
                    coalesce(e.end_ns, p.last_ns)) AS after_until_ns
    FROM starts AS s
    JOIN passes AS p USING (run_id, backend, repetition)
    LEFT JOIN ends AS e USING (run_id, backend, repetition, fault)
    WINDOW pass AS (PARTITION BY s.run_id, s.backend, s.repetition),
           later AS (PARTITION BY s.run_id, s.backend, s.repetition ORDER BY s.start_ns
                     ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
),
baseline AS (
    SELECT s.run_id, s.backend, s.repetition, s.fault,
           quantile_cont(o.latency_ns, 0.99) / 1e6 AS baseline_p99_ms
    FROM spans AS s
    JOIN ops AS o
      ON o.run_id = s.run_id AND o.backend = s.backend AND o.repetition = s.repetition
     AND o.start_ns >= greatest(s.first_fault_ns - 1000000000, s.first_ns)
     AND o.start_ns < s.first_fault_ns AND o.error IS NULL
    GROUP BY ALL
),
counts AS (
    SELECT s.run_id, s.backend, s.repetition, s.fault,
           count(o.start_ns) FILTER (WHERE o.start_ns <= s.stop_ns) AS ops_during,
           count(o.error) FILTER (WHERE o.start_ns <= s.stop_ns) AS errors_during,
           count(o.start_ns) FILTER (WHERE o.start_ns > s.stop_ns) AS ops_after,
           count(o.error) FILTER (WHERE o.start_ns > s.stop_ns) AS errors_after,
           max(o.start_ns + o.latency_ns) FILTER (WHERE o.error IS NOT NULL) AS last_error_ns
    FROM spans AS s
    LEFT JOIN ops AS o
      ON o.run_id = s.run_id AND o.backend = s.backend AND o.repetition = s.repetition
     AND o.start_ns >= s.start_ns AND o.start_ns < s.after_until_ns
     -- an operation still running when the next fault starts is that fault's to judge
     AND (o.start_ns <= s.stop_ns OR s.after_until_ns >= s.last_ns
          OR o.start_ns + o.latency_ns < s.after_until_ns)
    GROUP BY ALL
),
stale AS (
    SELECT s.run_id, s.backend, s.repetition, s.fault,
           count(r.read_start_ns) FILTER (WHERE r.read_start_ns <= s.stop_ns) AS stale_during,
           count(r.read_start_ns) FILTER (WHERE r.read_start_ns > s.stop_ns) AS stale_after
    FROM spans AS s
    LEFT JOIN stale_reads AS r
      ON r.run_id = s.run_id AND r.backend = s.backend AND r.repetition = s.repetition
     AND r.read_start_ns >= s.start_ns AND r.read_start_ns < s.after_until_ns
    GROUP BY ALL
),
windows AS (
    SELECT run_id, backend, repetition, fault, after_until_ns,
           stop_ns + 10000000 * unnest(range(0, greatest(
               0, (after_until_ns - stop_ns - 100000000) // 10000000 + 1))) AS window_ns
    FROM spans
),
window_p99 AS (
    SELECT w.run_id, w.backend, w.repetition, w.fault, w.window_ns,
           quantile_cont(o.latency_ns, 0.99) / 1e6 AS p99_ms
    FROM windows AS w
    JOIN ops AS o
      ON o.run_id = w.run_id AND o.backend = w.backend AND o.repetition = w.repetition
     AND o.start_ns >= w.window_ns AND o.start_ns < w.window_ns + 100000000
     AND o.error IS NULL
    GROUP BY ALL
),
recovery AS (
    SELECT w.run_id, w.backend, w.repetition, w.fault, min(w.window_ns) AS recovered_ns
    FROM window_p99 AS w
    JOIN baseline AS b USING (run_id, backend, repetition, fault)
    JOIN counts AS c USING (run_id, backend, repetition, fault)
    WHERE w.p99_ms <= 2 * b.baseline_p99_ms
      AND w.window_ns >= coalesce(c.last_error_ns, w.window_ns)
    GROUP BY ALL
)
SELECT s.run_id, s.backend, s.repetition, s.fault, s.label, s.proxy, s.toxic,
       s.start_ns, s.end_ns, (s.stop_ns - s.start_ns) / 1e6 AS duration_ms,
       b.baseline_p99_ms,
       c.ops_during, c.errors_during, c.ops_after, c.errors_after,
       coalesce(t.stale_during, 0) AS stale_during, coalesce(t.stale_after, 0) AS stale_after,
       greatest(c.last_error_ns - s.stop_ns, 0) / 1e6 AS errors_stop_ms,
       r.recovered_ns, (r.recovered_ns - s.stop_ns) / 1e6 AS recovery_ms
FROM spans AS s
LEFT JOIN baseline AS b USING (run_id, backend, repetition, fault)
LEFT JOIN counts AS c USING (run_id, backend, repetition, fault)
LEFT JOIN stale AS t USING (run_id, backend, repetition, fault)
LEFT JOIN recovery AS r USING (run_id, backend, repetition, fault)
