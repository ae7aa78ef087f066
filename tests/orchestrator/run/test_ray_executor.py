"""orchestrator.run.ray_executor: workers as Ray actors on a real two-node Ray cluster.

The cluster (``ray_cluster``) is started once per session. The default workload runs through
the command line on it; a second, in-process run injects a clock skew into one worker, and the
ingest's clock mapping is checked against the ground truth (its files with the skew taken out).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import structlog
from support.commands import cli, env_for, start, wait_for_ops, write_workload
from support.ray_fixtures import NODE_CPUS, RayCluster
from support.repo import ROOT

from orchestrator.errors import UsageError
from orchestrator.results import store
from orchestrator.results.logdir import ingest_log_dir
from orchestrator.run.ray_executor import ClusterError, RayExecutor
from orchestrator.run.runner import RunOptions, run_workload
from orchestrator.services import Services
from orchestrator.workload.validation import parse_workload

SKEW_NS = 3_000_000_000  # worker 1's clock runs 3 s ahead


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def default_run(ray_cluster: RayCluster, services: Services,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """workloads/default.yaml, unchanged, with --executor ray on the two-node cluster."""
    tmp = tmp_path_factory.mktemp("ray-default")
    db = tmp / "r.duckdb"
    started = time.monotonic()
    result = cli("run", str(ROOT / "workloads" / "default.yaml"), "--executor", "ray",
                 "--results", str(db), env=env_for(services, tmp, **ray_cluster.env()),
                 timeout=300)
    return {"result": result, "db": db, "seconds": time.monotonic() - started}


class TestDefaultWorkloadOnRay:
    """The default workload runs end to end with executor ray, on both nodes."""

    def test_completes_with_every_operation(self, default_run: dict[str, Any]) -> None:
        """Exit 0; each backend has the default workload's 32,000 operations ingested."""
        result = default_run["result"]
        assert result.returncode == 0, result.stderr[-3000:]
        assert "executor ray: " in result.stderr
        assert _query(default_run["db"], "SELECT backend, count(*) FROM ops GROUP BY ALL "
                                         "ORDER BY 1") == [
            ("postgres-cache", 32_000), ("postgres-no-local-cache", 32_000),
            ("postgres-no-notify", 32_000), ("valkey", 32_000)]

    def test_actors_on_both_nodes(self, default_run: dict[str, Any]) -> None:
        """Every pass had its workers on the cluster's two nodes (one per node: SPREAD)."""
        rows = _query(default_run["db"], "SELECT backend, count(DISTINCT node), "
                                         "count(DISTINCT process) FROM clock_summary "
                                         "GROUP BY ALL")
        assert len(rows) == 4
        assert all(nodes == 2 and processes >= 2 for _, nodes, processes in rows)
        placement = _query(default_run["db"], "SELECT data->>'nodes' FROM events "
                                              "WHERE event = 'placement'")
        assert placement == [("2",)]

    def test_clock_offsets_within_their_uncertainty(self, default_run: dict[str, Any]) -> None:
        """Each worker's offset was measured at the start and the end of its pass; one host
        has one clock, so each offset is 0 within its uncertainty (half a round trip)."""
        rows = _query(default_run["db"], "SELECT stage, offset_ns, uncertainty_ns, "
                                         "round_trips FROM clock_offsets")
        assert sorted({stage for stage, *_ in rows}) == ["end", "start"]
        assert len(rows) == 2 * _query(default_run["db"], "SELECT count(*) FROM "
                                       "clock_summary")[0][0]
        for _, offset, uncertainty, trips in rows:
            assert 0 < uncertainty < 5_000_000 and trips == 16
            assert abs(offset) <= uncertainty
        via = _query(default_run["db"], "SELECT DISTINCT data->>'via' FROM events "
                                        "WHERE event = 'clock_offset'")
        assert via == [("direct",)]

    def test_consistency_views_populated(self, default_run: dict[str, Any]) -> None:
        """The consistency and invalidation-lag views have the expected shape."""
        db = default_run["db"]
        consistency = {r[0]: r[1:] for r in _query(
            db, "SELECT backend, reads, stale_reads, stale_beyond_invalidation "
                "FROM consistency")}
        assert all(reads == 25_600 for reads, _, _ in consistency.values())
        assert consistency["valkey"][1] == 0
        assert consistency["postgres-no-local-cache"][1] == 0
        assert consistency["postgres-no-notify"][1] > 0
        assert consistency["postgres-cache"][2] == 0
        lag = _query(db, "SELECT count, clock_uncertainty_ms FROM invalidation_lag_summary "
                         "WHERE backend = 'postgres-cache'")
        assert lag and lag[0][0] > 0 and lag[0][1] > 0


