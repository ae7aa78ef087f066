"""Which servers a run (or a test session) uses, in this order of preference.

1. ``POSTGRES_DSN`` / ``VALKEY_URL``, when set: external servers; nothing is started for them.
   The addresses documented for the compose stack are ``COMPOSE_POSTGRES_DSN`` and
   ``COMPOSE_VALKEY_URL``.
2. Servers kept running by ``services up`` (:mod:`orchestrator.services.kept`).
3. Embedded servers started for this run only, in a temporary folder removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ServiceError
from orchestrator.services import strays
from orchestrator.services.embedded import EmbeddedPostgres, EmbeddedValkey
from orchestrator.services.endpoints import check_postgres, check_valkey
from orchestrator.services.kept import read_state
from orchestrator.services.watchdog import Watchdog

COMPOSE_POSTGRES_DSN = "postgresql://cache_user:cache_pass@localhost:15432/cache_proto"
COMPOSE_VALKEY_URL = "redis://localhost:16379/0"


@dataclass
class Services:
    """The DSN/URL in use and, for embedded servers, the servers themselves."""

    postgres_dsn: str
    valkey_url: str
    postgres: EmbeddedPostgres | None = None
    valkey: EmbeddedValkey | None = None

    @property
    def description(self) -> str:
        pg = "embedded PostgreSQL" if self.postgres else "external PostgreSQL"
        vk = "embedded Valkey" if self.valkey else "external Valkey"
        return f"{pg} at {self.postgres_dsn}, {vk} at {self.valkey_url}"


def _temporary_dir() -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=strays.PREFIX))
    except OSError as exc:
        raise ServiceError(f"cannot create a temporary directory for the servers: "
                           f"{exc.strerror or exc}") from exc


@contextlib.contextmanager
def running_services(base_dir: Path | None = None, *, need_postgres: bool = True,
                     need_valkey: bool = True) -> Iterator[Services]:
    """Yield the servers to use: ``POSTGRES_DSN``/``VALKEY_URL`` if set, else embedded ones.

    Embedded servers get a temporary data folder (under ``base_dir`` if given) that is
    removed, with the servers stopped, when the block exits.
    """
    owned_dir = base_dir is None
    root = base_dir if base_dir is not None else _temporary_dir()
    pg: EmbeddedPostgres | None = None
    vk: EmbeddedValkey | None = None
    watchdog: Watchdog | None = None
    dsn = os.environ.get("POSTGRES_DSN", "")
    url = os.environ.get("VALKEY_URL", "")

    def guard(name: str, sig: int, binary: str) -> Callable[[int], None]:
        """What a server's start tells: the watchdog, and the folder's claim file."""
        def watch(pid: int) -> None:
            if watchdog is not None:
                watchdog.watch(pid, sig, binary)
            strays.add_server(root, name, pid, sig, binary)
        return watch

    try:
        if (not dsn and need_postgres) or (not url and need_valkey):
            # Embedded servers stop with their owner, however it ends.
            watchdog = Watchdog.start()
            if owned_dir:
                watchdog.remove(root)
            strays.claim(root, watchdog.pid, watchdog.started)
        if not dsn and need_postgres:
            pg = EmbeddedPostgres(root / "postgres",
                                  watch=guard("postgres", signal.SIGINT, "postgres"))
            dsn = pg.start()
        if not url and need_valkey:
            vk = EmbeddedValkey(root / "valkey",
                                watch=guard("valkey", signal.SIGTERM, "valkey-server"))
            url = vk.start()
        yield Services(dsn, url, pg, vk)
    finally:
        if vk is not None:
            vk.stop()
        if pg is not None:
            pg.stop()
        if owned_dir:
            shutil.rmtree(root, ignore_errors=True)
        if watchdog is not None:
            watchdog.release()


@contextlib.contextmanager
def services_for_run(*, need_postgres: bool, need_valkey: bool,
                     say: Callable[[str], None] = print) -> Iterator[Services]:
    """The servers for one benchmark run, in this order of preference: ``POSTGRES_DSN`` /
    ``VALKEY_URL``; servers kept running by ``services up``; embedded ones for this run only."""
    kept = read_state()
    env: dict[str, str] = {}
    for var, name in (("POSTGRES_DSN", "postgres"), ("VALKEY_URL", "valkey")):
        if not os.environ.get(var) and name in kept:
            env[var] = str(kept[name]["url"])
    saved = {var: os.environ.get(var) for var in env}
    os.environ.update(env)
    try:
        with running_services(need_postgres=need_postgres, need_valkey=need_valkey) as svc:
            parts = []
            if need_postgres:
                parts.append(_origin("PostgreSQL", "POSTGRES_DSN", env, svc.postgres is not None,
                                     svc.postgres_dsn))
            if need_valkey:
                parts.append(_origin("Valkey", "VALKEY_URL", env, svc.valkey is not None,
                                     svc.valkey_url))
            if parts:
                say("services: " + "; ".join(parts))
            # Servers started here speak their protocol; an address given may not.
            if need_postgres and svc.postgres is None:
                check_postgres(svc.postgres_dsn, _source("POSTGRES_DSN", env))
            if need_valkey and svc.valkey is None:
                check_valkey(svc.valkey_url, _source("VALKEY_URL", env))
            yield svc
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _source(var: str, kept_env: dict[str, str]) -> str:
    return f"the state of `services up` ({var})" if var in kept_env else f"${var}"


def _origin(what: str, var: str, kept_env: dict[str, str], embedded: bool, url: str) -> str:
    if embedded:
        return f"embedded {what} for this run at {url}"
    if var in kept_env:
        return f"{what} kept running by `services up` at {url}"
    return f"{what} from ${var} at {url}"
