"""The benchmark orchestrator: workload YAML -> model -> runner -> workers -> logs -> DuckDB
-> report, one way.

Run ``python -m orchestrator --help``. The packages, in the order data flows through them:
``workload`` (the model and its validation), ``run`` (the parent, the executor that starts
workers, the worker protocol, the workers), ``backends`` (the adapters a worker measures),
``results`` (log files, the DuckDB schema, ingest, server cost, thresholds) and ``reports``
(table, HTML). ``services`` starts the servers (and stops those a run left behind); ``cli``
is the command line; ``errors`` is the one error root; ``redaction`` keeps passwords out of
everything written.
"""
