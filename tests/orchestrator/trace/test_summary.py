"""The summary's figures, against a trace made by hand."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.trace import GENERIC_HEADER, TraceReader, summarize
from orchestrator.trace import summary as summary_module

WriteTrace = Callable[[str, list[str]], Path]  # the write_trace fixture (conftest)

HAND = [
    "10,a,3,100,1,get,0",
    "10,b,5,200,2,set,60",
    "11,a,3,300,1,set,0",
    "12,c,7,0,3,delete,0",
    "12,a,3,0,1,touch,0",
    "bad line",
    "13,b,5,400,2,cas,60",
    "15,d,9,50,4,incr,3600",
    "14,a,3,300,1,gets,0",
]


class TestHandMade:
    @pytest.fixture
    def figures(self, write_trace: WriteTrace) -> dict[str, object]:
        reader = TraceReader(write_trace("hand.csv", HAND), on_bad_line="skip", instances=2)
        return summarize(reader).as_dict()

    def test_mix(self, figures: dict[str, object]) -> None:
        """Operations per kind and per word; the skipped word and the bad line counted."""
        assert figures["lines"] == 9 and figures["ops"] == 7
        assert figures["kinds"] == {"get": 2, "write": 4, "delete": 1}
        assert figures["words"] == {"set": 2, "cas": 1, "delete": 1, "get": 1, "gets": 1,
                                    "incr": 1}
        assert (figures["skipped"], figures["skipped_ops"]) == (1, {"touch": 1})
        assert figures["bad_lines"] == 1
        assert figures["bad_examples"] == [
            "line 6: expected 7 comma-separated fields, found 1 in 'bad line'"]

    def test_keys_and_sizes(self, figures: dict[str, object]) -> None:
        """Four keys, exactly; key sizes over every operation, value sizes over writes."""
        assert figures["unique_keys"] == {"count": 4, "exact": True, "exact_limit": 100_000,
                                          "method": "exact", "standard_error": 0.0}
        assert figures["key_size"] == {"count": 7, "min": 3, "mean": 5.0, "max": 9,
                                       "p50": 5, "p90": 9, "p99": 9, "p99.9": 9}
        assert figures["value_size"] == {"count": 4, "min": 50, "mean": 237.5, "max": 400,
                                         "p50": 200, "p90": 400, "p99": 400, "p99.9": 400}

    def test_ttls(self, figures: dict[str, object]) -> None:
        """TTLs of the writes: one without expiry, 60 s the most common."""
        ttl = figures["ttl"]
        assert isinstance(ttl, dict)
        assert (ttl["writes"], ttl["no_expiry"], ttl["common"], ttl["other"]) == (
            4, 1, [[60, 2], [0, 1], [3600, 1]], 0)
        assert (ttl["seconds"]["p50"], ttl["seconds"]["max"]) == (60, 3600)

    def test_clients_time_and_rate(self, figures: dict[str, object]) -> None:
        """Four clients on two instances; 10 s .. 15 s is six one-second ticks; the line
        earlier than the one before it is counted."""
        assert figures["clients"] == {"count": 4, "capped": False}
        assert figures["ops_per_instance"] == [3, 4]
        assert figures["duration_s"] == 6.0
        assert figures["rate_per_s"] == pytest.approx(7 / 6)
        assert figures["out_of_order"] == 1

    def test_storable_and_printable(self, write_trace: WriteTrace) -> None:
        """The dict is JSON; the text names each figure."""
        summary = summarize(TraceReader(write_trace("hand.csv", HAND), on_bad_line="skip",
                                        instances=2))
        assert json.loads(json.dumps(summary.as_dict())) == summary.as_dict()
        text = summary.text()
        for part in ("9 lines, 7 operations", "get 2 (28.6 %)", "touch 1", "1 bad lines",
                     "unique keys: 4 (exact)", "value sizes (writes): min 50, p50 200",
                     "no expiry 1 (25.0 %)", "60 s 50.0 %", "operations per instance: 3, 4",
                     "duration: 6.000 s, 1.2 ops/s", "1 operations earlier"):
            assert part in text, part


class TestScale:
    def test_generic_tick_is_a_millisecond(self, write_trace: WriteTrace) -> None:
        """A generic trace from 5 ms to 14 ms lasts 10 ms."""
        path = write_trace("g.csv", [GENERIC_HEADER, "5,a,1,1,1,get,0", "14,a,1,1,1,get,0"])
        figures = summarize(TraceReader(path)).as_dict()
        assert (figures["duration_s"], figures["rate_per_s"]) == (0.01, 200.0)

    def test_unique_keys_past_the_bound(self, write_trace: WriteTrace,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """Past the exact bound the count is a HyperLogLog estimate, said so, and within five
        standard errors of the truth."""
        monkeypatch.setattr(summary_module, "EXACT_KEYS", 1_000)
        rng = random.Random(5)
        keys = [f"key-{rng.getrandbits(64):x}" for _ in range(30_000)]
        path = write_trace("t.csv", [f"0,{k},10,1,1,get,0" for k in keys + keys[:5_000]])
        unique = summarize(TraceReader(path)).as_dict()["unique_keys"]
        assert unique["method"] == "hyperloglog" and not unique["exact"]
        assert unique["count"] == pytest.approx(30_000, rel=5 * unique["standard_error"])
        assert "HyperLogLog estimate" in summarize(TraceReader(path)).text()

    def test_empty_trace(self, write_trace: WriteTrace) -> None:
        """An empty file summarises to zeros, printably."""
        summary = summarize(TraceReader(write_trace("e.csv", [])))
        assert summary.as_dict()["ops"] == 0 and summary.as_dict()["rate_per_s"] is None
        assert "0 operations" in summary.text()
