"""The benchmark orchestrator: workload YAML -> workers -> structured logs -> DuckDB.

Run ``python -m orchestrator --help``. The public pieces:
:func:`orchestrator.workload.load_workload`, :func:`orchestrator.runner.run_workload`,
:mod:`orchestrator.results` (the DuckDB schema), :mod:`orchestrator.backends` (the registry).
"""
