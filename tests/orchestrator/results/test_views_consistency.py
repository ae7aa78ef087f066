"""The consistency views on hand-made histories: stale_reads, clock_unjudged_reads,
clock_summary, consistency and consistency_by_pass (DESIGN.md section 5)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzz import examples
from support.results_history import (
    MS,
    OpRow,
    add_clock,
    add_flush,
    add_invalidation,
    add_op,
    create_schema,
)


def stale_rows(con: duckdb.DuckDBPyConnection, where: str = "true") -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT read_start_ns / 1e6, version_read, superseding_version, superseding_op, "
        f"staleness_age_ms, w1_recorded FROM stale_reads WHERE {where} "
        "ORDER BY read_start_ns, version_read"
    ).fetchall()


def build_history(con: duckdb.DuckDBPyConnection) -> None:
    """The hand-made history the stale-read tests share (times in ms)."""
    add_op(con, "set", "a", 0, 10, version="0:0:1")          # W1 [0, 10]
    add_op(con, "set", "a", 12, 1, version="0:1:1", error="timeout")  # failed: no write
    add_op(con, "set", "a", 15, 30, version="0:0:3")         # W3 [15, 45]
    add_op(con, "set", "a", 20, 10, version="0:0:2")         # W2 [20, 30]
    add_op(con, "get", "a", 5, 1, version="w:0:1")           # warm-up version, nothing done yet
    add_op(con, "get", "a", 12, 1, version="w:0:1")          # warm-up version after W1: stale
    add_op(con, "get", "a", 25, 1, version="0:0:1")          # W2 not finished yet: fresh
    add_op(con, "get", "a", 35, 1, version="0:0:1", local=True)  # W2 finished at 30: stale 5
    add_op(con, "get", "a", 50, 1, version="0:0:2")          # W3 overlaps W2: fresh
    add_op(con, "get", "a", 50, 1, version="0:0:3")          # latest: fresh
    add_op(con, "delete", "a", 60, 5)                        # D [60, 65]
    add_op(con, "get", "a", 70, 1, version="0:0:3")          # deleted at 65: stale 5
    add_op(con, "get", "a", 70, 1)                           # miss: never stale
    add_op(con, "set", "a", 80, 2, version="0:0:9", error="timeout")
    add_op(con, "get", "a", 90, 1, version="0:0:9")          # failed set's version: unjudged
    add_op(con, "get", "a", 90, 1, version="0:0:3")          # still deleted: stale 25
    add_op(con, "get", "a", 90, 1, error="boom")             # failed read: not a read
    # Same versions in another backend's pass must not interfere.
    add_op(con, "set", "a", 0, 10, version="0:0:1", backend="c")
    add_op(con, "get", "a", 100, 1, version="0:0:1", backend="c")
    # Another key's writes never supersede key "a".
    add_op(con, "set", "z", 1, 1, version="0:0:7")


class TestStaleReads:
    """The stale_reads view follows DESIGN.md section 5 exactly."""

    def test_hand_built_history(self, con: duckdb.DuckDBPyConnection) -> None:
        """Exactly the reads judged stale by hand are listed, with their ages."""
        build_history(con)
        assert stale_rows(con) == [
            (12.0, "w:0:1", "0:0:1", "set", 2.0, False),
            (35.0, "0:0:1", "0:0:2", "set", 5.0, True),
            (70.0, "0:0:3", None, "delete", 5.0, True),
            (90.0, "0:0:3", None, "delete", 25.0, True),
        ]

    def test_carries_reader_identity(self, con: duckdb.DuckDBPyConnection) -> None:
        """Each stale read names its pass, reader, key and whether it was served locally."""
        build_history(con)
        row = con.execute(
            "SELECT run_id, backend, repetition, process, task, key, local, "
            "w1_finish_ns, superseding_finish_ns, staleness_age_ns "
            "FROM stale_reads WHERE read_start_ns = 35 * 1000000"
        ).fetchone()
        assert row == ("r1", "b", 0, 0, 0, "a", True, 10 * MS, 30 * MS, 5 * MS)

    def test_earliest_superseding_write_defines_age(
        self, con: duckdb.DuckDBPyConnection
    ) -> None:
        """With several superseding writes, the age counts from the first one to finish."""
        add_op(con, "set", "k", 0, 1, version="1")
        add_op(con, "set", "k", 2, 8, version="2")   # finishes at 10
        add_op(con, "set", "k", 3, 2, version="3")   # finishes at 5 (started later)
        add_op(con, "set", "k", 6, 1, version="4")   # finishes at 7
        add_op(con, "get", "k", 20, 1, version="1")
        assert stale_rows(con) == [(20.0, "1", "3", "set", 15.0, True)]

    def test_equal_starts_are_all_considered(self, con: duckdb.DuckDBPyConnection) -> None:
        """Writes sharing a start time are all candidates for superseding."""
        add_op(con, "set", "k", 0, 1, version="1")
        add_op(con, "set", "k", 5, 10, version="2")
        add_op(con, "set", "k", 5, 1, version="3")
        add_op(con, "get", "k", 8, 1, version="1")
        assert stale_rows(con) == [(8.0, "1", "3", "set", 2.0, True)]

    def test_repetitions_are_separate_passes(self, con: duckdb.DuckDBPyConnection) -> None:
        """A write in one repetition never supersedes a read in another."""
        add_op(con, "set", "k", 0, 1, version="1", repetition=0)
        add_op(con, "set", "k", 0, 1, version="1", repetition=1)
        add_op(con, "set", "k", 2, 1, version="2", repetition=1)
        add_op(con, "get", "k", 5, 1, version="1", repetition=0)
        add_op(con, "get", "k", 5, 1, version="1", repetition=1)
        assert con.execute("SELECT repetition FROM stale_reads").fetchall() == [(1,)]


class TestBeyondInvalidation:
    """stale_reads tells reads within the invalidation lag from reads after it."""

    def test_classification(self, con: duckdb.DuckDBPyConnection) -> None:
        """Told before the read: TRUE; told after: FALSE; own write: TRUE; delete: NULL."""
        kw = {"backend": "pg"}
        add_op(con, "set", "k", 0, 1, version="0:0:1", process=0, server_version=1, **kw)
        add_op(con, "set", "k", 2, 1, version="0:0:2", process=0, server_version=2, **kw)
        add_op(con, "get", "k", 4, 1, version="0:0:1", process=0, local=True, **kw)
        add_op(con, "get", "k", 5, 1, version="0:0:1", process=1, local=True, **kw)
        add_op(con, "get", "k", 8, 1, version="0:0:1", process=1, local=True, **kw)
        add_op(con, "delete", "k", 10, 1, process=0, **kw)
        add_op(con, "get", "k", 12, 1, version="0:0:2", process=1, local=True, **kw)
        add_op(con, "set", "j", 0, 1, version="0:0:3", process=0, server_version=3, **kw)
        add_op(con, "set", "j", 2, 1, version="0:0:4", process=0, server_version=4, **kw)
        add_op(con, "get", "j", 9, 1, version="0:0:3", process=1, local=True, **kw)
        add_invalidation(con, 1, "k", 2, 6)
        add_invalidation(con, 1, "j", 5, 7)   # a coalesced newer version counts
        rows = con.execute(
            "SELECT key, process, read_start_ns / 1000000, superseding_process, "
            "superseding_server_version, invalidation_arrival_ns / 1000000, beyond_invalidation "
            "FROM stale_reads ORDER BY read_start_ns"
        ).fetchall()
        assert rows == [
            ("k", 0, 4, 0, 2, None, True),
            ("k", 1, 5, 0, 2, 6, False),
            ("k", 1, 8, 0, 2, 6, True),
            ("j", 1, 9, 0, 4, 7, True),
            ("k", 1, 12, 0, None, None, None),
        ]
        counts = con.execute(
            "SELECT stale_reads, stale_beyond_invalidation FROM consistency").fetchall()
        assert counts == [(5, 3)]

    def test_flush_counts_as_told(self, con: duckdb.DuckDBPyConnection) -> None:
        """A local-cache flush after the superseding write finished tells the reader too."""
        kw = {"backend": "pg"}
        add_op(con, "set", "k", 0, 1, version="0:0:1", process=0, server_version=1, **kw)
        add_op(con, "set", "k", 2, 1, version="0:0:2", process=0, server_version=2, **kw)
        add_op(con, "get", "k", 5, 1, version="0:0:1", process=1, local=True, **kw)
        add_op(con, "get", "k", 9, 1, version="0:0:1", process=1, local=True, **kw)
        add_flush(con, 1, 2.5)  # before W2 finished: tells nothing
        add_flush(con, 1, 7)
        rows = con.execute(
            "SELECT read_start_ns / 1000000, invalidation_arrival_ns / 1000000, "
            "beyond_invalidation FROM stale_reads ORDER BY read_start_ns").fetchall()
        assert rows == [(5, 7, False), (9, 7, True)]


    def test_unversioned_invalidations(self, con: duckdb.DuckDBPyConnection) -> None:
        """Without versions, the reader was told once any invalidation of the key (or a flush)
        reached its process after the superseding write finished; in a pass that records no
        invalidations at all it cannot be told."""
        kw = {"backend": "vk"}
        add_op(con, "set", "k", 0, 1, version="0:0:1", process=0, **kw)
        add_op(con, "set", "k", 2, 1, version="0:0:2", process=0, **kw)    # W2 ends at 3
        add_op(con, "get", "k", 5, 1, version="0:0:1", process=1, local=True, **kw)
        add_op(con, "get", "k", 8, 1, version="0:0:1", process=1, local=True, **kw)
        add_op(con, "delete", "j", 0, 1, process=0, **kw)                  # a delete: judged
        add_op(con, "get", "j", 4, 1, version="w:0:1", process=2, local=True, **kw)
        add_invalidation(con, 1, "k", None, 2.5, backend="vk")  # before W2 finished
        add_invalidation(con, 1, "k", None, 6, backend="vk")
        add_flush(con, 2, 3.5, backend="vk")
        add_op(con, "set", "k", 0, 1, version="0:0:1", process=0, backend="valkey")
        add_op(con, "set", "k", 2, 1, version="0:0:2", process=0, backend="valkey")
        add_op(con, "get", "k", 5, 1, version="0:0:1", process=1, backend="valkey")
        rows = con.execute(
            "SELECT backend, key, read_start_ns / 1000000, invalidation_arrival_ns / 1000000, "
            "beyond_invalidation FROM stale_reads ORDER BY backend, read_start_ns").fetchall()
        assert rows == [("valkey", "k", 5, None, None), ("vk", "j", 4, 3.5, True),
                        ("vk", "k", 5, 6, False), ("vk", "k", 8, 6, True)]


class TestClockUncertainty:
    """Workers on clocks of their own: judgements the uncertainty could turn are unjudged."""

    def _history(self, con: duckdb.DuckDBPyConnection) -> None:
        """Key k: W1 [0, 1] by process 2, W2 [2.5, 3.5] by process 0; reads of W1 by
        process 1 at 3, 4, 5 and 8 ms. Key j: W1 [0, 1] by process 2, W2 [1.5, 2] by process
        0 (0.5 ms after W1 finished); a read of W1 at 6 ms."""
        kw = {"backend": "pg"}
        add_op(con, "set", "k", 0, 1, version="2:0:1", process=2, server_version=1, **kw)
        add_op(con, "set", "k", 2.5, 1, version="0:0:2", process=0, server_version=2, **kw)
        for start in (3, 4, 5, 8):
            add_op(con, "get", "k", start, 0.1, version="2:0:1", process=1, task=1,
                   local=True, **kw)
        add_op(con, "set", "j", 0, 1, version="2:0:3", process=2, server_version=3, **kw)
        add_op(con, "set", "j", 1.5, 0.5, version="0:0:4", process=0, server_version=4, **kw)
        add_op(con, "get", "j", 6, 0.1, version="2:0:3", process=1, task=1, local=True, **kw)

    def _verdicts(self, con: duckdb.DuckDBPyConnection) -> tuple[list[float], list[float]]:
        stale = [r[0] for r in con.execute("SELECT read_start_ns / 1e6 FROM stale_reads "
                                           "ORDER BY 1").fetchall()]
        unjudged = [r[0] for r in con.execute("SELECT read_start_ns / 1e6 FROM "
                                              "clock_unjudged_reads ORDER BY 1").fetchall()]
        return stale, unjudged

    def _uncertain(self, con: duckdb.DuckDBPyConnection, ms: float = 0.5) -> None:
        for process in (0, 1, 2):
            add_clock(con, process, ms)

    def test_no_uncertainty_judges_all(self, con: duckdb.DuckDBPyConnection) -> None:
        """One clock: the reads after W2 finished are stale, the one before fresh."""
        self._history(con)
        assert self._verdicts(con) == ([4.0, 5.0, 6.0, 8.0], [])

    def test_within_the_margin_is_unjudged(self, con: duckdb.DuckDBPyConnection) -> None:
        """0.5 ms per worker (1 ms for a pair): reads within 1 ms of W2's finish, either
        side, are unjudged; so is the read of j, whose W2 started only 0.5 ms after W1
        finished; reads further away are judged; the counts say so."""
        self._history(con)
        self._uncertain(con)
        assert self._verdicts(con) == ([5.0, 8.0], [3.0, 4.0, 6.0])
        row = con.execute("SELECT stale_reads, unjudged_reads, clock_unjudged_reads "
                          "FROM consistency").fetchall()
        assert row == [(2, 3, 3)]
        margin = con.execute("SELECT DISTINCT clock_uncertainty_ms FROM clock_unjudged_reads"
                             ).fetchall()
        assert margin == [(1.0,)]

    def test_flush_within_the_margin_leaves_beyond_unjudged(
            self, con: duckdb.DuckDBPyConnection) -> None:
        """A flush 0.2 ms after W2 finished, clocks within 0.5 ms: it may have come before
        W2, so whether the read at 8 ms was told is unjudged (NULL); with one clock, TRUE."""
        self._history(con)
        add_flush(con, 1, 3.7)
        told = "SELECT beyond_invalidation FROM stale_reads WHERE read_start_ns = 8 * 1e6"
        assert con.execute(told).fetchall() == [(True,)]
        self._uncertain(con)
        assert con.execute(told).fetchall() == [(None,)]

    def test_lag_counts_a_flush_only_when_certainly_after(
            self, con: duckdb.DuckDBPyConnection) -> None:
        """A flush 0.2 ms after the write (clocks within 0.5 ms each) delivers nothing; one
        2 ms after does; the lag rows carry the pair's uncertainty."""
        kw = {"backend": "pg"}
        add_op(con, "set", "k", 0, 1, version="0:0:1", process=0, server_version=1, **kw)
        add_op(con, "get", "k", 5, 1, process=1, **kw)
        add_flush(con, 1, 1.2)
        add_flush(con, 1, 3)
        add_clock(con, 0, 0.5)
        add_clock(con, 1, 0.5)
        rows = con.execute("SELECT via, lag_ms, clock_uncertainty_ms FROM invalidation_lag"
                           ).fetchall()
        assert rows == [("flush", 2.0, 1.0)]
        assert con.execute("SELECT clock_uncertainty_ms FROM invalidation_lag_summary"
                           ).fetchall() == [(1.0,)]

    def test_clock_summary(self, con: duckdb.DuckDBPyConnection) -> None:
        """Offsets at start and end, their drift and the larger uncertainty, per worker."""
        con.execute("INSERT INTO clock_offsets VALUES ('r1', 'pg', 1, 0, 'start', 100, -500, "
                    "20, 40, 16, 'n0', 'h0'), ('r1', 'pg', 1, 0, 'end', 900, -350, 30, 60, "
                    "16, 'n0', 'h0')")
        assert con.execute("SELECT process, node, host, start_offset_ns, end_offset_ns, "
                           "drift_ns, uncertainty_ns, best_round_trip_ns FROM clock_summary"
                           ).fetchall() == [(0, "n0", "h0", -500, -350, 150, 30, 40)]


