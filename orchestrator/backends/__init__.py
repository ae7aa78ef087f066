"""Backend adapters: one application instance's cache client, behind one protocol.

``base``: the :class:`~orchestrator.backends.base.Backend` protocol every adapter implements.
``registry``: the backend types, the routes each uses, the preset names.
``null``: no I/O, a dict in the worker: the harness's own ceiling.
``postgres``: pgcache, one ``PostgresCache`` per application instance.
``valkey``: Valkey through redis-py.
``valkey_tracking``: Valkey with one tracked local cache per instance, the fair peer of pgcache.
``valkey_client_cache``: valkey-py's stock client-side caching, a reference.
``resp``: the small RESP3 client ``valkey_tracking`` speaks.
``stampede``: the ``get_or_set`` recipes of the Valkey adapters (naive, SET NX PX lock).
"""
