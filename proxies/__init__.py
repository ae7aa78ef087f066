"""Network emulation between the benchmark's workers and the servers.

``proxies.inprocess``: an asyncio TCP relay inside each worker that delays every byte.
``proxies.toxiproxy``: real TCP through Toxiproxy with latency/jitter and fault toxics.
"""