class TestConsistency:
    """The consistency views count reads, stale reads and ages per run/backend and pass."""

    def test_summary_of_hand_built_history(self, con: duckdb.DuckDBPyConnection) -> None:
        """Counts, rate and age quantiles match the hand-judged history."""
        build_history(con)
        rows = con.execute(
            "SELECT backend, passes, reads, hits, local_reads, stale_reads, stale_local_reads, "
            "stale_rate, unjudged_reads, p50_staleness_ms, p99_staleness_ms, max_staleness_ms "
            "FROM consistency ORDER BY backend"
        ).fetchall()
        assert rows == [
            ("b", 1, 10, 9, 1, 4, 1, 4 / 10, 1, 5.0, 25.0, 25.0),
            ("c", 1, 1, 1, 0, 0, 0, 0.0, 0, 0.0, 0.0, 0.0),
        ]

    def test_by_pass_splits_repetitions(self, con: duckdb.DuckDBPyConnection) -> None:
        """consistency_by_pass has one row per repetition; consistency sums them."""
        add_op(con, "set", "k", 0, 1, version="1", repetition=0)
        add_op(con, "get", "k", 5, 1, version="1", repetition=0)
        add_op(con, "set", "k", 0, 1, version="1", repetition=1)
        add_op(con, "set", "k", 2, 1, version="2", repetition=1)
        add_op(con, "get", "k", 5, 1, version="1", repetition=1)
        by_pass = con.execute(
            "SELECT repetition, reads, stale_reads, stale_rate FROM consistency_by_pass "
            "ORDER BY repetition"
        ).fetchall()
        assert by_pass == [(0, 1, 0, 0.0), (1, 1, 1, 1.0)]
        total = con.execute("SELECT passes, reads, stale_reads, stale_rate FROM consistency")
        assert total.fetchall() == [(2, 2, 1, 0.5)]


