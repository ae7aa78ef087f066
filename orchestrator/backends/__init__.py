"""Backend adapters: one application instance's cache client, behind one protocol.

``base``: the :class:`~orchestrator.backends.base.Backend` protocol every adapter implements.
``registry``: the backend types, the routes each uses, the preset names. One module per
adapter: ``null`` (no I/O: the harness's ceiling), ``postgres`` (pgcache), ``valkey``
(redis-py), ``valkey_tracking`` (Valkey with one tracked local cache per instance: the fair
peer of pgcache's), ``valkey_client_cache`` (valkey-py's stock client-side caching, a
reference). ``resp``: the small RESP3 client ``valkey_tracking`` speaks. ``stampede``: the
``get_or_set`` recipes of the Valkey adapters (naive, and the SET NX PX lock).
"""
