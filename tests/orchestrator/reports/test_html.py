"""orchestrator.reports.html: a synthetic run renders every section, self-contained."""

from __future__ import annotations

import csv
import json
import random
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from support.results_history import create_schema, parsed

from orchestrator.errors import UsageError
from orchestrator.reports.html import Series, line_chart, render_html
from orchestrator.results.servercost import CostSample, insert_samples
from orchestrator.results.thresholds import evaluate, store_results

WORKLOAD = """# synthetic
writers: 4
readers: 8
keyspace: 32
ttl: 1
backends: [postgres-cache, postgres-no-local-cache, postgres-no-notify, valkey]
"""
BACKENDS = ("postgres-cache", "postgres-no-local-cache", "postgres-no-notify", "valkey")
MS = 1_000_000


def synthetic_run(con: duckdb.DuckDBPyConnection, run_id: str = "synthetic-1",
                  ops_per_pass: int = 3000, repetitions: int = 2, seed: int = 7,
                  pass_ms: int = 12_000) -> None:
    """Fill the tables with a plausible run: four backends, true key histories, lag events.

    Reads see the newest write visible at some instant before they start: at once for
    valkey and postgres-no-local-cache, after an invalidation lag for postgres-cache, and
    up to a 1 s local TTL late for postgres-no-notify (so it has stale reads).
    """
    rnd = random.Random(seed)
    create_schema(con)
    con.execute("INSERT INTO runs VALUES (?, 'synthetic', ?, ?, TIMESTAMP '2026-01-01 10:00:00',"
                " TIMESTAMP '2026-01-01 10:01:00', 'succeeded', 'testhost', ?, 'abc123', "
                "'{\"mode\": \"none\"}', NULL)",
                [run_id, WORKLOAD, seed, json.dumps({"python": "3.11"})])
    op_rows: list[list[object]] = []
    ev_rows: list[list[object]] = []
    t = 10**12
    for rep in range(repetitions):
        for backend in BACKENDS:
            t += (pass_ms + 5000) * MS
            history: dict[str, list[tuple[int, int, str, int]]] = {}  # start, finish, ver, sv
            server_version = 0
            starts = sorted(rnd.randrange(0, pass_ms * MS) for _ in range(ops_per_pass))
            for i, offset in enumerate(starts):
                start = t + offset
                process, task = i % 2, i % 12
                key = f"k{int(rnd.paretovariate(1.2)) % 32}"
                if rnd.random() < 0.25:
                    lat = int(rnd.lognormvariate(0.2 if backend == "valkey" else 0.9, 0.5) * MS
                              / 3)
                    version = f"{process}:{task}:{i}"
                    server_version += 1
                    sv = server_version if backend.startswith("postgres") else None
                    history.setdefault(key, []).append((start, start + lat, version,
                                                        server_version))
                    op_rows.append([run_id, backend, rep, process, task, "set", key, start, lat,
                                    None, None, version, sv, None])
                    if backend == "postgres-cache":
                        lag = int(rnd.lognormvariate(-1.5, 0.6) * MS)
                        ev_rows.append([run_id, backend, rep, 1 - process, start + lat + lag,
                                        "invalidation", json.dumps(
                                            {"key": key, "server_version": server_version,
                                             "ts_ns": start + lat + lag})])
                    continue
                local = backend in ("postgres-cache", "postgres-no-notify") and rnd.random() < 0.8
                delay = 0
                if local:
                    delay = {"postgres-cache": int(0.4 * MS),
                             "postgres-no-notify": rnd.randrange(0, 1000 * MS)}[backend]
                visible = [w for w in history.get(key, []) if w[1] < start - delay]
                version = max(visible, key=lambda w: w[1])[2] if visible else None
                lat = int((0.01 if local else rnd.lognormvariate(-0.8, 0.4)) * MS)
                if rnd.random() < 0.002:
                    op_rows.append([run_id, backend, rep, process, task, "get", key, start, lat,
                                    None, None, None, None, "timeout"])
                    continue
                op_rows.append([run_id, backend, rep, process, task, "get", key, start, lat,
                                version is not None, local and version is not None, version,
                                None, None])
            samples = [CostSample(t + s * 1000 * MS, server, metric, value)
                       for s in range(pass_ms // 1000 + 1)
                       for server, metric, value in (
                           ("postgres", "xact_commit", 1000.0 + s * 700),
                           ("postgres", "wal_bytes", 1e6 + s * 2.5e5),
                           ("postgres", "table_bytes", 65536.0 + s * 8192),
                           ("postgres", "notification_queue_usage", 0.0001 * s),
                           ("valkey", "total_commands_processed", 50.0 + s * 900),
                           ("valkey", "used_memory", 1.2e6 + s * 1e4))
                       if server == ("valkey" if backend == "valkey" else "postgres")]
            insert_samples(con, run_id, backend, rep, samples)
    with tempfile.TemporaryDirectory() as tmp:
        ops_csv, ev_csv = Path(tmp, "ops.csv"), Path(tmp, "ev.csv")
        with ops_csv.open("w", newline="") as f:
            csv.writer(f).writerows(op_rows)
        with ev_csv.open("w", newline="") as f:
            csv.writer(f).writerows(ev_rows)
        con.execute(f"INSERT INTO ops SELECT * FROM read_csv('{ops_csv}', header=false, "
                    "nullstr='', columns={'run_id': 'VARCHAR', 'backend': 'VARCHAR', "
                    "'repetition': 'INTEGER', 'process': 'INTEGER', 'task': 'INTEGER', "
                    "'op': 'VARCHAR', 'key': 'VARCHAR', 'start_ns': 'BIGINT', "
                    "'latency_ns': 'BIGINT', 'hit': 'BOOLEAN', 'local': 'BOOLEAN', "
                    "'version': 'VARCHAR', 'server_version': 'BIGINT', 'error': 'VARCHAR'})")
        con.execute(f"INSERT INTO events SELECT run_id, backend, repetition, process, "
                    "TIMESTAMP '2026-01-01 10:00:00', ts_ns, 'info', event, data "
                    f"FROM read_csv('{ev_csv}', header=false, columns={{'run_id': 'VARCHAR', "
                    "'backend': 'VARCHAR', 'repetition': 'INTEGER', 'process': 'INTEGER', "
                    "'ts_ns': 'BIGINT', 'event': 'VARCHAR', 'data': 'JSON'})")
    results = evaluate(con, run_id, parsed({
        "*": ["get.p99_ms < 5", "get.hit_rate >= 0.5", "invalidation_lag.p99_ms < 5"],
        "postgres-cache": ["stale_rate == 0"],
        "postgres-no-notify": ["consistency.max_staleness_ms < 1000"],
    }))
    store_results(con, run_id, results)


@pytest.fixture(scope="module")
def report() -> Iterator[str]:
    con = duckdb.connect()
    synthetic_run(con)
    yield render_html(con)
    con.close()


class TestSections:
    """The report of a synthetic run contains every section with its data."""

    @pytest.mark.parametrize("heading", [
        "Workload", "Summary", "Latency percentiles", "Throughput and hit rate over time",
        "Consistency: stale reads and invalidation lag", "Invalidation lag (ms)", "Server cost",
        "Repeated passes", "Thresholds", "Fault impact", "Stampede",
    ])
    def test_heading(self, report: str, heading: str) -> None:
        """Each section heading is present."""
        assert f">{heading}</h" in report

    def test_workload_and_backends(self, report: str) -> None:
        """The workload text is printed (escaped) and every backend appears."""
        assert "keyspace: 32" in report
        for backend in BACKENDS:
            assert backend in report

    def test_charts(self, report: str) -> None:
        """Latency curves for get and set, throughput, hit rate and lag charts are drawn."""
        for title in ("get latency by percentile", "set latency by percentile",
                      "get throughput (1 s buckets)", "get hit rate (1 s buckets)",
                      "stale-read rate", "invalidation lag by percentile"):
            assert f">{title}</text>" in report
        assert report.count("<polyline") >= 12

    def test_thresholds_and_repetitions(self, report: str) -> None:
        """Threshold verdicts and the repeated-pass spread are shown."""
        assert "class='pass'" in report and "class='fail'" in report
        assert "ops/s median" in report and "ops/s CV" in report

    def test_self_contained(self, report: str) -> None:
        """No script, stylesheet or image is fetched from anywhere."""
        assert not re.search(r"<script|<link|src=|https?://(?!www\.w3\.org/2000/svg)", report)
        assert report.startswith("<!DOCTYPE html>")


class TestFaultsAndStampede:
    """Runs with a fault schedule or get_or_set miss events get those sections filled."""

    def test_fault_impact_and_stampede_tables(self) -> None:
        """A fault in one pass and a miss event in another appear as table rows."""
        con = duckdb.connect()
        synthetic_run(con, ops_per_pass=400, repetitions=1)
        (t0, t1), = con.execute("SELECT min(start_ns), max(start_ns) FROM ops "
                                "WHERE backend = 'postgres-cache'").fetchall()
        middle = (t0 + t1) // 2
        for event, at in (("fault_start", middle), ("fault_end", middle + 2 * 10**9)):
            data = {"fault": 0, "label": "pg blackhole", "proxy": "postgres",
                    "toxic": "timeout", "t_ns": at}
            con.execute("INSERT INTO events VALUES ('synthetic-1', 'postgres-cache', 0, -1, "
                        "now()::TIMESTAMP, ?, 'info', ?, ?)", [at, event, json.dumps(data)])
        (v0,), = con.execute("SELECT min(start_ns) FROM ops WHERE backend = 'valkey'"
                             ).fetchall()
        con.executemany("INSERT INTO ops VALUES ('synthetic-1', 'valkey', 0, 0, ?, ?, 'hot', "
                        "?, ?, NULL, false, ?, NULL, NULL)", [
                            (1, "delete", v0 + 1000, 1000, None),
                            (2, "get_or_set", v0 + 2000, 30 * MS, "0:2:L1"),
                            (2, "load", v0 + 3000, 20 * MS, "0:2:L1")])
        html = render_html(con)
        faults = html[html.index("Fault impact</h2>"):html.index("Stampede</h2>")]
        assert "pg blackhole" in faults and "timeout" in faults
        assert "p99 latency per 100 ms" in faults
        stampede = html[html.index("Stampede</h2>"):html.index("Server cost</h2>")]
        assert "<td class=\"l\">valkey</td>" in stampede
        con.close()


class TestModelShape:
    """The synthetic run has the expected consistency shape, so the report shows it."""

    def test_stale_reads_only_without_notify(self) -> None:
        """No stale reads without copies, none older than the lag with NOTIFY, some without."""
        con = duckdb.connect()
        synthetic_run(con, ops_per_pass=800, repetitions=1)
        stale = dict(con.execute("SELECT backend, stale_reads FROM consistency").fetchall())
        assert stale["postgres-no-notify"] > 0
        assert stale["valkey"] == stale["postgres-no-local-cache"] == 0
        # Copies lag 0.4 ms behind in the model: stale reads only younger than that.
        max_age = con.execute("SELECT max_staleness_ms FROM consistency "
                              "WHERE backend = 'postgres-cache'").fetchone()
        assert max_age is not None and max_age[0] <= 0.4
        lag = con.execute("SELECT backend, count FROM invalidation_lag_summary "
                          "WHERE count > 0").fetchall()
        assert [b for b, _ in lag] == ["postgres-cache"]
        con.close()


class TestBuckets:
    """Short passes get finer time buckets so the over-time charts still show a shape."""

    def test_short_pass_uses_100_ms(self) -> None:
        """A 2 s pass is drawn in 100 ms buckets."""
        con = duckdb.connect()
        synthetic_run(con, ops_per_pass=300, repetitions=1, pass_ms=2000)
        page = render_html(con)
        assert ">get throughput (100 ms buckets)</text>" in page
        con.close()


class TestEdgeCases:
    """Sparse runs still render."""

    def test_minimal_run(self) -> None:
        """A run with one backend, no runs row, no cost and no thresholds renders."""
        con = duckdb.connect()
        create_schema(con)
        con.execute("INSERT INTO ops VALUES ('r', 'null', 0, 0, 0, 'get', '<k>', 1, 5, false, "
                    "false, NULL, NULL, NULL)")
        page = render_html(con, "r")
        assert "No row in table runs" in page
        assert "No server cost was sampled" in page
        assert "No thresholds were evaluated" in page
        assert "&lt;k&gt;" not in page or "<k>" not in page
        con.close()

    def test_read_only_database(self, tmp_path: Path) -> None:
        """A read-only results file without the views still renders (TEMP views)."""
        path = tmp_path / "r.duckdb"
        con = duckdb.connect(str(path))
        synthetic_run(con, ops_per_pass=200, repetitions=1)
        for view in ("stale_reads", "consistency_by_pass", "consistency", "invalidation_lag",
                     "invalidation_lag_summary", "server_cost_summary"):
            con.execute(f"DROP VIEW {view}")
        con.close()
        ro = duckdb.connect(str(path), read_only=True)
        page = render_html(ro)
        assert "stale-read rate" in page and "wal_bytes" in page
        ro.close()

    def test_unknown_run(self) -> None:
        """An empty database is reported with what to do."""
        con = duckdb.connect()
        create_schema(con)
        with pytest.raises(UsageError, match="holds no run yet"):
            render_html(con)
        con.close()

    def test_chart_escapes_names(self) -> None:
        """Series names are escaped in the SVG."""
        svg = line_chart([Series("<b>", "#000", [(0, 1), (1, 2)])], title="t", x_label="x",
                         y_label="y")
        assert "&lt;b&gt;" in svg and "<b>" not in svg


class TestAnswer:
    """The report opens with the answer: a box of at most five sentences, the thresholds as
    a coloured matrix, the cautions."""

    def test_box_first(self, report: str) -> None:
        """The box follows the title, before the run's metadata and the workload, with one to
        five sentences: read and write p99, stale reads, thresholds, cautions."""
        box = report.index("<div class='answer'")
        assert report.index("<h1>") < box < report.index("<table class='meta'>")
        inside = report[box:report.index("</div>", box)]
        assert 1 <= inside.count("<p>") <= 5
        assert "Read p99, fastest first: " in inside and "Write p99, fastest first: " in inside
        assert "Thresholds: " in inside

    def test_threshold_matrix(self) -> None:
        """One coloured cell per recorded verdict: meets or misses, with the measured value."""
        con = duckdb.connect()
        synthetic_run(con, ops_per_pass=200, repetitions=1)
        verdicts = con.execute("SELECT passed FROM threshold_results").fetchall()
        page = render_html(con)
        con.close()
        matrix = page[page.index("<div class='answer'"):page.index("<table class='meta'>")]
        assert matrix.count("<td class='meets'>meets (") == sum(1 for (p,) in verdicts if p)
        assert matrix.count("<td class='misses'>misses (") == sum(
            1 for (p,) in verdicts if p is False)
