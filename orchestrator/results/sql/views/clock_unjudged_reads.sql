-- Reads a superseding write possibly but not certainly made stale: unjudged, because the
-- clocks' uncertainty covers the difference. Only passes with a clock uncertainty are looked at.
CREATE OR REPLACE VIEW clock_unjudged_reads AS
WITH {{uncertainty}},
uncertain_passes AS (
    SELECT DISTINCT run_id, backend, repetition FROM uncertainty WHERE u > 0
),
{{judged}}
SELECT j.run_id, j.backend, j.repetition, j.process, j.task, j.key,
       j.start_ns AS read_start_ns, j.version AS version_read,
       j.next_version AS superseding_version, j.next_process AS superseding_process,
       j.next_finish_ns AS superseding_finish_ns,
       (j.start_ns - j.next_finish_ns) / 1e6 AS staleness_age_ms,
       (j.u + j.next_u) / 1e6 AS clock_uncertainty_ms
FROM judged AS j
ANTI JOIN stale_reads AS s
  ON s.run_id = j.run_id AND s.backend = j.backend AND s.repetition = j.repetition
 AND s.process = j.process AND s.task = j.task AND s.read_start_ns = j.start_ns
