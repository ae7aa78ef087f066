-- Invalidation lag per pass (repetition).
{{lag_summary}}
