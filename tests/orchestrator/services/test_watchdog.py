"""orchestrator.services.watchdog and .strays: servers stopped when their owner is gone, and
the ones left behind found by their claim file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.services.processes import alive, start_ticks
from orchestrator.services.strays import PREFIX, add_server, claim, clean_strays, find_strays
from orchestrator.services.watchdog import Watchdog

# A stand-in server: a process whose command line names it, stopped by SIGTERM.
SERVER = [sys.executable, "-c", "import time; time.sleep(120)", "stand-in-server"]


@pytest.fixture
def server() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(SERVER, start_new_session=True)
    # Until the child has exec'd, its command line is still this process's: on a loaded host
    # that lasts long enough for a check by name to see the wrong program (seen at a load
    # average of 20). The tests start from a server that is what its command line says.
    deadline = time.monotonic() + 30
    while (b"stand-in-server" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
           and time.monotonic() < deadline):
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def _gone(proc: subprocess.Popen[bytes], timeout: float = 15) -> bool:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


class TestWatchdog:
    """The watchdog acts only when its owner's pipe ends without a release."""

    def test_owner_gone(self, server: subprocess.Popen[bytes], tmp_path: Path) -> None:
        """The pipe ends without a release: the server is stopped, the folder deleted."""
        folder = tmp_path / "data"
        folder.mkdir()
        watchdog = Watchdog.start()
        watchdog.watch(server.pid, signal.SIGTERM, "stand-in-server")
        watchdog.remove(folder)
        assert watchdog._proc.stdin is not None
        watchdog._proc.stdin.close()  # as when the owner dies: its end of the pipe closes
        assert _gone(server) and server.returncode == -signal.SIGTERM
        assert watchdog._proc.wait(15) == 1
        assert not folder.exists()

    def test_released(self, server: subprocess.Popen[bytes], tmp_path: Path) -> None:
        """After a release the watchdog exits and leaves everything alone."""
        watchdog = Watchdog.start()
        watchdog.watch(server.pid, signal.SIGTERM, "stand-in-server")
        watchdog.remove(tmp_path)
        watchdog.release()
        assert watchdog._proc.returncode == 0
        assert server.poll() is None and tmp_path.exists()

    def test_reused_pid_is_not_touched(self, server: subprocess.Popen[bytes]) -> None:
        """A pid that names another process than the one watched (another start time or
        command) is left alone."""
        watchdog = Watchdog.start()
        watchdog._tell({"watch": {"pid": server.pid, "started": (start_ticks(server.pid) or 0)
                                  - 1, "signal": int(signal.SIGTERM),
                                  "name": "stand-in-server"}})
        watchdog._tell({"watch": {"pid": server.pid, "started": None,
                                  "signal": int(signal.SIGTERM), "name": "postgres"}})
        assert watchdog._proc.stdin is not None
        watchdog._proc.stdin.close()
        watchdog._proc.wait(15)
        assert server.poll() is None


class TestStrays:
    """A claimed folder whose owner and watchdog are gone is a stray; cleanup removes it."""

    def test_find_and_clean(self, server: subprocess.Popen[bytes], tmp_path: Path) -> None:
        """Owner gone: listed with its running server; cleaned: server stopped, folder gone."""
        owner = subprocess.Popen([sys.executable, "-c", "pass"])
        owner.wait()
        root = tmp_path / f"{PREFIX}x"
        root.mkdir()
        claim(root, None, None)
        add_server(root, "valkey", server.pid, signal.SIGTERM, "stand-in-server")
        data = json.loads((root / "owner.json").read_text())
        assert find_strays(tmp_path) == []  # its owner (this process) runs
        data["owner"] = {"pid": owner.pid, "started": None}
        (root / "owner.json").write_text(json.dumps(data))
        (stray,) = find_strays(tmp_path)
        assert stray.running == (("valkey", server.pid),)
        assert stray.describe() == (f"stray: valkey (pid {server.pid}), left by process "
                                    f"{owner.pid} (gone), data in {root}")
        clean_strays([stray])
        assert _gone(server)
        assert not root.exists()
        assert find_strays(tmp_path) == []

    def test_unclaimed_folders_are_not_strays(self, tmp_path: Path) -> None:
        """A folder without a claim (an owner still starting, an older version) is left be."""
        (tmp_path / f"{PREFIX}y").mkdir()
        assert find_strays(tmp_path) == []


class TestProcesses:
    """A process is known by pid, start time and command line."""

    def test_alive(self, server: subprocess.Popen[bytes]) -> None:
        """Name and start time must match; a finished process is not alive."""
        started = start_ticks(server.pid)
        assert alive(server.pid, "stand-in-server", started)
        assert not alive(server.pid, "postgres")
        assert not alive(server.pid, None, (started or 0) + 1)
        server.kill()
        server.wait()
        time.sleep(0.05)
        assert not alive(server.pid)
