"""Results: the log files a run writes, and the DuckDB database they end up in.

``logs``: the worker and parent log files (CSV operations and invalidations, JSON-line events).
``schema``: the database's version and the installing of its tables and views, whose SQL is
in ``sql/`` (one file each).
``store``: opening the database, the run's row, ingest, reading back.
``timeline``: a worker's timestamps mapped onto the parent's clock.
``logdir``: a run's log directory loaded as a whole (``ingest``).
``servercost``: what the servers paid during a pass.
``thresholds``: the verdict of a run's thresholds.
``failures``: a run's failed operations and their verdict.
``suites``: a suite's records: the suite, its points' runs, their metrics.
``findings``: a suite's answer from its measured points: verdicts, crossovers, extrapolation.
``interrupts``: the SQL of ``query`` and ``report`` stopped on a signal or a timeout.
"""
