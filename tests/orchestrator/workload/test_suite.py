"""orchestrator.workload.suite: a suite file read, validated and expanded into its points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from support.repo import ROOT, SUITES

from orchestrator.errors import ExitCode, ThresholdError, WorkloadError
from orchestrator.run.sweep import estimate_s
from orchestrator.workload.suite import load_suite, parse_suite, parse_target, suite_id_for

SUITE = ROOT / "workloads" / "suite.yaml"
BASE: dict[str, Any] = {
    "processes": 2, "writers": 4, "readers": 8, "duration_s": 1, "warmup_s": 0,
    "target_rate": {"reads": 900, "writes": 100}}


def suite_data(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "workload": dict(BASE), "backends": ["postgres-cache", "valkey"],
        "axes": {"latency_ms": [0, 1.5], "read_share": [0.5, 0.9], "instances": [1, 2, 4]},
        "base": {"latency_ms": 1.5, "read_share": 0.9, "instances": 2},
        "target": "get.p99_ms < 2 and stale_rate < 0.001"}
    data.update(extra)
    return data


def problems(data: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(WorkloadError) as caught:
        parse_suite(data, **kwargs)
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    return [issue.path for issue in caught.value.issues]


class TestShippedSuite:
    """workloads/suite.yaml sweeps what the README says it does."""

    @pytest.mark.parametrize("path", SUITES, ids=[p.name for p in SUITES])
    def test_every_suite_file_is_valid(self, path: Path) -> None:
        """Each shipped suite file (workloads/suite*.yaml, which the workload tests leave
        out) loads, and so does its quick variant."""
        assert load_suite(path).points
        assert load_suite(path, quick=True).points

    def test_every_axis_value_of_the_question_is_measured(self) -> None:
        """Latency 0/0.5/1.5/5 ms, 50/90/99% reads and 1, 2, 4 and more instances, each a
        point, every point repeated at least twice."""
        suite = load_suite(SUITE)
        measured: dict[str, set[float]] = {}
        for point in suite.points:
            for axis in point.on_axes:
                measured.setdefault(axis, set()).add(point.values[axis])
            assert point.workload.repeat >= 2
        assert measured["latency_ms"] == {0, 0.5, 1.5, 5}
        assert measured["read_share"] == {0.5, 0.9, 0.99}
        assert {1, 2, 4} < measured["instances"]

    def test_backends(self) -> None:
        """Every point runs both pgcache paths and both Valkey ones; the instance axis also
        runs the shared listener."""
        suite = load_suite(SUITE)
        for point in suite.points:
            names = [b.name for b in point.workload.backends]
            assert {"postgres-cache", "postgres-no-local-cache", "valkey",
                    "valkey-tracking"} <= set(names)
            assert ("postgres-cache-shared" in names) == ("instances" in point.on_axes)

    def test_point_workloads(self) -> None:
        """Each point's workload carries its values: network mode and latency, the split of
        the total rate, worker processes times instances per process."""
        suite = load_suite(SUITE)
        by = {p.key: p.workload for p in suite.points}
        zero = by["latency_ms=0 read_share=0.9 instances=2"]
        assert (zero.network.mode, zero.network.latency_ms) == ("none", 0.0)
        five = by["latency_ms=5 read_share=0.9 instances=2"]
        assert (five.network.mode, five.network.latency_ms) == ("inprocess", 5.0)
        half = by["latency_ms=0.5 read_share=0.5 instances=2"]
        assert (half.target_rate.reads, half.target_rate.writes) == (1000, 1000)
        eight = by["latency_ms=0.5 read_share=0.9 instances=8"]
        assert (eight.processes, eight.instances_per_process) == (2, 4)
        one = by["latency_ms=0.5 read_share=0.9 instances=1"]
        assert (one.processes, one.instances_per_process) == (1, 1)
        assert "--set instances_per_process=4" in eight.text

    def test_quick_variant(self) -> None:
        """--quick has fewer, shorter points under an id of its own, and is estimated under
        3 minutes; the full suite under 15."""
        full, quick = load_suite(SUITE), load_suite(SUITE, quick=True)
        assert len(quick.points) < len(full.points)
        assert suite_id_for(quick, None, quick=True) == "suite-quick"
        assert suite_id_for(full, None, quick=False) == "suite"
        assert suite_id_for(quick, "mine", quick=True) == "mine"
        assert (estimate_s(list(quick.points)) or 1e9) < 180
        assert (estimate_s(list(full.points)) or 1e9) < 15 * 60


class TestSweep:
    """Which points a suite has."""

    def test_axes_sweep(self) -> None:
        """One axis at a time: the base point, then each other value with the rest at base."""
        suite = parse_suite(suite_data())
        keys = [p.key for p in suite.points]
        assert keys[0] == "latency_ms=1.5 read_share=0.9 instances=2"
        assert len(keys) == 1 + 1 + 1 + 2
        assert suite.points[0].on_axes == ("latency_ms", "read_share", "instances")
        assert all(len(p.on_axes) == 1 for p in suite.points[1:])

    def test_grid_sweep(self) -> None:
        """Every combination; the points with the others at base lie on an axis."""
        suite = parse_suite(suite_data(sweep="grid"))
        assert len(suite.points) == 2 * 2 * 3
        on_latency = [p.key for p in suite.points if "latency_ms" in p.on_axes]
        assert on_latency == ["latency_ms=0 read_share=0.9 instances=2",
                              "latency_ms=1.5 read_share=0.9 instances=2"]

    def test_axis_backends_and_any_workload_path(self) -> None:
        """axis_backends join the points of their axis; any other axis is a workload path."""
        suite = parse_suite(suite_data(
            axes={"keyspace": [16, 64], "instances": [1, 2]},
            base={"keyspace": 64, "instances": 1},
            axis_backends={"instances": ["postgres-cache-shared"]}))
        by = {p.key: p for p in suite.points}
        assert by["keyspace=16 instances=1"].workload.keyspace == 16
        assert "postgres-cache-shared" not in [
            b.name for b in by["keyspace=16 instances=1"].workload.backends]
        assert "postgres-cache-shared" in [
            b.name for b in by["keyspace=64 instances=2"].workload.backends]

    def test_fingerprint_follows_the_workload(self) -> None:
        """The same suite gives the same fingerprints; a changed workload, others."""
        one, two = parse_suite(suite_data()), parse_suite(suite_data())
        assert [p.fingerprint for p in one.points] == [p.fingerprint for p in two.points]
        longer = parse_suite(suite_data(), overrides=["duration_s=2"])
        assert not {p.fingerprint for p in one.points} & {p.fingerprint for p in longer.points}

    def test_overrides_apply_to_the_base_workload(self) -> None:
        """--set changes every point's workload, and wins over the suite's repeat; the axes
        win over --set."""
        suite = parse_suite(suite_data(repeat=3), overrides=[
            "repeat=2", "keyspace=99", "network.latency_ms=9"])
        assert {p.workload.repeat for p in suite.points} == {2}
        assert {p.workload.keyspace for p in suite.points} == {99}
        assert {p.workload.network.latency_ms for p in suite.points} == {0, 1.5}

    def test_default_compare_pairs(self) -> None:
        """Without compare, every pgcache backend is compared with every Valkey one."""
        suite = parse_suite(suite_data(backends=["postgres-cache", "postgres-no-local-cache",
                                                 "valkey", "valkey-tracking"]))
        assert len(suite.compare) == 4
        assert ("postgres-cache", "valkey-tracking") in suite.compare


class TestBadSuites:
    """A bad suite is refused before anything runs, every problem with its path."""

    def test_every_problem_listed(self) -> None:
        """Unknown keys, values out of range, a base not among the values, a bad target and
        an unknown compared backend are each reported."""
        data = suite_data(colour=1, sweep="diagonal", target="get.p99 < 2",
                          compare=[["postgres-cache", "memcached"]])
        data["axes"] = {"latency_ms": [-1, 1.5], "read_share": [0.9, 1.0],
                        "instances": [1, 2, 2.5]}
        data["base"] = {"latency_ms": 3, "read_share": 0.9, "instances": 2}
        paths = problems(data)
        for path in ("colour", "sweep", "target", "compare[0][1]", "axes.latency_ms[0]",
                     "axes.read_share[1]", "axes.instances[2]", "base.latency_ms"):
            assert path in paths, paths

    def test_read_share_needs_an_open_loop(self) -> None:
        """read_share splits a total target rate: a closed-loop base workload is refused."""
        data = suite_data()
        del data["workload"]["target_rate"]
        assert "axes.read_share" in problems(data)

    def test_read_share_needs_both_kinds_of_tasks(self) -> None:
        """read_share gives a share of the rate to writes and the rest to reads: a base
        workload without writers (or readers) is refused."""
        data = suite_data()
        data["workload"]["writers"] = 0
        assert "axes.read_share" in problems(data)

    def test_missing_target(self) -> None:
        """A suite without a target is refused: its verdicts judge by it."""
        data = suite_data()
        del data["target"]
        with pytest.raises(WorkloadError) as caught:
            parse_suite(data)
        assert [(i.path, i.found) for i in caught.value.issues] == [("target", "(missing)")]

    def test_instances_need_tasks(self) -> None:
        """More instances than tasks of a kind would leave instances that record nothing."""
        assert "axes.instances" in problems(suite_data(
            axes={"instances": [1, 9]}, base={"instances": 1}))

    def test_point_workload_problems_name_the_point(self) -> None:
        """A point whose workload is invalid is reported with the point and the path."""
        paths = problems(suite_data(axes={"keyspace": [0, 8]}, base={"keyspace": 8}))
        assert "point keyspace=0: keyspace" in paths

    def test_base_workload_problems(self) -> None:
        """The base workload's own problems are listed under workload."""
        data = suite_data()
        data["workload"]["writers"] = "many"
        assert "workload.writers" in problems(data)

    def test_quick_missing(self) -> None:
        """--quick on a suite without quick settings is refused."""
        assert "quick" in problems(suite_data(), quick=True)

    def test_file_errors(self, tmp_path: Path) -> None:
        """A suite file that is not a mapping, or names a missing workload file, is refused
        with the file named."""
        path = tmp_path / "s.yaml"
        path.write_text("- a list\n")
        with pytest.raises(WorkloadError, match=str(path)):
            load_suite(path)
        path.write_text(yaml.safe_dump(suite_data(workload="missing.yaml")))
        with pytest.raises(WorkloadError) as caught:
            load_suite(path)
        assert any(i.path.startswith("workload (missing.yaml)") for i in caught.value.issues)

    def test_workload_from_a_file(self, tmp_path: Path) -> None:
        """The base workload may be a workload file next to the suite."""
        (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(suite_data(workload="base.yaml")))
        suite = load_suite(path)
        assert {p.workload.writers for p in suite.points} == {4}
        assert "# workload file:" in suite.text


class TestTarget:
    """A target is threshold conditions joined by 'and'."""

    def test_parse(self) -> None:
        """Each condition parses as a threshold does; 'and' in any case joins them."""
        target = parse_target("get.p99_ms < 2 AND stale_rate < 0.001 and "
                              "invalidation_lag.p99_ms <= 5")
        assert [(t.source, t.column) for t in target] == [
            ("summary", "p99_ms"), ("consistency", "stale_rate"),
            ("invalidation_lag_summary", "p99_ms")]

    @pytest.mark.parametrize("text", ["", "get.p99_ms < 2 or stale_rate < 1", None, 3])
    def test_refused(self, text: object) -> None:
        """Anything else is a ThresholdError saying what was expected."""
        with pytest.raises(ThresholdError):
            parse_target(text)
