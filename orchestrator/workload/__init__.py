"""The workload: what a run does, read from YAML as untrusted input and validated once.

``model``: the frozen workload model and its enums (network mode, read op, placement).
``validation``: workload data turned into the model, every problem reported with its path.
``document``: a YAML document read bounded and strict, never a crash.
``loading``: the workload file, with ``--set`` overrides applied.
``thresholds``: threshold expressions such as ``get.p99_ms < 5``, parsed once.
``suite``: a suite file: a base workload and its axes, expanded into points.
``capacity``: whether this machine can hold the workers and memory a workload asks for.
"""
