"""Bounded memory: a generated trace of 10^6 lines (10^7 with ``-m slow``) is read and
summarised with the peak RSS growing by less than a bound that holding the operations would
break many times over.

The probe runs in a fresh interpreter, so that nothing else of the test session moves its
peak RSS; growth is the peak after the pass less the peak before it, after the imports. The
peak is Linux's ``VmHWM`` of /proc/self/status, not ``ru_maxrss``: a child keeps its parent's
``ru_maxrss`` across fork and exec (seen: 44 MiB "before" under pytest against 19 MiB from a
shell), which would hide any growth below the parent's size. The keys are uniform over 10^6,
so that about 632,000 of them are distinct: a summary that kept an exact set of them would
break the bound. Measured on a 2-core machine, 10^6 lines: 14.3 MiB (the exact key set grows
to its bound of 100,000 keys, then gives way to a 16 KiB HyperLogLog); with the exact set
unbounded instead, 91 MiB; holding 200,000 of the operations, 73 MiB.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.repo import ROOT

from orchestrator.trace import Distribution, SynthSpec, synthesize

BOUND_MIB = 40.0
_PROBE = """
import sys
from orchestrator.trace import TraceReader, summarize

def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

path, mode = sys.argv[1], sys.argv[2]
reader = TraceReader(path, instances=4)
before = peak_kib()
if mode == "summary":
    figures = summarize(reader).as_dict()
    print(figures["ops"], figures["unique_keys"]["method"], file=sys.stderr)
else:  # hold the first N operations: what a reader that loads the trace would do
    held = [op for _, op in zip(range(int(mode)), reader)]
after = peak_kib()
print((after - before) / 1024)
"""


def _trace(path: Path, ops: int) -> Path:
    spec = SynthSpec(ops=ops, keys=1_000_000, zipf=0.0, clients=50, rate=100_000.0,
                     ttl=Distribution.parse("0=1,60=2,3600=4", "--ttl"))
    synthesize(spec, path)
    return path


def _growth_mib(path: Path, mode: str, expect_ops: int | None = None) -> float:
    result = subprocess.run([sys.executable, "-c", _PROBE, str(path), mode], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=1800)
    if expect_ops is not None:  # the whole trace was read, and past the exact key bound
        assert result.stderr.split() == [str(expect_ops), "hyperloglog"]
    return float(result.stdout)


pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="the peak RSS is read from Linux's /proc")


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _trace(tmp_path_factory.mktemp("memory") / "million.csv.zst", 1_000_000)


class TestBoundedMemory:
    def test_a_million_lines(self, million: Path) -> None:
        """Reading and summarising 10^6 lines grows RSS by less than the bound."""
        assert _growth_mib(million, "summary", 1_000_000) < BOUND_MIB

    def test_the_probe_sees_a_reader_that_holds(self, million: Path) -> None:
        """The same probe, holding 200,000 of the operations, exceeds the bound: the bound
        would catch a reader or summary that keeps what it reads."""
        assert _growth_mib(million, "200000") > BOUND_MIB

    @pytest.mark.slow
    def test_ten_million_lines(self, tmp_path: Path) -> None:
        """10^7 lines: the same bound (the summary keeps nothing per line)."""
        path = _trace(tmp_path / "ten-million.csv.zst", 10_000_000)
        assert _growth_mib(path, "summary", 10_000_000) < BOUND_MIB
