"""`services up|status|down`: embedded servers kept running between runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.repo import ROOT

from orchestrator.services import read_state


def _services(action: str, base: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_DSN", "VALKEY_URL")}
    # Relative, as the default `.services` is: PostgreSQL, which runs in its data folder,
    # must still find its socket directory.
    env["PGCACHE_SERVICES_DIR"] = os.path.relpath(base, ROOT)
    return subprocess.run([sys.executable, "-m", "orchestrator", "services", action, *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


class TestServices:
    """Kept-running servers outlive the command and are stopped by `down`."""

    def test_up_status_down(self, tmp_path: Path) -> None:
        """up starts both, status shows them, down --purge stops them and removes data."""
        base = tmp_path / "svc"
        try:
            up = _services("up", base)
            assert up.returncode == 0, up.stderr
            state = read_state(base)
            assert set(state) == {"postgres", "valkey"}
            status = _services("status", base)
            assert "postgres: running" in status.stdout and "valkey: running" in status.stdout
            again = _services("up", base)
            assert read_state(base) == state, again.stderr  # idempotent: same servers
        finally:
            down = _services("down", base, "--purge")
        assert down.returncode == 0
        assert "postgres" in down.stdout and "valkey" in down.stdout
        assert read_state(base) == {}
        assert not base.exists()
        for entry in state.values():
            assert not Path(f"/proc/{entry['pid']}").exists() or \
                "Z" in Path(f"/proc/{entry['pid']}/stat").read_text().split()[2]

    def test_status_when_nothing_runs(self, tmp_path: Path) -> None:
        """status with no servers says so."""
        result = _services("status", tmp_path / "none")
        assert result.returncode == 0
        assert "no servers" in result.stdout
