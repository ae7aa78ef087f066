"""`python -m orchestrator suite workloads/suite.yaml --quick`, end to end against the session's
servers (with shorter passes), and its report checked against SQL over the same database."""

from __future__ import annotations

import html
import json
import os
import shlex
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from support.commands import alive, cli, env_for, holding, start, wait_for_ops, worker_pids
from support.readme import about_suites, commands
from support.repo import ROOT

from orchestrator.results.findings import number
from orchestrator.services import Services
from orchestrator.workload.suite import load_suite

SUITE = "workloads/suite.yaml"
# The quick suite as shipped (its points, backends and 2 repetitions), with shorter passes
# and fewer keys so that the test takes about a minute.
SHORTER = ["--set", "warmup_s=0.2", "--set", "duration_s=0.5", "--set", "keyspace=200"]


@pytest.fixture(scope="module")
def quick(services: Services, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The quick suite, run once: its database, output, and its report as JSON and HTML."""
    tmp = tmp_path_factory.mktemp("suite")
    db = tmp / "r.duckdb"
    env = env_for(services, tmp)
    started = time.monotonic()
    result = cli("suite", SUITE, "--quick", *SHORTER, "--results", str(db), env=env,
                 timeout=600)
    took = time.monotonic() - started
    # 99: a point where no backend met the target, which depends on the machine's speed.
    assert result.returncode in (0, 99), result.stderr[-3000:]
    # Run right after the suite, as a script would: nothing the suite started holds the
    # database, or runs, any more.
    assert holding(db) == []
    assert not any(alive(pid) for pid in worker_pids(tmp / "logs"))
    report = cli("report", "--suite", "latest", "--format", "json", "--results",
                 str(db), env=env)
    assert report.returncode == 0, report.stderr
    page = cli("report", "--suite", "suite-quick", "--html", "-o", str(tmp / "s.html"),
               "--results", str(db), env=env)
    assert page.returncode == 0, page.stderr
    return {"db": db, "env": env, "tmp": tmp, "result": result, "took": took,
            "code": result.returncode,
            "answer": json.loads(report.stdout), "html": (tmp / "s.html").read_text()}


def _sql(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _p99(db: Path, run_id: str, backend: str, op: str, repetition: int | None = None) -> \
        float | None:
    """The p99 latency of an op, straight from the recorded operations."""
    rows = _sql(db, "SELECT quantile_cont(latency_ns, 0.99) / 1e6 FROM ops WHERE run_id = ? "
                "AND backend = ? AND op = ? AND error IS NULL"
                + (" AND repetition = ?" if repetition is not None else ""),
                [run_id, backend, op] + ([repetition] if repetition is not None else []))
    return rows[0][0]


def _stale_rate(db: Path, run_id: str, backend: str, repetition: int | None = None) -> float:
    """Stale reads (the stale_reads view) over successful gets, counted here."""
    rep = " AND repetition = ?" if repetition is not None else ""
    params = [run_id, backend] + ([repetition] if repetition is not None else [])
    stale = _sql(db, f"SELECT count(*) FROM stale_reads WHERE run_id = ? AND backend = ?{rep}",
                 params)[0][0]
    reads = _sql(db, "SELECT count(*) FROM ops WHERE run_id = ? AND backend = ? AND op = 'get' "
                 f"AND error IS NULL{rep}", params)[0][0]
    return float(stale) / reads


class TestQuickSuite:
    """The quick suite runs every point, and its report says what the database holds."""

    def test_every_point_is_a_tagged_completed_run(self, quick: dict[str, Any]) -> None:
        """One completed run per point, tagged with the suite and the point's values; the
        instance axis's points ran that many application instances."""
        suite = load_suite(ROOT / SUITE, quick=True, overrides=SHORTER[1::2])
        rows = _sql(quick["db"], "SELECT t.point, r.status, t.axes, t.run_id FROM suite_runs t "
                    "JOIN runs r USING (run_id) WHERE t.suite_id = 'suite-quick'")
        assert sorted(r[0] for r in rows) == sorted(p.key for p in suite.points)
        assert {r[1] for r in rows} == {"completed"}
        for point, _, axes, run_id in rows:
            instances = json.loads(axes)["instances"]
            counted = _sql(quick["db"], "SELECT count(DISTINCT process) FROM ops WHERE "
                           "run_id = ? AND backend = 'postgres-cache'", [run_id])[0][0]
            assert counted == instances, point
        # Every pass measured for the shortened 0.5 s (1.5 s as shipped), so the suite's time
        # is its passes' plus their set-up; the wall-clock bound (about a minute here, on a
        # quiet machine) leaves room for a machine loaded by other work.
        spans = _sql(quick["db"], "SELECT max(start_ns) - min(start_ns) FROM ops "
                     "GROUP BY run_id, backend, repetition")
        assert spans and max(span for (span,) in spans) < 1_000_000_000, spans
        assert quick["took"] < 400

    def test_verdicts_are_the_target_applied_to_sql(self, quick: dict[str, Any]) -> None:
        """Each verdict's measured get/set p99 and stale rate are those SQL computes over the
        operations, and meets (and the passes that met it) follow from them."""
        answer, db = quick["answer"], quick["db"]
        assert answer["target"] == "get.p99_ms < 2 and set.p99_ms < 10 and stale_rate < 0.001"
        runs = {p["point"]: p["run_id"] for p in answer["points"]}
        assert len(answer["verdicts"]) >= 4 * len(runs)
        for verdict in answer["verdicts"]:
            run_id, backend = runs[verdict["point"]], verdict["backend"]
            measured = {c["expression"]: c["measured"] for c in verdict["conditions"]}
            get, put = _p99(db, run_id, backend, "get"), _p99(db, run_id, backend, "set")
            stale = _stale_rate(db, run_id, backend)
            assert measured["get.p99_ms < 2"] == pytest.approx(get)
            assert measured["set.p99_ms < 10"] == pytest.approx(put)
            assert measured["stale_rate < 0.001"] == pytest.approx(stale)
            assert verdict["meets"] == (get < 2 and put < 10 and stale < 0.001)
            reps = [r[0] for r in _sql(db, "SELECT DISTINCT repetition FROM ops WHERE run_id "
                                       "= ? AND backend = ?", [run_id, backend])]
            met = sum(1 for rep in reps
                      if (_p99(db, run_id, backend, "get", rep) or 0) < 2
                      and (_p99(db, run_id, backend, "set", rep) or 0) < 10
                      and _stale_rate(db, run_id, backend, rep) < 0.001)
            assert (verdict["passes_met"], verdict["passes"]) == (met, len(reps))

    def test_metrics_table_is_sql(self, quick: dict[str, Any]) -> None:
        """The report's numbers per point and backend, pooled over passes, agree with the
        operations: throughput over the passes' spans, get p99, stale rate; and the servers'
        CPU per write was measured for every backend that has a server."""
        answer, db = quick["answer"], quick["db"]
        for row in answer["metrics"]:
            run_id, backend = row["run_id"], row["backend"]
            rate = _sql(db, "SELECT sum(n) / sum(span) FROM (SELECT count(*) AS n, "
                        "(max(start_ns + latency_ns) - min(start_ns)) / 1e9 AS span FROM ops "
                        "WHERE run_id = ? AND backend = ? GROUP BY repetition)",
                        [run_id, backend])[0][0]
            assert row["ops_per_s"] == pytest.approx(rate)
            assert row["get_p99_ms"] == pytest.approx(_p99(db, run_id, backend, "get"))
            assert row["stale_rate"] == pytest.approx(_stale_rate(db, run_id, backend))
            assert row["server_cpu_us_per_write"] is not None, (row["point"], backend)

    def test_instance_costs_are_sql(self, quick: dict[str, Any]) -> None:
        """The invalidation lag p99 per pass on the instance axis, as the text report shows it
        (median and range), is the invalidation_lag view's p99 of each pass."""
        db, env = quick["db"], quick["env"]
        text = cli("report", "--suite", "suite-quick", "--results", str(db), env=env).stdout
        points = [p for p in quick["answer"]["points"] if "instances" in p["on_axes"]]
        for point in points:
            lags = [r[0] for r in _sql(db, "SELECT quantile_disc(lag_ms, 0.99) FROM "
                                       "invalidation_lag WHERE run_id = ? AND backend = "
                                       "'postgres-cache' GROUP BY repetition",
                                       [point["run_id"]])]
            shown = (f"{number(statistics.median(lags), 'lag_p99_ms')} "
                     f"({number(min(lags), 'lag_p99_ms')}-{number(max(lags), 'lag_p99_ms')})")
            assert shown in text
        assert "Extrapolated to 100 instances" in text

    def test_html_report(self, quick: dict[str, Any]) -> None:
        """The HTML report holds the verdicts, every sentence, a chart per axis and metric,
        and the suite file."""
        page, answer = quick["html"], quick["answer"]
        for verdict in answer["verdicts"]:
            assert html.escape(verdict["text"], quote=True) in page
        for crossover in answer["crossovers"]:
            assert html.escape(crossover["sentence"], quote=True) in page
        for sentences in answer["verdict_sentences"].values():
            for sentence in sentences:
                assert html.escape(sentence, quote=True) in page
        assert page.count("<svg") >= 3 * 8
        assert "axis_backends:" in page

    def test_html_opens_with_the_answer(self, quick: dict[str, Any]) -> None:
        """The page opens with a box of at most five sentences, then the verdict matrix (one
        coloured cell per verdict); the sentences of where it changes are folded away."""
        page, answer = quick["html"], quick["answer"]
        box = page.index("<div class='answer'")
        assert page.index("<h1>") < box < page.index("<table class='meta'>")
        inside = page[box:page.index("</div>", box)]
        assert 2 <= inside.count("<p>") <= 5 and "Target: " in inside
        cells = page.count("<td class='l meets'") + page.count("<td class='l misses'")
        assert cells == len(answer["verdicts"])
        folded = page[page.index("<details>"):page.index("</details>")]
        for crossover in answer["crossovers"]:
            assert html.escape(crossover["sentence"], quote=True) in folded

    def test_resumed_and_extended(self, quick: dict[str, Any], tmp_path: Path) -> None:
        """Running it again runs nothing (every point is measured); the same suite with one
        more value runs only the new point."""
        db, env = quick["db"], quick["env"]
        again = cli("suite", SUITE, "--quick", *SHORTER, "--results", str(db), env=env)
        assert again.returncode == quick["code"], again.stderr  # the same verdicts
        assert "4 measured before, 0 to run" in again.stderr
        assert "Verdicts" in again.stdout
        data = yaml.safe_load((ROOT / SUITE).read_text())
        data["quick"]["axes"]["latency_ms"].append(5)
        extended = tmp_path / "suite.yaml"
        extended.write_text(yaml.safe_dump(data, sort_keys=False))  # axes in their order
        listed = cli("suite", str(extended), "--quick", *SHORTER, "--list", "--results",
                     str(db), env=env)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("measured") == 4
        assert "suite suite-quick: 5 points, 1 to run" in listed.stdout
        assert "latency_ms=5 read_share=0.9 instances=2" in listed.stdout


class TestInterrupted:
    """Ctrl-C stops a suite; the same command resumes it."""

    def test_ctrl_c_during_a_point(self, services: Services, tmp_path: Path) -> None:
        """SIGINT during a point's run: exit 130 with one line saying what is kept; the run
        is kept as interrupted and its point is still to run."""
        db = tmp_path / "r.duckdb"
        env = env_for(services, tmp_path)
        proc = start(["suite", SUITE, "--quick", *SHORTER, "--results", str(db)], env)
        try:
            wait_for_ops(tmp_path / "logs")
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert proc.returncode == 130, err[-2000:]
        assert "suite suite-quick: interrupted; the points measured so far are kept, and the " \
               "same command runs the rest" in err
        assert _sql(db, "SELECT r.status FROM suite_runs AS t JOIN runs AS r USING (run_id)") \
            == [("interrupted",)]
        listed = cli("suite", SUITE, "--quick", *SHORTER, "--list", "--results", str(db),
                     env=env)
        assert "suite suite-quick: 4 points, 4 to run" in listed.stdout


class TestDocumented:
    """What the README says of suites runs as it says."""

    def test_readme_suite_commands(self, quick: dict[str, Any]) -> None:
        """Every suite command the READMEs show exits 0 on the quick suite's database: the
        quick suite again with the test's shorter passes (every point measured: nothing runs),
        the full suite listed (running it is the 10-minute run the README reports), each
        report --suite, and each query of the suite tables returns rows."""
        lines = [line for _, line in commands("python -m orchestrator") if about_suites(line)]
        kinds = {(shlex.split(line)[3], "--quick" in line) for line in lines}
        assert {("suite", True), ("suite", False), ("report", False), ("query", False)} <= kinds
        for line in lines:
            words = shlex.split(line.replace("/tmp/", f"{quick['tmp']}/"))[3:]
            if words[0] == "suite":
                words += SHORTER if "--quick" in words else ["--list"]
            result = cli(*words, "--results", str(quick["db"]), env=quick["env"])
            expected = quick["code"] if words[0] == "suite" and "--quick" in words else 0
            assert result.returncode == expected, (line, result.stderr[-2000:])
            if words[0] == "suite" and "--quick" in words:
                assert "0 to run" in result.stderr, line
            if words[0] == "query":
                assert len(result.stdout.splitlines()) > 2, (line, result.stdout)

    @pytest.mark.parametrize(("target", "command"), [
        ("benchmark-suite", "orchestrator suite workloads/suite.yaml ;"),
        ("benchmark-suite-quick", "orchestrator suite workloads/suite.yaml --quick ;")])
    def test_make_targets(self, target: str, command: str) -> None:
        """The make targets run the suite (make -n: what they would run)."""
        shown = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True,
                               text=True, timeout=30, check=True).stdout
        assert command in shown


