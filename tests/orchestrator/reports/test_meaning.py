"""The end-of-run console text on hand-made histories: its figures, and each caution raised
exactly when its measured fact holds."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
from support.results_history import add_op, create_schema, parsed

from orchestrator.reports import meaning as console
from orchestrator.results import thresholds
from orchestrator.workload.model import Workload
from orchestrator.workload.validation import parse_workload

S = 1000.0  # ms


def workload(**extra: Any) -> Workload:
    return parse_workload({"backends": ["postgres-cache", "valkey", "null"], **extra})


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    create_schema(con)
    return con


def steady(con: duckdb.DuckDBPyConnection, backend: str, *, gets: int = 10, span_s: float = 6,
           local: bool = False, repetition: int = 0, rate_scale: float = 1.0) -> None:
    """A pass of ``backend``: one set at its start, ``gets`` fresh gets spread over
    ``span_s`` seconds (``rate_scale`` stretches the gets' span: a slower pass)."""
    add_op(con, "set", "k", 0, 1, version=f"{repetition}:0:1", backend=backend,
           repetition=repetition)
    for i in range(gets):
        start = 2 + i * (span_s * S * rate_scale - 3) / max(gets - 1, 1)
        add_op(con, "get", "k", start, 1, version=f"{repetition}:0:1", backend=backend,
               repetition=repetition, local=local)


def cautions(con: duckdb.DuckDBPyConnection, w: Workload | None) -> list[str]:
    return console.cautions(con, "r1", console.lines(con, "r1"), w)


class TestFigures:
    """The table has every figure a reader needs per backend and op."""

    def test_lines_carry_local_share_and_stale_reads(self, con: duckdb.DuckDBPyConnection) \
            -> None:
        """A read of a superseded write counts in the stale rate, local reads in the share."""
        add_op(con, "set", "a", 0, 10, version="0:0:1", backend="pg")
        add_op(con, "set", "a", 20, 10, version="0:0:2", backend="pg")
        add_op(con, "get", "a", 35, 1, version="0:0:1", backend="pg", local=True)  # stale
        add_op(con, "get", "a", 40, 1, version="0:0:2", backend="pg", local=True)
        add_op(con, "get", "a", 41, 1, version="0:0:2", backend="pg")
        add_op(con, "get", "a", 42, 1, version="0:0:2", backend="pg", error="boom")
        [write, read] = console.lines(con, "r1")
        assert (write.op, write.local_rate, write.stale_rate) == ("set", None, None)
        assert (read.op, read.ops, read.errors) == ("get", 4, 1)
        assert read.local_rate == pytest.approx(2 / 3)
        assert read.stale_rate == pytest.approx(1 / 3)
        assert read.stale_beyond == 0
        text = console.table(console.lines(con, "r1"))
        assert text.splitlines()[0].split() == [
            "backend", "op", "ops/s", "p50", "ms", "p99", "ms", "mean", "ms", "local", "stale",
            "stale>inv", "errors"]
        assert "66.7%" in text and "33.3%" in text

    def test_render_has_verdicts_cautions_and_next_commands(
            self, con: duckdb.DuckDBPyConnection) -> None:
        """Recorded threshold verdicts are counted and listed, failures first, then the
        cautions, then the run's report command with its results path."""
        steady(con, "pg")
        verdicts = thresholds.evaluate(con, "r1", parsed({"*": ["get.p99_ms < 100",
                                                                 "get.p99_ms < 0"]}))
        thresholds.store_results(con, "r1", verdicts)
        text = console.render(con, "r1", title="run r1 (w): completed", results="R.duckdb",
                              workload=workload())
        assert "thresholds: 1 of 2 passed\n  FAIL  pg: get.p99_ms < 0" in text
        assert text.index("thresholds:") < text.index("cautions") < text.index("next:")
        assert "python -m orchestrator report r1 --html --results R.duckdb" in text

    def test_no_operations(self, con: duckdb.DuckDBPyConnection) -> None:
        """A run that recorded nothing says so instead of an empty table."""
        assert console.render(con, "r1", title="t", results="R", workload=None) == \
            "t\n(no operations recorded)"


class TestCautions:
    """Each caution is raised by its fact, and only by it."""

    def test_a_steady_repeated_run_has_none(self, con: duckdb.DuckDBPyConnection) -> None:
        """Warm-up, 6 s passes, three steady repetitions, no stale read: nothing to say."""
        for repetition in (1, 2, 3):
            steady(con, "pg", repetition=repetition)
        assert cautions(con, workload(warmup_s=2, repeat=3)) == []

    def test_cold_start(self, con: duckdb.DuckDBPyConnection) -> None:
        """warmup_s 0 is a cold start."""
        steady(con, "pg")
        assert any(c.startswith("cold start") for c in cautions(con, workload()))
        assert not any(c.startswith("cold start") for c in cautions(con, workload(warmup_s=1)))

    def test_short_pass(self, con: duckdb.DuckDBPyConnection) -> None:
        """A pass under 5 s is named with its length."""
        steady(con, "pg", span_s=2)
        [short] = [c for c in cautions(con, workload(warmup_s=1)) if c.startswith("short")]
        assert "(pg, repetition 0) measured 2.0 s" in short

    def test_one_repetition_and_spread(self, con: duckdb.DuckDBPyConnection) -> None:
        """One pass: no spread measured; passes whose rates differ by far more than 10%:
        the spread is named with its coefficient of variation."""
        steady(con, "pg")
        assert any(c.startswith("one repetition") for c in cautions(con, workload(warmup_s=1)))
        steady(con, "pg", repetition=1, rate_scale=1.0)
        steady(con, "pg", repetition=2, rate_scale=2.0)
        found = cautions(con, workload(warmup_s=1, repeat=3))
        assert not any(c.startswith("one repetition") for c in found)
        assert any(c.startswith("spread: pg get ops/s varied") for c in found)

    def test_harness_ceiling_against_null(self, con: duckdb.DuckDBPyConnection) -> None:
        """A backend at 80% or more of the null backend's rate is at the harness ceiling;
        one at half of it is not."""
        steady(con, "null", gets=100)
        steady(con, "fast", gets=90)
        steady(con, "slow", gets=50)
        found = [c for c in cautions(con, workload(warmup_s=1))
                 if c.startswith("harness") and " get " in c]
        assert len(found) == 1 and found[0].startswith("harness ceiling: fast get reached")

    def test_harness_ceiling_without_null(self, con: duckdb.DuckDBPyConnection) -> None:
        """Without null, a closed loop reading locally is named; an open loop is not."""
        steady(con, "pg", local=True)
        closed = cautions(con, workload(warmup_s=1))
        assert any(c.startswith("harness ceiling: pg served 100%") for c in closed)
        opened = cautions(con, workload(warmup_s=1, target_rate={"reads": 1, "writes": 1}))
        assert not any(c.startswith("harness") for c in opened)

    def test_open_loop_behind_schedule(self, con: duckdb.DuckDBPyConnection) -> None:
        """An op kind under 95% of its target rate is behind schedule; one on it is not."""
        steady(con, "pg", gets=60, span_s=6)  # about 10 gets/s
        behind = cautions(con, workload(warmup_s=1, target_rate={"reads": 20}))
        assert any(c.startswith("behind schedule: pg get achieved") for c in behind)
        on_time = cautions(con, workload(warmup_s=1, target_rate={"reads": 10}))
        assert not any(c.startswith("behind") for c in on_time)

    def test_stale_reads(self, con: duckdb.DuckDBPyConnection) -> None:
        """A backend that served a stale read is said not to be comparable on latency."""
        add_op(con, "set", "a", 0, 10, version="0:0:1", backend="pg")
        add_op(con, "set", "a", 20, 10, version="0:0:2", backend="pg")
        add_op(con, "get", "a", 35, 1, version="0:0:1", backend="pg", local=True)
        found = [c for c in cautions(con, None) if c.startswith("stale reads")]
        assert found == ["stale reads: pg served 100% stale gets (p99 staleness 5.0 ms); "
                         "its latency is not comparable with a backend that serves only "
                         "fresh values"]
