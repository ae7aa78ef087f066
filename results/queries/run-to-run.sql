-- Run-to-run comparison: read and write figures of every completed run, per workload and
-- backend, newest first — is a change an improvement or noise?
SELECT r.workload, s.backend, r.run_id, r.started_at, r.git_commit,
       round(max(s.ops_per_s) FILTER (WHERE s.op = 'get')) AS read_ops_per_s,
       round(max(s.p99_ms) FILTER (WHERE s.op = 'get'), 3) AS read_p99_ms,
       round(max(s.ops_per_s) FILTER (WHERE s.op = 'set')) AS write_ops_per_s,
       round(max(s.p99_ms) FILTER (WHERE s.op = 'set'), 3) AS write_p99_ms,
       round(max(s.hit_rate) FILTER (WHERE s.op = 'get'), 3) AS hit_rate
FROM runs r JOIN summary s USING (run_id)
WHERE r.status = 'completed'
GROUP BY r.workload, s.backend, r.run_id, r.started_at, r.git_commit
ORDER BY r.workload, s.backend, r.started_at DESC;
