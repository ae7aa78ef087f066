-- The run that stands for each point of a suite: its latest run that completed (with or
-- without errors beyond the allowed), else its latest run whatever its status.
CREATE OR REPLACE VIEW suite_points AS
WITH tagged AS (
    SELECT t.suite_id, t.point, t.run_id, t.fingerprint, t.axes, t.on_axes, t.load_avg,
           r.status, r.started_at,
           row_number() OVER (
               PARTITION BY t.suite_id, t.point
               ORDER BY coalesce(r.status IN ('completed', 'completed_with_errors'), false)
                        DESC, r.started_at DESC NULLS LAST, t.recorded_at DESC) AS rank
    FROM suite_runs AS t LEFT JOIN runs AS r USING (run_id)
)
SELECT suite_id, point, run_id, status, started_at, fingerprint, axes, on_axes, load_avg
FROM tagged WHERE rank = 1
