"""The line formats: parsing each field, and writing lines the parser reads back."""

from __future__ import annotations

import pytest

from orchestrator.trace.formats import LineProblem, TraceFormat, format_line, parse_line
from orchestrator.trace.ops import OP_KINDS, OpKind, instance_for


class TestParse:
    def test_twitter_line(self) -> None:
        """A twitter line's timestamp is seconds, turned into milliseconds."""
        f = parse_line("12,nz:u:eeW511W3,24,230,7,set,3600", TraceFormat.TWITTER)
        assert (f.timestamp_ms, f.key, f.key_size, f.value_size, f.client, f.op, f.kind,
                f.ttl_s) == (12_000, "nz:u:eeW511W3", 24, 230, "7", "set", OpKind.WRITE, 3600)

    def test_generic_line(self) -> None:
        """A generic line's timestamp is milliseconds already."""
        assert parse_line("1234,k,1,2,c,get,0", TraceFormat.GENERIC).timestamp_ms == 1234

    def test_unknown_word_is_well_formed(self) -> None:
        """An operation word outside memcached's vocabulary parses, with no kind."""
        f = parse_line("0,k,1,2,3,touch,0", TraceFormat.TWITTER)
        assert (f.op, f.kind) == ("touch", None)

    def test_words_are_case_insensitive(self) -> None:
        """GET is get."""
        assert parse_line("0,k,1,2,3,GET,0", TraceFormat.TWITTER).kind is OpKind.GET

    @pytest.mark.parametrize(("line", "expected"), [
        ("0,k,1,2,3,get", "7 comma-separated fields"),
        ("0,k,1,2,3,get,0,9", "7 comma-separated fields"),
        ("x,k,1,2,3,get,0", "timestamp in seconds"),
        ("0,k,1a,2,3,get,0", "key size"),
        ("0,k,1,-2,3,get,0", "value size"),
        ("0,k,1, 2,3,get,0", "value size"),
        ("0,k,1,2_0,3,get,0", "value size"),
        ("0,k,1,2,3,get,1.5", "TTL"),
        ("0,,1,2,3,get,0", "a key"),
        ("0,k,1,2,,get,0", "a client id"),
        ("0,k,1,2,3,,0", "an operation"),
        ("0,k,1,2,3,g3t!,0", "an operation"),
    ])
    def test_malformed(self, line: str, expected: str) -> None:
        """Each kind of malformed line is a LineProblem saying what was expected."""
        with pytest.raises(LineProblem) as caught:
            parse_line(line, TraceFormat.TWITTER)
        assert expected in caught.value.expected


class TestFormat:
    @pytest.mark.parametrize("fmt", list(TraceFormat))
    def test_round_trip(self, fmt: TraceFormat) -> None:
        """A written line parses back to its fields (twitter: the second it falls in)."""
        line = format_line(fmt, 5_678, "k:1", 9, 100, "2", "cas", 60)
        f = parse_line(line.rstrip("\n"), fmt)
        stamp = 5_000 if fmt is TraceFormat.TWITTER else 5_678
        assert (f.timestamp_ms, f.key, f.key_size, f.value_size, f.client, f.op,
                f.ttl_s) == (stamp, "k:1", 9, 100, "2", "cas", 60)


class TestMapping:
    def test_every_memcached_word(self) -> None:
        """The mapping is exactly the issue's table."""
        assert {w: k.value for w, k in OP_KINDS.items()} == {
            "get": "get", "gets": "get", "set": "write", "add": "write", "replace": "write",
            "cas": "write", "append": "write", "prepend": "write", "incr": "write",
            "decr": "write", "delete": "delete"}

    def test_numeric_clients_spread_evenly(self) -> None:
        """Client ids 1..8 on 4 instances: two each, the id modulo 4."""
        assert [instance_for(str(c), 4) for c in range(1, 9)] == [1, 2, 3, 0, 1, 2, 3, 0]

    def test_other_clients_are_stable(self) -> None:
        """A non-numeric id has one instance, the same in every process (BLAKE2b, not hash())."""
        # pinned: a salted hash (Python's hash()) would change these between processes
        assert [instance_for(c, 7) for c in ("frontend-a", "frontend-b", "svc/timeline",
                                             "x")] == [5, 4, 1, 5]
        assert instance_for("frontend-a", 1) == 0

    def test_instances_must_be_positive(self) -> None:
        """Zero instances is refused."""
        with pytest.raises(ValueError, match="instances"):
            instance_for("1", 0)
