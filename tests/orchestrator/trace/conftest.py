"""Fixtures of the trace tests: trace files written from given lines, plain or compressed."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

WriteTrace = Callable[[str, list[str]], Path]


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, compressed as its suffix says."""
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    elif path.suffix == ".zst":
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture
def write_trace(tmp_path: Path) -> WriteTrace:
    """A function writing lines (each without its newline) to a trace file in tmp."""
    def write(name: str, lines: list[str]) -> Path:
        return write_bytes(tmp_path / name, "".join(f"{line}\n" for line in lines).encode())
    return write
