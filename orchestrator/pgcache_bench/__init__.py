"""pgcache's own benchmarks: the library measured directly, without a workload or a run.

``microbench``: pgcache's targets beside raw asyncpg and the Valkey clients (bench-pgcache).
``fanout``: one writer's invalidations as listening instances multiply (bench-fanout).
"""
