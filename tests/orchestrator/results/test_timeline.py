"""orchestrator.results.timeline: a worker's clock file turned into the ingest's mapping."""

from __future__ import annotations

from pathlib import Path

import duckdb

from orchestrator.results.timeline import ClockMap, clock_map, read_clock


class TestClockMap:
    """Offsets at the start and end of a pass: a linear map between them."""

    def test_no_file_is_the_identity(self, tmp_path: Path) -> None:
        """A worker without a clock file shares the parent's clock: nothing is mapped."""
        mapped = clock_map(read_clock(tmp_path / "missing.clock.csv"))
        assert mapped.identity and mapped(123) == 123 and mapped.sql("start_ns") == "start_ns"

    def test_drift_is_followed(self, tmp_path: Path) -> None:
        """Offset -1000 at worker time 0 and -3000 at worker time 1e9: -2000 halfway."""
        path = tmp_path / "w.clock.csv"
        path.write_text("start,0,-1000,40,80,16,n1,h1\n"
                        "end,1000000000,-3000,50,100,16,n1,h1\n"
                        "end,cut sh")  # a last line cut short by a full disk is skipped
        measured = read_clock(path)
        assert [m.stage for m in measured] == ["start", "end"]
        assert measured[1].uncertainty_ns == 50 and measured[0].host == "h1"
        mapped = clock_map(measured)
        assert (mapped(0), mapped(500_000_000), mapped(1_000_000_000)) == (
            -1000, 499_998_000, 999_997_000)

    def test_sql_matches_python(self) -> None:
        """The SQL the ingest applies computes what the map computes."""
        mapped = ClockMap(offset_ns=-3_000_000_123, at_ns=10**13, slope=-2.5e-6)
        con = duckdb.connect()
        for t in (10**13, 10**13 + 7_654_321_987, 10**13 - 5_000):
            (value,) = con.execute(f"SELECT {mapped.sql(str(t) + '::BIGINT')}").fetchone()
            assert value == mapped(t)
        assert con.execute(f"SELECT {mapped.sql('NULL::BIGINT')}").fetchone() == (None,)
        con.close()

    def test_single_measurement_is_a_constant(self, tmp_path: Path) -> None:
        """One measurement (a worker that died before the end): a constant offset."""
        path = tmp_path / "w.clock.csv"
        path.write_text("start,500,42,1,2,8,n,h\n")
        assert clock_map(read_clock(path)) == ClockMap(42, 500, 0.0)
