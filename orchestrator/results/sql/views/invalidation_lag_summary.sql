-- Invalidation lag per run and backend, every pass pooled.
{{lag_summary}}
