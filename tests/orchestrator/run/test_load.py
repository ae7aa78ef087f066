"""orchestrator.run.load: a worker's open-loop tasks, against the null backend."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from orchestrator.backends.registry import create_backend
from orchestrator.results.logs import CsvRecorder
from orchestrator.run.load import Load, worker_clock
from orchestrator.workload.validation import parse_workload
from proxies import Endpoints

SKEW_NS = 3_000_000_000  # the worker's clock runs 3 s ahead of perf_counter_ns


class TestOpenLoop:
    """Open-loop tasks start on time by the load's own clock."""

    async def test_on_a_skewed_clock(self, tmp_path: Path) -> None:
        """On a clock 3 s ahead, the pacer still wakes each task at its intended start: the
        pass takes its duration and the operations' latencies (from the intended starts) stay
        small; woken by perf_counter_ns time, each would have started 3 s late."""
        workload = parse_workload({
            "processes": 1, "writers": 1, "readers": 2, "duration_s": 0.5, "keyspace": 8,
            "target_rate": {"reads": 400, "writes": 100}, "backends": ["null"]})
        backend = create_backend("null", "null", {}, Endpoints("", "", ""))
        recorder = CsvRecorder(tmp_path / "ops.csv")
        load = Load(workload, 0, 1, backend, recorder, clock=worker_clock(SKEW_NS))
        await backend.connect()
        started = time.monotonic()
        await load.run(load.clock() + 50_000_000)
        took = time.monotonic() - started
        await backend.close()
        recorder.close()
        rows = csv.reader((tmp_path / "ops.csv").read_text().splitlines())
        latencies_ms = [int(row[4]) / 1e6 for row in rows]
        # Woken by the wrong clock, the pass would take 3.5 s and every latency would be 3 s
        # or more: the bounds leave seconds for a loaded machine's stalls and stay below that.
        assert 0.5 <= took < 2.5
        assert len(latencies_ms) >= 200
        assert max(latencies_ms) < 1000
