"""The run: the parent that drives the passes, the executors that place and start the
workers, and the workers that generate the load.

``runner``: the parent process, one backend pass after another.
``console``: what a run says: progress, failures, cautions, and its summary.
``signals``: SIGINT/SIGTERM of a run, noted at once and reacted to by the event loop.
``sweep``: a suite's points, one run each, in one results database.
``executor``: the seam every executor implements: placement, worker handles, reachability.
``local_executor``: workers as child processes of this host (the default).
``ray_executor``: workers as Ray actors on a cluster (``executor: ray``).
``clocks``: a remote worker's clock offset, measured NTP-style.
``protocol``: the worker's spec and the typed messages between parent and worker.
``worker``: one worker process: its application instances for one pass, in phases.
``load``: a worker's writer and reader tasks: one loop, the operation apart.
``pacer``: when each operation starts (closed loop, think time, open loop at a rate).
``recorder``: one log line per operation, its result columns and its error text.
``keys``: key and value generators, deterministic per seed and task.
``origin``: what ``get_or_set``'s loader costs (a delay, or a query on an origin table).
``network``: the parent's side of network emulation (the mode decided, the route opened).
``provenance``: the versions and the commit of a run.
"""
