"""The reader: operations with their intended times and instances, the header, bad lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.trace import GENERIC_HEADER, OpKind, TraceError, TraceFormat, TraceReader

WriteTrace = Callable[[str, list[str]], Path]  # the write_trace fixture (conftest)

GOOD = ["100,a,1,10,1,get,0", "101,b,2,20,2,set,60", "103,a,1,0,3,delete,0"]


class TestOperations:
    def test_twitter_trace(self, write_trace: WriteTrace) -> None:
        """Each line becomes an operation: offset from the first line, kind, sizes, TTL,
        client, its instance and line number."""
        path = write_trace("t.csv", GOOD)
        ops = list(TraceReader(path, instances=2))
        assert [(o.offset_ms, o.kind, o.key, o.key_size, o.value_size, o.client, o.ttl_s,
                 o.instance, o.line) for o in ops] == [
            (0, OpKind.GET, "a", 1, 10, "1", 0, 1, 1),
            (1000, OpKind.WRITE, "b", 2, 20, "2", 60, 0, 2),
            (3000, OpKind.DELETE, "a", 1, 0, "3", 0, 1, 3)]

    def test_generic_trace_by_its_header(self, write_trace: WriteTrace) -> None:
        """A file starting with the generic header is read in milliseconds."""
        path = write_trace("g.csv", [GENERIC_HEADER, "5,a,1,10,1,get,0", "17,b,1,10,1,get,0"])
        reader = TraceReader(path)
        assert [o.offset_ms for o in reader] == [0, 12]
        assert reader.format is TraceFormat.GENERIC
        assert [o.line for o in reader] == [2, 3]

    def test_generic_insisted_without_header(self, write_trace: WriteTrace) -> None:
        """format generic on a file without the header: an error at line 1."""
        path = write_trace("g.csv", GOOD)
        with pytest.raises(TraceError, match=r"g\.csv, line 1: expected the generic"):
            list(TraceReader(path, fmt="generic"))

    def test_twitter_insisted_on_a_header(self, write_trace: WriteTrace) -> None:
        """format twitter on a generic file: the header is a bad line."""
        path = write_trace("g.csv", [GENERIC_HEADER, *GOOD])
        with pytest.raises(TraceError, match="line 1: expected timestamp in seconds"):
            list(TraceReader(path, fmt="twitter"))

    def test_unknown_words_counted_and_skipped(self, write_trace: WriteTrace) -> None:
        """touch and gat are no bad lines: skipped, counted per word."""
        path = write_trace("t.csv", [GOOD[0], "101,a,1,0,1,touch,30", "102,a,1,0,1,gat,30",
                                     "103,a,1,0,1,touch,30", GOOD[1]])
        reader = TraceReader(path)
        assert [o.line for o in reader] == [1, 5]
        assert reader.skipped_ops == {"touch": 2, "gat": 1}
        assert (reader.skipped, reader.bad_lines, reader.ops, reader.lines) == (3, 0, 2, 5)

    def test_crlf_and_no_final_newline(self, tmp_path: Path) -> None:
        """Windows line ends and a last line without one are read."""
        path = tmp_path / "t.csv"
        path.write_bytes(b"0,a,1,2,1,get,0\r\n1,b,1,2,1,get,0")
        assert [o.key for o in TraceReader(path)] == ["a", "b"]

    def test_reading_again_starts_over(self, write_trace: WriteTrace) -> None:
        """A second iteration reads the file again, its counts from zero."""
        reader = TraceReader(write_trace("t.csv", GOOD))
        assert len(list(reader)) == len(list(reader)) == reader.ops == 3


BAD = {
    "too few fields": "101,a,1,10,1,get",
    "too many fields": "101,a,1,10,1,get,0,0",
    "a non-numeric key size": "101,a,x,10,1,get,0",
    "a non-numeric value size": "101,a,1,ten,1,get,0",
    "a negative value size": "101,a,1,-10,1,get,0",
    "a non-numeric timestamp": "1o1,a,1,10,1,get,0",
    "a non-numeric TTL": "101,a,1,10,1,set,forever",
    "an empty key": "101,,1,10,1,get,0",
    "an empty client": "101,a,1,10,,get,0",
    "an operation that is no word": "101,a,1,10,1,g#t,0",
    "an empty operation": "101,a,1,10,1,,0",
    "an empty line": "",
}


class TestBadLines:
    @pytest.mark.parametrize("case", sorted(BAD))
    @pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
    def test_fail_names_file_and_line(self, write_trace: WriteTrace, case: str,
                                      suffix: str) -> None:
        """on_bad_line fail: a TraceError naming the file and the line number."""
        path = write_trace(f"t.csv{suffix}", [GOOD[0], GOOD[1], BAD[case], GOOD[2]])
        with pytest.raises(TraceError) as caught:
            list(TraceReader(path))
        assert caught.value.line == 3
        assert str(caught.value).startswith(f"{path}, line 3: expected ")

    @pytest.mark.parametrize("case", sorted(BAD))
    def test_skip_counts(self, write_trace: WriteTrace, case: str) -> None:
        """on_bad_line skip: the line is skipped, counted and kept with its number."""
        path = write_trace("t.csv", [GOOD[0], BAD[case], GOOD[1], BAD[case], GOOD[2]])
        reader = TraceReader(path, on_bad_line="skip")
        assert [o.line for o in reader] == [1, 3, 5]
        assert reader.bad_lines == 2
        assert [b.line for b in reader.bad_examples] == [2, 4]

    def test_not_utf8(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 make a bad line."""
        path = tmp_path / "t.csv"
        path.write_bytes(b"0,a,1,2,1,get,0\n1,\xff\xfe,1,2,1,get,0\n")
        with pytest.raises(TraceError, match="line 2: expected UTF-8 text"):
            list(TraceReader(path))

    def test_a_line_without_end(self, tmp_path: Path) -> None:
        """A file that is one endless line is refused without being held whole."""
        path = tmp_path / "t.csv"
        path.write_bytes(b"0,a,1,2,1,get,0\n" + b"x" * 300_000)
        with pytest.raises(TraceError, match="line 2: expected a line of at most"):
            list(TraceReader(path))

    def test_only_the_first_bad_lines_are_kept(self, write_trace: WriteTrace) -> None:
        """Every bad line is counted, the first ten kept."""
        reader = TraceReader(write_trace("t.csv", ["x"] * 25), on_bad_line="skip")
        assert list(reader) == []
        assert reader.bad_lines == 25 and len(reader.bad_examples) == 10

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that is not there: a TraceError naming it."""
        with pytest.raises(TraceError, match=r"nothing\.csv: expected a readable trace file"):
            list(TraceReader(tmp_path / "nothing.csv"))

    @pytest.mark.parametrize(("kwargs", "expected"), [
        ({"fmt": "csv"}, "format one of"), ({"on_bad_line": "ignore"}, "on_bad_line"),
        ({"instances": 0}, "instances"), ({"instances": True}, "instances"),
        ({"instances": 10 ** 6}, "instances as a whole number from 1 to 100,000")])
    def test_bad_options(self, tmp_path: Path, kwargs: dict[str, object],
                         expected: str) -> None:
        """Options are checked when the reader is made."""
        with pytest.raises(TraceError, match=expected):
            TraceReader(tmp_path / "t.csv", **kwargs)  # type: ignore[arg-type]