def brute_force(ops: Sequence[OpRow]) -> list[tuple[int, str, int]]:
    """O(n^2) reference: (read start, version read, age) of each stale read, one pass."""
    # (key, start, finish, version) of each write that happened.
    writes = [(o[1], o[2], o[2] + o[3], o[4]) for o in ops
              if o[0] in ("set", "delete") and not o[5]]
    recorded = {o[4] for o in ops if o[0] == "set"}
    out = []
    for op, key, start, _lat, version, error in ops:
        if op != "get" or error or version is None:
            continue
        if version in recorded:
            w1 = [w for w in writes if w[3] == version]
            if not w1:
                continue  # only a failed set wrote it: unjudged
            w1_finish = w1[0][2]
        else:
            w1_finish = -(10**18)  # a warm-up write: finished before the pass
        finishes = [f for k, s, f, _v in writes if k == key and s > w1_finish and f < start]
        if finishes:
            out.append((start, version, start - min(finishes)))
    return sorted(out)


history = st.lists(
    st.tuples(
        st.sampled_from(["get", "get", "set", "delete"]),
        st.sampled_from(["a", "b"]),
        st.integers(0, 60),
        st.integers(0, 15),
        st.integers(0, 12),
        st.booleans().map(lambda failed: "err" if failed else None),
    ),
    max_size=40,
)


