-- Every pass of a run pooled (see fragments/summary.sql).
{{summary}}
