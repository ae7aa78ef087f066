-- Stale reads and their ages per run and backend, every pass pooled.
{{consistency}}
