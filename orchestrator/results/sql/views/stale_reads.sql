-- Consistency views over the recorded operations: stale reads and invalidation lag.
-- The views read the public tables ``ops`` and ``events``; a "pass" is one
-- ``(run_id, backend, repetition)``.
--
-- Definitions (DESIGN.md section 5), made precise here:
--
-- * A *write* is a successful ``set`` or ``delete`` (``error IS NULL``); a failed operation is
--   not a write that happened. It occupies ``[start_ns, finish_ns]`` with
--   ``finish_ns = start_ns + latency_ns``. A delete makes the key absent.
-- * A read is a successful ``get`` that returned a version (a hit). It saw write W1, the set
--   whose ``version`` it returned. It is **stale** when some write W2 to the same key in the
--   same pass started after W1 finished (``W2.start > W1.finish``) and finished before the
--   read started (``W2.finish < read.start``).
-- * Its **staleness age** is ``read.start - min(W2.finish)`` over all such W2: how long the
--   value had already been superseded when the read began. That earliest-finishing W2 is
--   reported as the superseding write.
-- * Misses are never stale. A miss returns no superseded data: after a delete it is correct,
--   and a cache may always drop an entry (TTL, eviction); its cost shows in the hit rate.
-- * A read returning a version that no recorded set of its pass wrote (a warm-up write: the
--   warm-up is not recorded) is judged as if W1 finished before the pass began, so any write to
--   the key that finished before the read supersedes it (``w1_recorded = false``). A read
--   returning a version written by a *failed* set cannot be judged (the write may have been
--   applied at any time) and is counted as ``unjudged_reads`` instead.
-- * ``beyond_invalidation`` tells a stale read that the invalidation protocol explains from one
--   it does not: TRUE when the reader's instance had already been told of the superseding
--   write W2 before the read started (an ``invalidation`` event in the reader's process for
--   W2's ``server_version`` or a newer one, or a ``local_flush`` there after W2 finished,
--   arrived earlier), or wrote W2 itself (pgcache is write-through); FALSE when that
--   invalidation arrived only after the read started (the read fell within the invalidation
--   lag); NULL when it cannot be told (W2 is a delete or has no
--   server version, as with Valkey, or no invalidation for it reached the reader).
--   For a correct pgcache, ``stale_beyond_invalidation`` is 0.
-- * Without versions (a pass whose workers record invalidations without a server version:
--   Valkey's tracking invalidations name keys only), the reader was told of W2 by the first
--   invalidation of the key reaching its process at or after W2 *finished* (or a flush after
--   it). Whichever write that invalidation announced, a correct client can no longer serve
--   W1 after it: any copy it held was dropped, and any fetch still in flight was stopped from
--   installing (so a later copy was fetched after W2 finished). TRUE when it arrived before
--   the read started, FALSE after, NULL when none arrived. (An invalidation arriving while W2
--   was in flight may announce an earlier write, so it does not count.)
--
-- Computation, linear-ish in the number of ops: for each key, writes sorted by start get the
-- suffix minimum of their finish (a window); an ASOF join gives each write W1 the earliest
-- finish of any write starting after W1 finished; each read then joins its W1 by version
-- (hash join) and is stale iff that earliest finish is before the read's start.
--
-- Quantiles here are ``quantile_disc``: an observed value, never an interpolation.
CREATE OR REPLACE VIEW stale_reads AS
WITH {{uncertainty}},
{{judged}},
{{arrivals}},
-- When the reader's instance learnt of the superseding write: its invalidation (for that
-- server version or a newer one) arriving in the reader's process.
matched AS (
    SELECT j.*, a.arrival_ns
    FROM judged AS j
    ASOF LEFT JOIN arrivals AS a
      ON a.run_id = j.run_id AND a.backend = j.backend AND a.repetition = j.repetition
     AND a.process = j.process AND a.key = j.key
     AND a.server_version >= j.next_server_version
),
-- When the reader was certainly (or possibly, within the clocks' uncertainty) told of the
-- superseding write by what came after it: a local flush, or without versions the first
-- invalidation of the key (whichever write it announced, see above).
edges AS (
    SELECT m.*, m.next_finish_ns + m.next_u + m.u AS certain_after_ns,
           m.next_finish_ns - m.next_u - m.u AS possible_after_ns
    FROM matched AS m
),
unversioned_certain AS (
    SELECT e.*, u.arrival_ns AS unversioned_certain_ns,
           p.run_id IS NOT NULL AS unversioned_pass
    FROM edges AS e
    ASOF LEFT JOIN unversioned AS u
      ON u.run_id = e.run_id AND u.backend = e.backend AND u.repetition = e.repetition
     AND u.process = e.process AND u.key = e.key AND u.arrival_ns >= e.certain_after_ns
    LEFT JOIN unversioned_passes AS p
      ON p.run_id = e.run_id AND p.backend = e.backend AND p.repetition = e.repetition
),
unversioned_possible AS (
    SELECT x.*, u.arrival_ns AS unversioned_possible_ns
    FROM unversioned_certain AS x
    ASOF LEFT JOIN unversioned AS u
      ON u.run_id = x.run_id AND u.backend = x.backend AND u.repetition = x.repetition
     AND u.process = x.process AND u.key = x.key AND u.arrival_ns >= x.possible_after_ns
),
flushed AS (
    SELECT e.*, f.flush_ns AS certain_flush_ns
    FROM unversioned_possible AS e
    ASOF LEFT JOIN flushes AS f
      ON f.run_id = e.run_id AND f.backend = e.backend AND f.repetition = e.repetition
     AND f.process = e.process AND f.flush_ns > e.certain_after_ns
),
told AS (
    SELECT x.* EXCLUDE (arrival_ns, certain_flush_ns, certain_after_ns, possible_after_ns,
                        unversioned_certain_ns, unversioned_possible_ns),
           CASE WHEN x.next_server_version IS NOT NULL
                THEN least(x.arrival_ns, x.certain_flush_ns)
                WHEN x.unversioned_pass
                THEN least(x.unversioned_certain_ns, x.certain_flush_ns)
           END AS invalidation_arrival_ns,
           CASE WHEN x.next_server_version IS NOT NULL
                THEN least(x.arrival_ns, f.flush_ns)
                WHEN x.unversioned_pass
                THEN least(x.unversioned_possible_ns, f.flush_ns) END AS maybe_told_ns
    FROM flushed AS x
    ASOF LEFT JOIN flushes AS f
      ON f.run_id = x.run_id AND f.backend = x.backend AND f.repetition = x.repetition
     AND f.process = x.process AND f.flush_ns > x.possible_after_ns
)
SELECT run_id, backend, repetition, process, task, key,
       start_ns AS read_start_ns, latency_ns AS read_latency_ns, local,
       version AS version_read, w1_recorded, w1_finish_ns,
       next_version AS superseding_version, next_op AS superseding_op,
       next_process AS superseding_process,
       next_server_version AS superseding_server_version,
       next_finish_ns AS superseding_finish_ns,
       start_ns - next_finish_ns AS staleness_age_ns,
       (start_ns - next_finish_ns) / 1e6 AS staleness_age_ms,
       invalidation_arrival_ns,
       -- Arrival and read are both the reader's own timestamps: compared exactly.
       CASE WHEN next_server_version IS NULL AND NOT unversioned_pass THEN NULL
            WHEN next_server_version IS NOT NULL AND next_process = process THEN true
            WHEN invalidation_arrival_ns < start_ns THEN true
            WHEN maybe_told_ns IS NULL OR maybe_told_ns < start_ns THEN NULL
            ELSE false END AS beyond_invalidation
FROM told
