"""The benchmark orchestrator: workload YAML -> model -> runner -> workers -> logs -> DuckDB
-> report, one way. Run ``python -m orchestrator --help``.

The packages, in the order data flows through them, then the modules:

``workload``: the workload and suite models, their validation, the YAML they are read from.
``run``: the parent process, the executors that start workers, the protocol, the workers.
``backends``: the adapters a worker measures, behind one protocol.
``results``: the log files, the DuckDB schema, ingest, server cost, verdicts.
``reports``: a run's or a suite's summary as text, and as HTML.
``services``: the servers a run talks to (embedded, kept, external), and strays removed.
``trace``: cache traces read (streamed), generated and summarised.
``pgcache_bench``: pgcache's own benchmarks (``make bench-pgcache``, ``make bench-fanout``).
``cli``: the command line.
``__main__``: ``python -m orchestrator``.
``errors``: the one error root and the exit codes.
``redaction``: passwords kept out of everything said or written.
"""
