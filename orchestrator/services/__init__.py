"""The servers a run talks to: embedded PostgreSQL 18 and Valkey 9, or external ones.

``embedded``: the servers started from PyPI wheels.
``kept``: servers kept running between runs (``services up|down|status``).
``selection``: which servers a run or a test session uses.
``endpoints``: whether the server at a configured address speaks the expected protocol.
``watchdog``: stops a run's embedded servers when the run is gone, however it ended.
``strays``: servers left behind anyway, found and removed (``services status|cleanup``).
``processes``: other processes, seen through /proc.
"""

from orchestrator.errors import ServiceError
from orchestrator.services.embedded import EmbeddedPostgres, EmbeddedValkey, free_port
from orchestrator.services.kept import read_state, services_dir, services_down, services_up
from orchestrator.services.selection import (
    COMPOSE_POSTGRES_DSN,
    COMPOSE_VALKEY_URL,
    Services,
    running_services,
    services_for_run,
)
from orchestrator.services.strays import Stray, clean_strays, find_strays

__all__ = [
    "COMPOSE_POSTGRES_DSN",
    "COMPOSE_VALKEY_URL",
    "EmbeddedPostgres",
    "EmbeddedValkey",
    "ServiceError",
    "Services",
    "Stray",
    "clean_strays",
    "find_strays",
    "free_port",
    "read_state",
    "running_services",
    "services_dir",
    "services_down",
    "services_for_run",
    "services_up",
]
