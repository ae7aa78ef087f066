"""The run: the parent that drives the passes, and the workers that generate the load.

``runner``: the parent process, one backend pass after another. ``executor``: how workers are
started (the :class:`~orchestrator.run.executor.Executor` seam; local processes today).
``protocol``: the worker's spec and the typed messages between parent and worker. ``worker``:
one application instance. ``load``: its writer and reader tasks. ``keys``: key and value
generators. ``origin``: what ``get_or_set``'s loader costs (a delay, or a query on an origin
table). ``network``: the parent's side of network emulation. ``provenance``: versions and
commit of a run.
"""
