-- Stale reads and their ages per pass (repetition).
{{consistency}}
