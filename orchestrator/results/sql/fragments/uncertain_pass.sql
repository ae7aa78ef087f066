-- Whether op o lies in a pass with a clock uncertainty: clock_unjudged_reads judges only those.
EXISTS (SELECT 1 FROM uncertain_passes AS p WHERE p.run_id = o.run_id
              AND p.backend = o.backend AND p.repetition = o.repetition)