class TestExitCode:
    """A suite exits 99 exactly when, at some point, no backend meets its target."""

    def test_quick_suite_code_follows_its_verdicts(self, quick: dict[str, Any]) -> None:
        """The quick suite's exit code is 99 if and only if a point has no verdict that
        meets the target."""
        met: dict[str, bool] = {}
        for verdict in quick["answer"]["verdicts"]:
            met[verdict["point"]] = met.get(verdict["point"], False) or verdict["meets"]
        assert quick["code"] == (99 if not all(met.values()) else 0)

    @pytest.mark.parametrize(("target", "code"), [("get.p99_ms < 100000", 0),
                                                  ("get.p99_ms < 0", 99)])
    def test_target_met_or_not(self, services: Services, tmp_path: Path, target: str,
                               code: int) -> None:
        """A one-point suite of the null backend: a target it meets exits 0, one nothing can
        meet exits 99 (and the answer is printed either way)."""
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({
            "workload": {"processes": 1, "writers": 1, "readers": 1, "write_iterations": 5,
                         "read_iterations": 5},
            "backends": ["null"], "repeat": 1, "axes": {"latency_ms": [0]},
            "base": {"latency_ms": 0}, "target": target}))
        result = cli("suite", str(path), "--results", str(tmp_path / "r.duckdb"),
                     env=env_for(services, tmp_path))
        assert result.returncode == code, result.stderr[-2000:]
        assert target in result.stdout


