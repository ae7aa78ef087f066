"""orchestrator.run.load: a worker's tasks, against the null backend (and a client that fails)."""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path

from orchestrator.backends.base import GetResult
from orchestrator.backends.registry import create_backend
from orchestrator.results.logs import CsvRecorder
from orchestrator.run.load import Load, worker_clock
from orchestrator.run.origin import Origin
from orchestrator.run.recorder import TaskRecorder, read_tail, write_tail
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


def run_load(tmp_path: Path, spec: dict[str, object], backend_type: str = "null",
             origin: bool = False, connect: bool = True) -> tuple[Load, list[list[str]]]:
    """Run one load of ``spec`` to its end; the load and its recorded lines."""
    workload = parse_workload({"processes": 1, "keyspace": 8, "backends": ["null"], **spec})
    backend = create_backend(backend_type, backend_type, {},
                             Endpoints("", "redis://127.0.0.1:1/0", ""))
    recorder = CsvRecorder(tmp_path / "ops.csv")
    load = Load(workload, 0, 1, backend, recorder,
                Origin(workload.loader, "", 2) if origin else None)

    async def run() -> None:
        if connect:
            await backend.connect()
        try:
            await load.run(load.clock())
        finally:
            await backend.close()
            recorder.close()

    asyncio.run(run())
    return load, list(csv.reader((tmp_path / "ops.csv").read_text().splitlines()))


class TestTaskLoop:
    """Every kind of task runs one loop: its count, its ids, its failures, its loader."""

    def test_counts_and_write_ids(self, tmp_path: Path) -> None:
        """Each task runs its count; a writer's ids are process:task:1.. in order, sets and
        deletes alike; every read names a write of this run (or missed)."""
        _, rows = run_load(tmp_path, {"writers": 2, "readers": 2, "write_iterations": 30,
                                      "read_iterations": 25, "delete_ratio": 0.3})
        by_task: dict[str, list[list[str]]] = {}
        for row in rows:
            by_task.setdefault(row[0], []).append(row)
        assert {task: len(r) for task, r in by_task.items()} == {
            "0": 30, "1": 30, "2": 25, "3": 25}
        written = set()
        for task in ("0", "1"):
            assert [r[7] for r in by_task[task]] == [f"0:{task}:{n}" for n in range(1, 31)]
            assert {r[1] for r in by_task[task]} == {"set", "delete"}
            written |= {r[7] for r in by_task[task]}
        reads = by_task["2"] + by_task["3"]
        assert {r[1] for r in reads} == {"get"}
        assert all(r[5] == "0" or r[7] in written for r in reads)
        # The null backend serves every hit as a local copy.
        assert {(r[5], r[6]) for r in reads} == {("0", "0"), ("1", "1")}
        assert all(r[9] == "" for r in rows)

    def test_ids_go_on_after_the_warm_up(self, tmp_path: Path) -> None:
        """The measurement records no warm-up operation and goes on from the warm-up's write
        ids: no id is written twice."""
        load, rows = run_load(tmp_path, {"writers": 1, "readers": 1, "warmup_s": 0.2,
                                         "duration_s": 0.2,
                                         "think_time_ms": {"writes": 2, "reads": 2}})
        ids = [int(r[7].rsplit(":", 1)[1]) for r in rows if r[1] in ("set", "delete")]
        assert ids and ids[0] > 1  # the warm-up wrote 1.. and was not recorded
        assert ids == sorted(set(ids))
        assert load._seq[0] >= ids[-1]

    def test_failures_are_recorded_and_the_task_goes_on(self, tmp_path: Path) -> None:
        """A backend whose every operation fails (a client never connected): each failure is
        a line with its error (a write's with its id), counted, and the tasks run their
        counts."""
        load, rows = run_load(tmp_path, {"writers": 1, "readers": 2, "write_iterations": 3,
                                         "read_iterations": 4}, backend_type="valkey",
                              connect=False)
        assert len(rows) == 11 and load.errors == 11
        assert all(r[9] == "BackendError: valkey: backend is not connected" for r in rows)
        assert [r[7] for r in rows if r[0] == "0"] == ["0:0:1", "0:0:2", "0:0:3"]
        assert all(r[5] == "" and r[7] == "" for r in rows if r[0] != "0")

    def test_loader_executions(self, tmp_path: Path) -> None:
        """get_or_set readers: every loader execution is a ``load`` line with its id
        (process:task:L<n>), and each get_or_set names the load or write it got."""
        _, rows = run_load(tmp_path, {"writers": 1, "readers": 2, "write_iterations": 10,
                                      "read_iterations": 20, "read_op": "get_or_set",
                                      "delete_ratio": 0.5,
                                      "loader": {"type": "sleep", "ms": 0}}, origin=True)
        loads = [r for r in rows if r[1] == "load"]
        assert loads
        for task in ("1", "2"):
            ids = [r[7] for r in loads if r[0] == task]
            assert ids == [f"0:{task}:L{n}" for n in range(1, len(ids) + 1)]
        gets = [r for r in rows if r[1] == "get_or_set"]
        assert len(gets) == 40 and all(r[5] == "1" for r in gets)
        known = {r[7] for r in rows if r[1] in ("load", "set")}
        assert all(r[7] in known for r in gets)

    def test_inlined_lines_are_the_recorders(self, tmp_path: Path) -> None:
        """The task loop writes a success's line itself (an inlined copy, for speed):
        TaskRecorder.ok with read_tail or write_tail writes the same line for the same
        operation, quoted keys and local hits included."""
        _, rows = run_load(tmp_path, {"writers": 2, "readers": 3, "write_iterations": 40,
                                      "read_iterations": 40, "delete_ratio": 0.2,
                                      "key_prefix": 'k,"x'})
        assert any(r[5] == "1" for r in rows) and any(r[5] == "0" for r in rows)
        assert any(r[1] == "delete" for r in rows)
        again = CsvRecorder(tmp_path / "again.csv")
        for task, op, key, start, latency, hit, local, version, server, _ in rows:
            rec = TaskRecorder(again, int(task), quoted=True)
            if op == "get":
                value = None if hit == "0" else f"{version}|filler".encode()
                tail = read_tail(GetResult(value, local == "1"))
            else:
                tail = write_tail(version, int(server) if server else None)
            rec.ok(op, key, int(start), int(start) + int(latency), tail)
        again.close()
        assert (tmp_path / "again.csv").read_text() == (tmp_path / "ops.csv").read_text()
