"""Results: the log files a run writes, and the DuckDB database they end up in.

``logs``: the worker and parent log files (CSV operations and invalidations, JSON-line events).
``schema``: every table and view of the database, and its version. ``store``: opening the
database, the run's row, ingest, reading back. ``logdir``: a run's log directory loaded as a
whole (``ingest``). ``servercost``: what the servers paid during a pass. ``thresholds``: the
verdict of a run's thresholds. ``failures``: a run's failed operations and their verdict.
``findings``: a suite's answer from its measured points (verdicts, crossovers, extrapolation).
"""
