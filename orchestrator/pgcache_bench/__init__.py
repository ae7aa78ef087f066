"""pgcache's own benchmarks: the library measured directly, without a workload or a run.

``microbench``: pgcache's performance targets side by side with raw asyncpg and the Valkey
clients (``make bench-pgcache``). ``fanout``: what one writer's invalidations cost as listening
instances multiply (``make bench-fanout``).
"""
