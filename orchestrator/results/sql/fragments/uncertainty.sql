-- Clocks (schema version 2). A worker on a clock of its own (another host) has its timestamps
-- mapped onto the parent's at ingest, each within +/- its ``uncertainty_ns`` (table
-- ``clock_offsets``; a worker without rows shares the parent's clock: 0). A comparison of two
-- timestamps is *certain* when it holds however far each is off within its uncertainty
-- (``a < b`` certain iff ``a + u_a < b - u_b``), *possible* when it holds for some such error.
-- A read is stale when a superseding W2 certainly exists; fresh when none possibly does;
-- otherwise it is unjudged (``clock_unjudged_reads``), never guessed. Two timestamps of one
-- worker get the margin too (conservative: they share a clock). With every uncertainty 0 both
-- coincide, and the views are those of version 1.
uncertainty AS (
    SELECT run_id, backend, repetition, process, max(uncertainty_ns) AS u
    FROM clock_offsets GROUP BY ALL
)