class TestAgainstBruteForce:
    """The window/ASOF formulation agrees with the quadratic definition."""

    @settings(max_examples=examples(60), deadline=None)
    @given(history)
    def test_random_histories(self, raw: list[tuple[str, str, int, int, int, Any]]) -> None:
        """Random small histories give the same stale reads as a direct check."""
        ops: list[OpRow] = []
        for i, (op, key, start, lat, vi, err) in enumerate(raw):
            if op == "set":
                # Unique write ids; a few failed ones.
                ops.append((op, key, start, lat, f"s{i}", err if vi % 4 == 0 else None))
            elif op == "delete":
                ops.append((op, key, start, lat, None, None))
            else:
                # Reads name an earlier write, a warm-up write, or nothing (a miss).
                same_key_set = vi < len(raw) and raw[vi][0] == "set" and raw[vi][1] == key
                version = f"s{vi}" if same_key_set else ("warm" if vi % 3 == 0 else None)
                ops.append((op, key, start, lat, version, None))
        if not ops:
            return
        c = duckdb.connect()
        try:
            create_schema(c)
            c.executemany(
                "INSERT INTO ops VALUES ('r', 'b', 0, 0, 0, ?, ?, ?, ?, NULL, false, ?, NULL, ?)",
                [list(o) for o in ops],
            )
            got = c.execute(
                "SELECT read_start_ns, version_read, staleness_age_ns FROM stale_reads "
                "ORDER BY ALL"
            ).fetchall()
        finally:
            c.close()
        assert got == brute_force(ops)


