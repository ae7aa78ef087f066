"""Running ``python -m orchestrator`` as a user would: to completion, or started and watched."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator.cli import main
from orchestrator.services import Services
from support.repo import ROOT


def env_for(services: Services, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a command run against the session's servers, its state in tmp."""
    return env_for_addresses(tmp_path, services.postgres_dsn, services.valkey_url, **extra)


def env_for_addresses(tmp_path: Path, postgres_dsn: str, valkey_url: str,
                      **extra: str) -> dict[str, str]:
    """The environment of a command run against these addresses, its state in tmp."""
    env = dict(os.environ)
    env.update(POSTGRES_DSN=postgres_dsn, VALKEY_URL=valkey_url,
               PGCACHE_SERVICES_DIR=str(tmp_path / "services"), PYTHONUNBUFFERED="1",
               TMPDIR=str(tmp_path))
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command to its end. ``timeout`` only stops a command that hangs: test_cli's
    tiny run took over 120 s on a machine loaded by several test sessions (load average
    about 20 on 2 cores)."""
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def cli_here(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a command to its end in this process: what ``cli`` does without starting an
    interpreter (about a second of CPU each), for the many small cases beside a test's main
    one, which runs as a subprocess."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["python", "-m", "orchestrator", *args], code,
                                       out.getvalue(), err.getvalue())


def start(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
    """Start a command in a session of its own (so a test can signal its process group)."""
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)


def write_workload(tmp_path: Path, data: dict[str, Any], name: str = "w.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def worker_pids(log_root: Path) -> list[int]:
    """The pids of the workers the runs under ``log_root`` started (from the parent's log)."""
    pids = []
    for path in log_root.glob("*/parent.events.jsonl"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "worker_started":
                pids.append(event["data"]["pid"])
    return pids


def wait_for_ops(log_root: Path, timeout: float = 30) -> None:
    """Wait until some worker under ``log_root`` has written operations."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.stat().st_size > 0 for p in log_root.glob("*/*.ops.csv")):
            return
        time.sleep(0.05)
    raise AssertionError("no operations were recorded in time")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


def wait_until_open(proc: subprocess.Popen[str], path: Path, timeout: float = 30) -> None:
    """Wait until process ``proc`` has ``path`` open (e.g. a command has opened its results
    database, and so begun its SQL)."""
    target = path.resolve()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the command ended (exit {proc.returncode}) before it "
                                 f"opened {path}")
        with contextlib.suppress(OSError):  # a descriptor closed while being looked at
            fds = Path(f"/proc/{proc.pid}/fd")
            if any(Path(os.readlink(fd)) == target for fd in fds.iterdir()):
                return
        time.sleep(0.05)
    raise AssertionError(f"the command did not open {path} within {timeout:g} s")


def stderr_after(proc: subprocess.Popen[str], marker: str,
                 timeout: float = 60) -> tuple[str, float | None]:
    """All of ``proc``'s stderr once it ended, and how long it ran on after printing the
    line that contains ``marker`` (None if it never did)."""
    assert proc.stderr is not None
    lines: list[str] = []
    seen: list[float] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if not seen and marker in line:
                seen.append(time.monotonic())
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    ended = time.monotonic()
    reader.join(5)
    return "".join(lines), (ended - seen[0]) if seen else None


def holding(path: Path) -> list[int]:
    """The pids of the processes that hold a lock on ``path`` (DuckDB locks its database
    file while a connection is open), from /proc/locks."""
    inode = f":{path.stat().st_ino} "
    return [int(line.split()[4]) for line in Path("/proc/locks").read_text().splitlines()
            if inode in line and line.split()[4].isdigit()]
