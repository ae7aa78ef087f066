-- The summary of each pass (repetition) alone (see fragments/summary.sql).
{{summary}}