class TestFailures:
    """A dead actor and Ctrl-C end a Ray run as they end a local one."""

    def _start(self, cluster: RayCluster, services: Services, tmp_path: Path) -> Any:
        path = write_workload(tmp_path, {"processes": 2, "writers": 2, "readers": 2,
                                         "duration_s": 60, "think_time_ms": 0.5,
                                         "backends": ["null", "valkey"], "executor": "ray"})
        return start(["run", str(path), "--results", str(tmp_path / "r.duckdb")],
                     env_for(services, tmp_path, **cluster.env()))

    def test_killed_actor_fails_the_run(self, ray_cluster: RayCluster, services: Services,
                                        tmp_path: Path) -> None:
        """An actor killed mid-run: the run is failed (exit 1) and says which worker died and
        why; the other worker stops; what both shipped is ingested."""
        proc = self._start(ray_cluster, services, tmp_path)
        try:
            wait_for_ops(tmp_path / "logs", timeout=60)
            time.sleep(0.5)
            events = next((tmp_path / "logs").glob("*/parent.events.jsonl"))
            pid = next(json.loads(line)["data"]["pid"] for line in events.read_text()
                       .splitlines() if json.loads(line)["event"] == "worker_started")
            os.kill(pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1, err[-2000:]
        assert "exited with code 1" in err and "its Ray actor ended" in err
        assert "Traceback" not in err
        db = tmp_path / "r.duckdb"
        assert _query(db, "SELECT status FROM runs") == [("failed",)]
        by_process = dict(_query(db, "SELECT process, count(*) FROM ops GROUP BY ALL"))
        assert by_process.get(0, 0) > 0 and by_process.get(1, 0) > 0
        assert _query(db, "SELECT DISTINCT backend FROM ops") == [("null",)]

    def test_ctrl_c_interrupts(self, ray_cluster: RayCluster, services: Services,
                               tmp_path: Path) -> None:
        """SIGINT: the actors stop, what they measured is ingested, exit 130."""
        proc = self._start(ray_cluster, services, tmp_path)
        try:
            wait_for_ops(tmp_path / "logs", timeout=60)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err[-2000:]
        db = tmp_path / "r.duckdb"
        assert _query(db, "SELECT status FROM runs") == [("interrupted",)]
        assert _query(db, "SELECT count(DISTINCT process) FROM ops") == [(2,)]


class TestRayClient:
    """A parent outside the cluster connects through the Ray client (``ray://``)."""

    def test_run_through_the_client(self, ray_cluster: RayCluster, services: Services,
                                    tmp_path: Path) -> None:
        """--ray-address ray://HOST:PORT: the run completes, its files shipped home."""
        path = write_workload(tmp_path, {"processes": 2, "writers": 2, "readers": 2,
                                         "write_iterations": 50, "read_iterations": 50,
                                         "backends": ["null"]})
        db = tmp_path / "r.duckdb"
        env = env_for(services, tmp_path, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
        env.pop("RAY_ADDRESS", None)
        result = cli("run", str(path), "--ray-address", ray_cluster.client_address,
                     "--results", str(db), env=env, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        assert _query(db, "SELECT count(*), count(DISTINCT process) FROM ops") == [(200, 2)]
        assert _query(db, "SELECT count(*) FROM clock_offsets") == [(4,)]


class TestInstances:
    """Several application instances per worker, on Ray as locally."""

    def test_every_instance_comes_home(self, ray_cluster: RayCluster, services: Services,
                                       tmp_path: Path) -> None:
        """Two actors of two instances each: every instance's operations are shipped home and
        ingested under its own number, with its worker's clock offsets."""
        path = write_workload(tmp_path, {"processes": 2, "instances_per_process": 2,
                                         "writers": 4, "readers": 4, "write_iterations": 25,
                                         "read_iterations": 25, "backends": ["null"],
                                         "executor": "ray"})
        db = tmp_path / "r.duckdb"
        result = cli("run", str(path), "--results", str(db),
                     env=env_for(services, tmp_path, **ray_cluster.env()), timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        assert _query(db, "SELECT process, count(*) FROM ops GROUP BY ALL ORDER BY 1") == [
            (0, 50), (1, 50), (2, 50), (3, 50)]
        assert _query(db, "SELECT DISTINCT process FROM clock_offsets ORDER BY 1") == [
            (0,), (1,), (2,), (3,)]
        offsets = _query(db, "SELECT stage, process // 2, count(DISTINCT offset_ns) FROM "
                             "clock_offsets GROUP BY ALL")
        assert offsets and all(count == 1 for _, _, count in offsets)


class TestPlacement:
    """The placement group follows the strategy and the workers per node."""

    def test_strict_spread_with_two_workers_per_node(self, ray_cluster: RayCluster) -> None:
        """Four workers, two per node, STRICT_SPREAD: slots 0-1 on one node, 2-3 on the
        other."""
        executor = RayExecutor(ray_cluster.address, strategy="STRICT_SPREAD",
                               workers_per_node=2, cpus_per_worker=0.5)

        async def reserve() -> list[str]:
            async with executor.reserve(4) as placement:
                return [slot.node for slot in placement.slots]

        nodes = asyncio.run(reserve())
        assert nodes[0] == nodes[1] and nodes[2] == nodes[3] and nodes[0] != nodes[2]

    def test_unplaceable_says_why(self, ray_cluster: RayCluster) -> None:
        """Three bundles with STRICT_SPREAD on two nodes cannot be placed: a ClusterError
        that says what was asked and what the cluster has."""
        executor = RayExecutor(ray_cluster.address, strategy="STRICT_SPREAD",
                               cpus_per_worker=0.5, placement_timeout_s=2)

        async def reserve() -> None:
            async with executor.reserve(3):
                pass

        with pytest.raises(ClusterError, match=r"cannot place 3 workers.*STRICT_SPREAD.*"
                                               r"2 live node\(s\)"):
            asyncio.run(reserve())


class TestLostNode:
    """A node lost mid-run is a worker that died. (Last of the live-cluster tests: its node
    is gone afterwards.)"""

    def test_lost_node_fails_the_run(self, ray_cluster: RayCluster, services: Services,
                                     tmp_path: Path) -> None:
        """Three workers, STRICT_SPREAD over three nodes; the third node is lost (its raylet
        killed): the run is failed (exit 1) naming that worker; the others stop; what every
        worker shipped before is ingested."""
        node = ray_cluster.cluster.add_node(num_cpus=NODE_CPUS)
        ray_cluster.cluster.wait_for_nodes()
        path = write_workload(tmp_path, {
            "processes": 3, "writers": 3, "readers": 3, "duration_s": 60,
            "think_time_ms": 0.5, "backends": ["null"], "executor": "ray",
            "placement": {"strategy": "STRICT_SPREAD", "cpus_per_worker": 0.5}})
        proc = start(["run", str(path), "--results", str(tmp_path / "r.duckdb")],
                     env_for(services, tmp_path, **ray_cluster.env()))
        try:
            wait_for_ops(tmp_path / "logs", timeout=60)
            time.sleep(0.5)
            events = next((tmp_path / "logs").glob("*/parent.events.jsonl"))
            lost = next(json.loads(line)["process"] for line in events.read_text()
                        .splitlines() if json.loads(line)["event"] == "worker_started"
                        and json.loads(line)["data"].get("node") == node.node_id)
            started = time.monotonic()
            ray_cluster.cluster.remove_node(node, allow_graceful=False)
            _, err = proc.communicate(timeout=120)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1, err[-2000:]
        assert f"worker {lost} (" in err and "its Ray actor ended" in err, err[-2000:]
        db = tmp_path / "r.duckdb"
        assert _query(db, "SELECT status FROM runs") == [("failed",)]
        assert _query(db, "SELECT count(DISTINCT process) FROM ops") == [(3,)]
        print(f"\nlost node noticed and the run ended in {took:.1f} s")


# -- clocks: a skew injected into worker 1, mapped away at ingest ---------------------------

def _shift_worker(log_dir: Path, stem: str, delta: int) -> None:
    """Move every timestamp the worker ``stem`` recorded by ``delta`` ns (the ground truth of
    a skewed worker is its files shifted back by the skew)."""
    ops = log_dir / f"{stem}.ops.csv"
    lines = []
    for line in ops.read_text().splitlines(keepends=True):
        fields = line.split(",")
        fields[3] = str(int(fields[3]) + delta)
        lines.append(",".join(fields))
    ops.write_text("".join(lines))
    arrivals = log_dir / f"{stem}.invalidations.csv"
    lines = []
    for line in arrivals.read_text().splitlines(keepends=True):
        fields = line.rsplit(",", 2)
        fields[1] = str(int(fields[1]) + delta)
        lines.append(",".join(fields))
    arrivals.write_text("".join(lines))
    events = log_dir / f"{stem}.events.jsonl"
    out = []
    for line in events.read_text().splitlines():
        event = json.loads(line)
        event["ts_ns"] += delta
        for name in ("ts_ns", "start_ns", "until_ns"):
            if isinstance(event["data"].get(name), int):
                event["data"][name] += delta
        out.append(json.dumps(event) + "\n")
    events.write_text("".join(out))


def _set_offsets(log_dir: Path, offsets: dict[int, int],
                 uncertainty: int | None = None) -> None:
    """Rewrite every clock file: a fixed offset per process (and an uncertainty)."""
    for path in log_dir.glob("*.clock.csv"):
        process = int(path.name.split(".p")[-1].split(".")[0])
        lines = []
        for line in path.read_text().splitlines():
            fields = line.split(",")
            fields[2] = str(offsets[process])
            if uncertainty is not None:
                fields[3] = str(uncertainty)
            lines.append(",".join(fields) + "\n")
        path.write_text("".join(lines))


def _ingest_copy(log_dir: Path, where: Path) -> Path:
    """The run's log directory copied under ``where`` and ingested into a new database."""
    copy = where / "logs" / log_dir.name
    shutil.copytree(log_dir, copy)
    return copy


def _load(copy: Path, db: Path) -> Path:
    conn = store.connect(db)
    try:
        ingest_log_dir(conn, copy)
    finally:
        conn.close()
    return db


_VIEWS = {
    "consistency": "SELECT * EXCLUDE (run_id) FROM consistency",
    "stale_reads": "SELECT * EXCLUDE (run_id) FROM stale_reads ORDER BY ALL",
    "clock_unjudged_reads": "SELECT * EXCLUDE (run_id) FROM clock_unjudged_reads ORDER BY ALL",
    "invalidation_lag": "SELECT * EXCLUDE (run_id) FROM invalidation_lag ORDER BY ALL",
    "invalidation_lag_summary": "SELECT * EXCLUDE (run_id) FROM invalidation_lag_summary",
    "ops": "SELECT * EXCLUDE (run_id) FROM ops ORDER BY ALL",
}


def _rounded(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with floats to 9 significant digits (an average sums in no fixed order)."""
    return [tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in row)
            for row in rows]


def _verdicts(db: Path) -> dict[tuple[Any, ...], str]:
    """Each hit read's verdict: stale, unjudged or fresh."""
    sql = """SELECT o.process, o.task, o.start_ns,
                    CASE WHEN s.task IS NOT NULL THEN 'stale'
                         WHEN u.task IS NOT NULL THEN 'unjudged' ELSE 'fresh' END
             FROM ops AS o
             LEFT JOIN stale_reads AS s ON s.process = o.process AND s.task = o.task
                  AND s.read_start_ns = o.start_ns
             LEFT JOIN clock_unjudged_reads AS u ON u.process = o.process AND u.task = o.task
                  AND u.read_start_ns = o.start_ns
             WHERE o.op = 'get' AND o.version IS NOT NULL AND o.error IS NULL"""
    return {(p, t, i): verdict for i, (p, t, _, verdict) in enumerate(
        sorted(_query(db, sql)))}


@pytest.fixture(scope="module")
def skewed_run(ray_cluster: RayCluster, services: Services,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """postgres-cache on two Ray workers, worker 1's clock 3 s ahead (in-process run)."""
    tmp = tmp_path_factory.mktemp("ray-skew")
    workload = parse_workload({
        # A pass of a fixed time, not of iterations: both workers run for the same 2 s
        # whenever each got its Go, so their operations overlap (and stale reads across
        # them happen) even when one starts hundreds of ms after the other on a loaded host;
        # with 300/600 iterations the two could run one after the other: no stale read.
        "processes": 2, "writers": 4, "readers": 8, "duration_s": 2, "think_time_ms": 1,
        "keyspace": 16, "backends": ["postgres-cache"], "executor": "ray"})
    saved = {var: os.environ.get(var) for var in ("POSTGRES_DSN", "VALKEY_URL")}
    os.environ.update(POSTGRES_DSN=services.postgres_dsn, VALKEY_URL=services.valkey_url)
    try:
        outcome = run_workload(workload, RunOptions(
            results_path=tmp / "r.duckdb", console=io.StringIO(), out=io.StringIO(),
            executor=RayExecutor(ray_cluster.address, cpus_per_worker=0.5,
                                 clock_skew_ns={1: SKEW_NS})))
    finally:
        structlog.reset_defaults()
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    yield {"outcome": outcome, "db": tmp / "r.duckdb", "tmp": tmp,
           "log_dir": tmp / "logs" / outcome.run_id}


class TestClockSkew:
    """A worker whose clock is 3 s ahead: the offsets find the skew, the mapping removes it."""

    def test_offset_measures_the_skew(self, skewed_run: dict[str, Any]) -> None:
        """Worker 1's offset is -3 s within its uncertainty, worker 0's is 0 within its."""
        assert skewed_run["outcome"].exit_code == 0
        rows = _query(skewed_run["db"], "SELECT process, offset_ns, uncertainty_ns "
                                        "FROM clock_offsets")
        assert len(rows) == 4
        for process, offset, uncertainty in rows:
            assert abs(offset + (SKEW_NS if process == 1 else 0)) <= uncertainty

    def test_timestamps_mapped_onto_one_timeline(self, skewed_run: dict[str, Any]) -> None:
        """Both workers' operations interleave on the parent's timeline (3 s apart unmapped)."""
        (gap,) = _query(skewed_run["db"], "SELECT abs(min(start_ns) FILTER (WHERE process = 0)"
                                          " - min(start_ns) FILTER (WHERE process = 1)) "
                                          "FROM ops")[0]
        # Unmapped, the first operations would be 3 s apart; mapped, they are as far apart
        # as the two Go messages arrived (50 ms on a quiet host, 293 ms seen at a load
        # average of 18): 1 s tells the two apart with a loaded host's margin.
        assert gap < 1_000_000_000
        arrivals = _query(skewed_run["db"], """
            SELECT (SELECT min(ts_ns) FROM events WHERE event = 'invalidation' AND process = 1)
                   >= (SELECT min(start_ns) FROM ops),
                   (SELECT max(ts_ns) FROM events WHERE event = 'invalidation' AND process = 1)
                   <= (SELECT max(start_ns + latency_ns) FROM ops) + 1e9""")
        assert arrivals == [(True, True)]

    def test_views_identical_to_the_unskewed_truth(self, skewed_run: dict[str, Any],
                                                   tmp_path: Path) -> None:
        """Mapped with the exact offset (-3 s), the skewed files give every view exactly as
        the same files with the skew taken out do: each timestamp is mapped, none missed."""
        skewed = _ingest_copy(skewed_run["log_dir"], tmp_path / "a")
        _set_offsets(skewed, {0: 0, 1: -SKEW_NS})
        truth = _ingest_copy(skewed_run["log_dir"], tmp_path / "b")
        _shift_worker(truth, "postgres-cache.r1.p1", -SKEW_NS)
        _set_offsets(truth, {0: 0, 1: 0})
        a, b = _load(skewed, tmp_path / "a.duckdb"), _load(truth, tmp_path / "b.duckdb")
        for name, sql in _VIEWS.items():
            got, truth_rows = _rounded(_query(a, sql)), _rounded(_query(b, sql))
            differ = [(x, y) for x, y in zip(got, truth_rows, strict=False) if x != y][:3]
            assert got == truth_rows, (name, len(got), len(truth_rows), differ)
        assert _query(a, "SELECT stale_reads FROM consistency")[0][0] > 0

    def test_measured_mapping_never_contradicts_the_truth(self, skewed_run: dict[str, Any],
                                                          tmp_path: Path) -> None:
        """With the measured offsets, no read judged stale is fresh in truth, nor the other
        way round: judgements within the uncertainty are unjudged instead."""
        truth = _ingest_copy(skewed_run["log_dir"], tmp_path / "b")
        _shift_worker(truth, "postgres-cache.r1.p1", -SKEW_NS)
        _set_offsets(truth, {0: 0, 1: 0})
        measured, expected = _verdicts(skewed_run["db"]), _verdicts(_load(
            truth, tmp_path / "b.duckdb"))
        assert measured.keys() == expected.keys() and measured
        flips = [k for k in measured if {measured[k], expected[k]} == {"stale", "fresh"}]
        assert flips == []
        assert sum(v == "stale" for v in measured.values()) > 0

    def test_inflated_uncertainty_leaves_judgements_unjudged(self, skewed_run: dict[str, Any],
                                                             tmp_path: Path) -> None:
        """With a 20 ms uncertainty per worker, stale reads closer than that to their
        superseding write become unjudged: the stale count falls, clock_unjudged_reads
        rises, and every read stale before is stale or unjudged now."""
        wide = _ingest_copy(skewed_run["log_dir"], tmp_path / "w")
        _set_offsets(wide, {0: 0, 1: -SKEW_NS}, uncertainty=20_000_000)
        exact = _ingest_copy(skewed_run["log_dir"], tmp_path / "e")
        _set_offsets(exact, {0: 0, 1: -SKEW_NS}, uncertainty=0)
        w, e = _load(wide, tmp_path / "w.duckdb"), _load(exact, tmp_path / "e.duckdb")
        (stale_w, unjudged_w, clock_w), = _query(
            w, "SELECT stale_reads, unjudged_reads, clock_unjudged_reads FROM consistency")
        (stale_e, clock_e), = _query(e, "SELECT stale_reads, clock_unjudged_reads "
                                        "FROM consistency")
        assert clock_e == 0 and stale_w < stale_e and clock_w > 0 and unjudged_w >= clock_w
        before, after = _verdicts(e), _verdicts(w)
        assert all(after[k] in ("stale", "unjudged") for k, v in before.items()
                   if v == "stale")
        assert all(before[k] == "stale" for k, v in after.items() if v == "stale")
        assert _query(w, "SELECT clock_uncertainty_ms FROM invalidation_lag_summary") == [
            (40.0,)]


class TestWithoutCluster:
    """What the Ray executor decides before it talks to a cluster."""

    def test_bundles(self) -> None:
        """One bundle per workers_per_node workers, the last one smaller; a token CPU when
        workers reserve none (a bundle cannot be empty)."""
        assert RayExecutor(workers_per_node=2).bundles(5) == [
            {"CPU": 2.0}, {"CPU": 2.0}, {"CPU": 1.0}]
        assert RayExecutor(cpus_per_worker=0).bundles(2) == [{"CPU": 0.01}, {"CPU": 0.01}]

    def test_bad_strategy(self) -> None:
        """Only Ray's spreading strategies are accepted."""
        with pytest.raises(ValueError, match="SPREAD"):
            RayExecutor(strategy="PACK")

    def test_without_ray(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without Ray installed, executor ray is a usage error that says what to install."""
        monkeypatch.setitem(sys.modules, "ray", None)

        async def reserve() -> None:
            async with RayExecutor().reserve(1):
                pass

        with pytest.raises(UsageError, match=r"pgcache\[distributed\]"):
            asyncio.run(reserve())

    def test_unreachable_cluster(self) -> None:
        """No cluster at the address: a ClusterError at once, that says how to start one."""
        executor = RayExecutor("127.0.0.1:1")

        async def reserve() -> None:
            async with executor.reserve(1):
                pass

        started = time.monotonic()
        with pytest.raises(ClusterError, match=r"cannot connect to a Ray cluster at "
                                               r"127.0.0.1:1.*ray start --head"):
            asyncio.run(reserve())
        assert time.monotonic() - started < 10


@pytest.mark.slow
class TestRecordingRate:
    """The harness's own ceiling with Ray actors against local processes, on one machine."""

    def test_at_least_80_percent_of_local(self, ray_cluster: RayCluster, services: Services,
                                          tmp_path: Path) -> None:
        """workloads/harness-ceiling.yaml, local and ray interleaved three times: the median
        recorded operations/s per worker with ray is at least 80% of local's (printed)."""
        env = env_for(services, tmp_path, **ray_cluster.env())
        rates: dict[str, list[float]] = {"local": [], "ray": []}
        for _ in range(3):
            for executor in rates:
                db = tmp_path / f"{executor}.duckdb"
                result = cli("run", str(ROOT / "workloads" / "harness-ceiling.yaml"),
                             "--executor", executor, "--results", str(db), env=env,
                             timeout=300)
                assert result.returncode == 0, result.stderr[-2000:]
                rates[executor] += [r[0] for r in _query(db, """
                    SELECT count(*) / ((max(start_ns + latency_ns) - min(start_ns)) / 1e9)
                    FROM ops WHERE run_id = (SELECT max(run_id) FROM runs)
                    GROUP BY process""")]
        median = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
        print(f"\nrecorded ops/s per worker (median of {len(rates['ray'])}): local "
              f"{median['local']:,.0f}, ray {median['ray']:,.0f} "
              f"({median['ray'] / median['local']:.0%})")
        assert median["ray"] >= 0.8 * median["local"]
