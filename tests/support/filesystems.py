"""Small file systems for tests of full and read-only disks: a tmpfs of a few MiB, mounted for
the test and unmounted after it (needs the right to mount, which root has here)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "4m") at ``path``; the calling test is skipped, with the
    reason, when this machine does not let it mount one."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = _mount("-t", "tmpfs", "-o", f"size={size}" + (",ro" if read_only else ""),
                     "tmpfs", str(path))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def resize(path: Path, size: str) -> None:
    """Give a mounted tmpfs more room (space "freed")."""
    result = _mount("-o", f"remount,size={size}", str(path))
    assert result.returncode == 0, result.stderr
