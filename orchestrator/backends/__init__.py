"""Backend adapters: one application instance's cache client, behind one protocol.

``base``: the :class:`~orchestrator.backends.base.Backend` protocol every adapter implements.
``registry``: the backend types, the routes each uses, the preset names. One module per
adapter: ``null`` (no I/O: the harness's ceiling), ``postgres`` (pgcache), ``valkey``
(redis-py), ``valkey_client_cache`` (valkey-py with client-side caching).
"""
