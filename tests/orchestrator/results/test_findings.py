"""orchestrator.results.findings: verdicts, crossovers and the instance extrapolation, on
hand-made suites whose numbers are known."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping

import duckdb
import pytest
from support.results_history import add_op, create_schema

from orchestrator.reports.answer import verdict_rows
from orchestrator.results import suites
from orchestrator.results.findings import (
    Answer,
    Comparison,
    Fit,
    answer,
    fit_line,
    instance_fits,
)
from orchestrator.results.suites import AxisRecord, PointRecord, SuiteData
from orchestrator.workload.suite import parse_target

TARGET = "get.p99_ms < 2"
# latency axis value -> backend -> get latency (ms) of each of the two passes
Grid = Mapping[float, Mapping[str, tuple[float, float]]]


def make_suite(con: duckdb.DuckDBPyConnection, grid: Grid) -> SuiteData:
    """A suite with one axis (latency_ms), two backends, two passes per point; every get of
    a pass takes the pass's latency, so each pass's p99 is that latency."""
    create_schema(con)
    values = sorted(grid)
    suites.record_suite(con, "s", name="s", text="", target=TARGET,
                        axes=[{"name": "latency_ms", "values": values, "base": values[0]}],
                        sweep="axes", compare=[("pg", "vk")])
    for i, value in enumerate(values):
        run_id = f"run{i}"
        con.execute("INSERT INTO runs (run_id, status, started_at) VALUES (?, 'completed', ?)",
                    [run_id, dt.datetime(2026, 1, 1, 0, i)])
        suites.record_point(con, "s", run_id, point=f"latency_ms={value:g}", fingerprint="f",
                            values={"latency_ms": value}, on_axes=["latency_ms"])
        for backend, latencies in grid[value].items():
            for repetition, latency in enumerate(latencies, 1):
                for k in range(20):
                    add_op(con, "get", "k", k * 10.0, latency, version=None, run_id=run_id,
                           backend=backend, repetition=repetition, task=k)
    return suites.read_suite(con, "s")


def run_answer(grid: Grid, target: str = TARGET) -> tuple[SuiteData, Answer]:
    con = duckdb.connect()
    data = make_suite(con, grid)
    return data, answer(con, data, parse_target(target), target)


class TestVerdicts:
    """Each point and backend judged over its passes, with how far it misses."""

    def test_meets_and_misses_with_passes(self) -> None:
        """pg meets at 0 ms in both passes, misses at 1 ms in one pass of two and at 5 ms by
        +50%; the verdict table names who meets at each point."""
        data, result = run_answer({0: {"pg": (1, 1), "vk": (1, 1)},
                                   1: {"pg": (1, 2.5), "vk": (1, 1)},
                                   5: {"pg": (3, 3), "vk": (1, 1)}})
        by = {(v.point, v.backend): v for v in result.verdicts}
        assert by[("latency_ms=0", "pg")].describe() == "meets (2/2 passes)"
        assert by[("latency_ms=1", "pg")].describe() == (
            "misses (get.p99_ms 2.5 ms, limit < 2 ms: +25%; 1/2 passes)")
        assert by[("latency_ms=5", "pg")].describe() == (
            "misses (get.p99_ms 3 ms, limit < 2 ms: +50%; 0/2 passes)")
        assert by[("latency_ms=5", "vk")].meets
        columns, rows = verdict_rows(data, result)
        assert columns == ["point", "meet the target", "pg", "vk"]
        assert [row[:2] for row in rows] == [["0 ms", "pg, vk"], ["1 ms", "vk"],
                                             ["5 ms", "vk"]]

    def test_unmeasured_condition_does_not_apply(self) -> None:
        """A backend without invalidation lag is not failed by a lag condition."""
        _, result = run_answer({0: {"pg": (1, 1), "vk": (1, 1)},
                                1: {"pg": (1, 1), "vk": (1, 1)}},
                               "get.p99_ms < 2 and invalidation_lag.p99_ms < 1")
        verdicts = result.verdicts
        assert all(v.meets for v in verdicts)
        assert all(v.conditions[1].passed is None for v in verdicts)

    def test_verdict_sentence_says_where_it_changes(self) -> None:
        """The axis's sentence names the last value met and the first missed, with the
        numbers."""
        _, result = run_answer({0: {"pg": (1, 1), "vk": (1, 1)},
                                1: {"pg": (1, 1), "vk": (1, 1)},
                                5: {"pg": (3, 3), "vk": (1, 1)}})
        text = result.verdict_sentences["latency_ms"][0]
        assert "vk meets the target at every point" in text
        assert text.startswith("Along round-trip latency (0 ms to 5 ms): vk meets")
        assert "pg meets the target up to 1 ms (2/2 passes), then misses it at 5 ms " \
               "(get.p99_ms 3 ms, limit < 2 ms: +50%; 0/2 passes)" in text


class TestCrossovers:
    """Sentences from the measured points, never fixed text."""

    def test_crossover_where_the_comparison_changes(self) -> None:
        """pg matches vk while their passes overlap, and is slower once they do not; the
        sentence gives both values and both passes' ranges."""
        _, result = run_answer({0: {"pg": (1.0, 1.2), "vk": (1.1, 1.3)},
                                1: {"pg": (1.5, 1.6), "vk": (1.55, 1.58)},
                                5: {"pg": (4.0, 4.2), "vk": (2.0, 2.1)}})
        (crossover,) = result.crossovers
        assert crossover.changes == 1
        assert crossover.sentence == (
            "pg matches vk on get p99 up to 1 ms (1.6 vs 1.58 ms; passes 1.5-1.6 vs "
            "1.55-1.58, 2 and 2); at 5 ms it is slower (4.2 vs 2.1 ms; passes 4-4.2 vs 2-2.1, "
            "2 and 2).")

    def test_other_data_other_sentence(self) -> None:
        """The same suite with the other result says the other thing."""
        _, result = run_answer({0: {"pg": (1.0, 1.2), "vk": (1.1, 1.3)},
                                1: {"pg": (1.5, 1.6), "vk": (1.55, 1.58)},
                                5: {"pg": (1.0, 1.1), "vk": (2.0, 2.1)}})
        (crossover,) = result.crossovers
        assert "; at 5 ms it is faster (1.1 vs 2.1 ms;" in crossover.sentence

    def test_same_throughout(self) -> None:
        """No change along the axis: one sentence for the whole axis, with the closest
        point's numbers."""
        _, result = run_answer({0: {"pg": (3, 3), "vk": (1, 1)},
                                1: {"pg": (2.5, 2.6), "vk": (1, 1.1)}})
        (crossover,) = result.crossovers
        assert crossover.changes == 0
        assert crossover.sentence == (
            "pg is slower than vk on get p99 at every latency measured (0 ms to 1 ms); "
            "closest at 1 ms: 2.6 vs 1.1 ms; passes 2.5-2.6 vs 1-1.1, 2 and 2.")

    def test_a_change_in_the_middle(self) -> None:
        """A comparison that changes and changes back names the span between."""
        _, result = run_answer({0: {"pg": (1.0, 1.0), "vk": (1.0, 1.0)},
                                1: {"pg": (3.0, 3.0), "vk": (1.0, 1.0)},
                                2: {"pg": (3.0, 3.0), "vk": (1.0, 1.0)},
                                5: {"pg": (1.0, 1.0), "vk": (1.0, 1.0)}})
        (crossover,) = result.crossovers
        assert crossover.changes == 2
        assert crossover.sentence.startswith("pg matches vk on get p99 at 0 ms (1 vs 1 ms;")
        assert "; from 1 ms to 2 ms it is slower (3 vs 1 ms;" in crossover.sentence
        assert "; at 5 ms it matches it (1 vs 1 ms;" in crossover.sentence

    @pytest.mark.parametrize(("first", "second", "mark"), [
        ((1.0, 2.0), (1.5, 3.0), "match"),  # the passes' ranges overlap
        ((1.0, 1.0), (1.05, 1.05), "match"),  # within 10%
        ((1.0, 1.0), (2.0, 2.0), "lower"),
        ((3.0, 3.0), (2.0, 2.0), "higher"),
    ])
    def test_mark(self, first: tuple[float, float], second: tuple[float, float],
                  mark: str) -> None:
        """Two backends match when their passes overlap or they are within 10%."""
        point = PointRecord("p", "r", "completed", {"x": 1.0}, ("x",))
        comparison = Comparison(point, max(first), max(second), first, second)
        assert comparison.mark == mark


