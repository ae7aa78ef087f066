-- Per worker of a pass: its clock's offset at the start and at the end of the pass (drift =
-- the difference), and the uncertainty of its mapped timestamps.
CREATE OR REPLACE VIEW clock_summary AS
SELECT run_id, backend, repetition, process,
       any_value(node) AS node, any_value(host) AS host,
       arg_min(offset_ns, worker_ns) FILTER (WHERE stage = 'start') AS start_offset_ns,
       arg_max(offset_ns, worker_ns) FILTER (WHERE stage = 'end') AS end_offset_ns,
       arg_max(offset_ns, worker_ns) FILTER (WHERE stage = 'end')
         - arg_min(offset_ns, worker_ns) FILTER (WHERE stage = 'start') AS drift_ns,
       max(uncertainty_ns) AS uncertainty_ns,
       min(round_trip_ns) AS best_round_trip_ns
FROM clock_offsets
GROUP BY ALL