@pytest.mark.slow
class TestScale:
    """The views stay fast on millions of synthetic ops (prints the timing)."""

    def test_four_million_ops(self) -> None:
        """Stale reads and consistency over ~4M ops run in seconds, not minutes."""
        c = duckdb.connect()
        create_schema(c)
        n = 4_000_000
        t0 = time.perf_counter()
        # 25% sets, 75% gets over 10k keys. A get reads the key of the set just before it;
        # odd ones return that key's previous write (so some are stale), even ones the latest.
        c.execute(f"""
            INSERT INTO ops
            SELECT 'r', 'b', 0, (i % 8)::INTEGER, (i % 64)::INTEGER,
                   CASE WHEN i % 4 = 0 THEN 'set' ELSE 'get' END,
                   'k' || ((i - i % 4) % 10000), i * 1000, 800 + (i % 700),
                   CASE WHEN i % 4 = 0 THEN NULL ELSE true END, i % 3 = 0,
                   CASE WHEN i % 4 = 0 THEN 'v' || i
                        WHEN i - i % 4 - 10000 * (i % 2) < 0 THEN 'warm'
                        ELSE 'v' || (i - i % 4 - 10000 * (i % 2)) END,
                   CASE WHEN i % 4 = 0 THEN i ELSE NULL END, NULL
            FROM range({n}) t(i)
        """)
        t1 = time.perf_counter()
        row = c.execute("SELECT reads, stale_reads, max_staleness_ms FROM consistency").fetchone()
        t2 = time.perf_counter()
        assert row is not None and row[0] == 3 * n // 4
        print(f"\n{n} ops: load {t1 - t0:.2f} s, consistency {t2 - t1:.2f} s, result {row}")
        c.close()

    def test_invalidation_lag_at_scale(self) -> None:
        """1M versioned sets over 4 processes, 3M invalidation events: lag summary timing."""
        c = duckdb.connect()
        create_schema(c)
        n = 1_000_000
        t0 = time.perf_counter()
        c.execute(f"""
            INSERT INTO ops
            SELECT 'r', 'pg', 0, (i % 4)::INTEGER, (i % 32)::INTEGER, 'set', 'k' || (i % 5000),
                   i * 1000, 900, NULL, NULL, 'v' || i, i, NULL
            FROM range({n}) t(i)
        """)
        c.execute(f"""
            INSERT INTO events
            SELECT 'r', 'pg', 0, p::INTEGER, NULL, i * 1000 + 900 + 200 + (i % 300), 'info',
                   'invalidation',
                   json_object('key', 'k' || (i % 5000), 'server_version', i)
            FROM range({n}) t(i), range(4) q(p) WHERE p <> i % 4
        """)
        t1 = time.perf_counter()
        row = c.execute("SELECT count, missing, p50_ms, max_ms "
                        "FROM invalidation_lag_summary").fetchone()
        t2 = time.perf_counter()
        assert row is not None and row[0] == 3 * n and row[1] == 0
        print(f"\n{n} sets, {3 * n} events: load {t1 - t0:.2f} s, "
              f"lag summary {t2 - t1:.2f} s, result {row}")
        c.close()