def _pass_rows(values: Mapping[tuple[str, float], list[float]]) -> tuple[dict[str, object],
                                                                          ...]:
    rows = []
    for (backend, n), lags in values.items():
        for rep, lag in enumerate(lags, 1):
            rows.append({"point": f"instances={n:g}", "backend": backend, "repetition": rep,
                         "lag_p99_ms": lag, "server_cpu_us_per_write": 10 * n + rep})
    return tuple(rows)


class TestExtrapolation:
    """A least-squares line over the instance axis's passes, with its errors."""

    def test_fit_line_exact(self) -> None:
        """Points on a line give that line, no residual error and R^2 1."""
        slope, intercept, se, r2 = fit_line([1, 2, 4, 8], [3, 5, 9, 17])
        assert (slope, intercept) == pytest.approx((2, 1))
        assert se == pytest.approx(0)
        assert r2 == pytest.approx(1)

    def test_fit_line_errors(self) -> None:
        """The slope's standard error is s / sqrt(Sxx) with s^2 = SSR / (n - 2)."""
        xs, ys = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]
        slope, intercept, se, r2 = fit_line(xs, ys)
        assert (slope, intercept) == pytest.approx((0.8, 0.5))
        ssr = sum((y - 0.5 - 0.8 * x) ** 2 for x, y in zip(xs, ys, strict=True))
        assert se == pytest.approx(math.sqrt(ssr / 2 / 5))
        assert r2 == pytest.approx(1 - ssr / 5)

    def test_instance_fits(self) -> None:
        """Every pass of the instance axis is an observation; the prediction at 100 is the
        line's, with the standard error of its mean there."""
        points = tuple(PointRecord(f"instances={n:g}", "r", "completed", {"instances": n},
                                   ("instances",)) for n in (1.0, 2.0, 4.0))
        data = SuiteData("s", "s", "", TARGET, (AxisRecord("instances", (1, 2, 4), 1),),
                         "axes", (), points,
                         ({"backend": "pg"},), _pass_rows({
                             ("pg", 1): [1.0, 1.2], ("pg", 2): [2.1, 1.9],
                             ("pg", 4): [4.0, 4.2]}))
        lag = next(f for f in instance_fits(data) if f.metric == "lag_p99_ms")
        assert len(lag.observations) == 6
        assert lag.slope == pytest.approx(1.0, abs=0.1)
        assert lag.predicted == pytest.approx(lag.intercept + 100 * lag.slope)
        assert lag.predicted_se is not None and lag.predicted_se > 0
        assert "extrapolated on paper to 100 instances" in lag.sentence("PostgreSQL")
        cpu = next(f for f in instance_fits(data) if f.metric == "server_cpu_us_per_write")
        assert cpu.slope == pytest.approx(10)
        assert "PostgreSQL CPU per write grows by 10" in cpu.sentence("PostgreSQL")

    def _fit(self, lags: dict[float, list[float]]) -> Fit:
        points = tuple(PointRecord(f"instances={n:g}", "r", "completed", {"instances": n},
                                   ("instances",)) for n in lags)
        data = SuiteData("s", "s", "", TARGET,
                         (AxisRecord("instances", tuple(lags), min(lags)),), "axes", (),
                         points, ({"backend": "pg"},),
                         _pass_rows({("pg", n): v for n, v in lags.items()}))
        return next(f for f in instance_fits(data) if f.metric == "lag_p99_ms")

    def test_a_falling_line_is_not_extrapolated_below_zero(self) -> None:
        """A line that falls below zero before 100 instances says so instead of a negative
        lag."""
        fit = self._fit({2.0: [9.0, 8.0], 4.0: [5.0, 4.5], 8.0: [0.5, 0.4]})
        assert fit.trend and fit.slope < 0 and fit.predicted < 0
        text = fit.sentence("PostgreSQL")
        assert fit.slope == pytest.approx(-1.3, abs=0.01)
        assert "invalidation lag p99 falls by 1.3 +/- " in text
        assert "the line falls below zero before 100 instances, so it says nothing" in text
        assert "extrapolated" not in text

    def test_no_trend(self) -> None:
        """A slope within twice its standard error of zero is said to be no trend."""
        fit = self._fit({2.0: [1.0, 3.0], 4.0: [3.0, 1.0], 8.0: [1.1, 2.9]})
        assert not fit.trend
        assert "shows no trend beyond the passes' spread" in fit.sentence("PostgreSQL")