class TestSuiteErrors:
    """A suite command that cannot run says why, with its exit code."""

    def test_bad_suite_exit_2_nothing_written(self, tmp_path: Path) -> None:
        """A bad suite file: every problem with the file, its YAML path, what was expected
        and what was found, exit 2, one line each and no traceback; nothing written."""
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({"axes": {"latency_ms": [-1]}, "colour": 1}))
        db = tmp_path / "results" / "r.duckdb"
        result = cli("suite", str(path), "--results", str(db))
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"error: {path}: 3 problems:",
            "  - colour: expected one of the known keys (name, description, workload, "
            "backends, axis_backends, axes, base, sweep, repeat, target, compare, quick), "
            "found (an unknown key)",
            "  - axes.latency_ms[0]: expected a round-trip latency in ms from 0 to 60,000, "
            "found -1",
            "  - target: expected conditions joined by 'and', e.g. 'get.p99_ms < 2 and "
            "stale_rate < 0.001', found (missing)"]
        assert result.stdout == ""
        assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]

    @pytest.mark.parametrize(("args", "shown"), [
        (["--set", "writers=0"], "axes.read_share: expected a base workload with writer and "
                                 "reader tasks"),
        (["--set", "colour=1"], "workload.colour: expected one of the known keys"),
        (["--id", "a b"], "--id 'a b': expected letters, digits"),
    ])
    def test_bad_options_exit_2(self, tmp_path: Path, args: list[str], shown: str) -> None:
        """Overrides that break the shipped suite, or a bad id: exit 2, nothing written."""
        db = tmp_path / "results" / "r.duckdb"
        result = cli("suite", SUITE, *args, "--results", str(db))
        assert result.returncode == 2, result.stderr
        assert shown in result.stderr
        assert not (tmp_path / "results").exists()

    def test_bad_target_in_report(self, quick: dict[str, Any]) -> None:
        """report --suite --target with a condition that is no threshold: exit 2, saying
        what was expected."""
        result = cli("report", "--suite", "latest", "--target", "get.p99 < 2", "--results",
                     str(quick["db"]), env=quick["env"])
        assert result.returncode == 2
        assert result.stderr.startswith("error: --target 'get.p99 < 2': expected a metric of "
                                        "get (")

    def test_unknown_suite_in_report(self, tmp_path: Path) -> None:
        """report --suite of a suite the database does not hold: exit 2, the known ones
        listed."""
        db = tmp_path / "r.duckdb"
        with duckdb.connect(str(db)):
            pass
        result = cli("report", "--suite", "nope", "--results", str(db))
        assert result.returncode == 2
        assert "no suite" in result.stderr
