"""The invalidation fan-out benchmark runs end to end with tiny settings."""

from __future__ import annotations

import json
import subprocess
import sys

from support.repo import ROOT


class TestFanoutBenchmark:
    def test_every_path_measured_with_every_delivery(self) -> None:
        """`python -m orchestrator.pgcache_bench.fanout` measures pgcache with its own and a
        shared listener, and the Valkey tracking peer; every invalidation reaches every instance."""
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator.pgcache_bench.fanout", "--instances", "3",
             "--rates", "200", "--seconds", "1", "--processes", "2", "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
        points = json.loads(result.stdout)
        assert [(p["path"], p["instances"]) for p in points] == [
            ("own", 3), ("shared", 3), ("valkey", 3)]
        for point in points:
            assert point["sets"] >= 150 and point["missing"] == 0, point
            assert point["lag_p99_ms"] >= 0 and point["server_cpu_s_per_1000_sets"] >= 0
