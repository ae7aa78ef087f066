"""The generator: its output matches its parameters, within stated statistical tolerances
(five standard deviations, with a fixed seed), and the same parameters give the same bytes."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.trace import (
    Arrivals,
    Distribution,
    OpKind,
    SynthSpec,
    TraceError,
    TraceFormat,
    TraceReader,
    summarize,
    synthesize,
)
from orchestrator.trace.synth import parse_mix

N = 40_000


def _ops(tmp_path: Path, spec: SynthSpec, name: str = "t.csv.zst") -> TraceReader:
    path = tmp_path / name
    synthesize(spec, path)
    return TraceReader(path, instances=3)


def _within(count: int, n: int, p: float) -> bool:
    """count is within five binomial standard deviations of n * p."""
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1


class TestMatchesParameters:
    def test_mix(self, tmp_path: Path) -> None:
        """Each word's share is its share of the mix."""
        mix = {"get": 0.6, "gets": 0.1, "set": 0.2, "delete": 0.05, "incr": 0.05}
        spec = SynthSpec(ops=N, mix=tuple(mix.items()))
        words = Counter(o.op for o in _ops(tmp_path, spec))
        assert set(words) == set(mix) and sum(words.values()) == N
        for word, share in mix.items():
            assert _within(words[word], N, share), (word, words[word])

    @pytest.mark.parametrize("theta", [0.0, 0.99])
    def test_zipf(self, tmp_path: Path, theta: float) -> None:
        """The most popular key's share is 1 / H(keys, theta); every key stays in range."""
        keys = 1000
        spec = SynthSpec(ops=N, keys=keys, zipf=theta)
        counts = Counter(o.key for o in _ops(tmp_path, spec))
        assert all(0 <= int(k.removeprefix("k:")) < keys for k in counts)
        p0 = 1 / sum(k ** -theta for k in range(1, keys + 1))
        assert _within(counts["k:0"], N, p0), counts["k:0"]
        if theta:
            assert counts.most_common(1)[0][0] == "k:0"
            assert _within(counts["k:9"], N, p0 * 10 ** -theta)

    def test_fixed_sizes_and_ttl(self, tmp_path: Path) -> None:
        """Fixed distributions: every key of that size, every write of that size and TTL;
        gets and deletes carry TTL 0, deletes value size 0."""
        spec = SynthSpec(ops=5_000, mix=(("get", 0.5), ("set", 0.4), ("delete", 0.1)),
                         key_size=Distribution.parse("40", "k"),
                         value_size=Distribution.parse("1000", "v"),
                         ttl=Distribution.parse("300", "t"))
        for o in _ops(tmp_path, spec):
            assert o.key_size == 40
            if o.kind is OpKind.WRITE:
                assert (o.value_size, o.ttl_s) == (1000, 300)
            else:
                assert o.ttl_s == 0
                assert o.value_size == (0 if o.kind is OpKind.DELETE else 1000)

    def test_uniform_and_lognormal_sizes(self, tmp_path: Path) -> None:
        """A..B stays within A..B with its mean in the middle; lognormal's median is its
        median; a key keeps its one key size."""
        spec = SynthSpec(ops=N, mix=(("set", 1.0),), keys=2000,
                         key_size=Distribution.parse("10..250", "k"),
                         value_size=Distribution.parse("lognormal:230,1.0", "v"))
        ops = list(_ops(tmp_path, spec))
        key_sizes = {o.key: o.key_size for o in ops}
        assert all(key_sizes[o.key] == o.key_size for o in ops)
        sizes = list(key_sizes.values())
        assert min(sizes) >= 10 and max(sizes) <= 250
        # the mean of n uniform draws: standard deviation (B - A) / sqrt(12 n)
        assert abs(statistics.fmean(sizes) - 130) <= 5 * 240 / math.sqrt(12 * len(sizes))
        values = sorted(o.value_size for o in ops)
        # the sample median's share below 230 is binomial(n, 0.5)
        below = sum(v < 230 for v in values)
        assert _within(below, N, 0.5)
        assert values[-1] > 230 * math.e ** 3  # a long right tail

    def test_ttl_choice(self, tmp_path: Path) -> None:
        """V=W,...: each TTL with its weight's share of the writes; TTL 0 is no expiry."""
        spec = SynthSpec(ops=N, mix=(("set", 1.0),),
                         ttl=Distribution.parse("0=1,60=2,3600=5", "t"))
        ttls = Counter(o.ttl_s for o in _ops(tmp_path, spec))
        assert set(ttls) == {0, 60, 3600}
        for value, share in ((0, 1 / 8), (60, 2 / 8), (3600, 5 / 8)):
            assert _within(ttls[value], N, share)

    def test_clients_and_instances(self, tmp_path: Path) -> None:
        """Client ids 1..C, uniformly; each always on the same instance, id mod 3."""
        spec = SynthSpec(ops=N, clients=6)
        placed: dict[str, set[int]] = {}
        counts: Counter[str] = Counter()
        for o in _ops(tmp_path, spec):
            placed.setdefault(o.client, set()).add(o.instance)
            counts[o.client] += 1
        assert placed == {str(c): {c % 3} for c in range(1, 7)}
        assert all(_within(n, N, 1 / 6) for n in counts.values())

    @pytest.mark.parametrize(("fmt", "rate"), [(TraceFormat.TWITTER, 500.0),
                                               (TraceFormat.GENERIC, 2500.0)])
    def test_even_rate(self, tmp_path: Path, fmt: TraceFormat, rate: float) -> None:
        """Evenly spaced: the summary's duration is ops / rate, its rate the rate."""
        spec = SynthSpec(ops=N, rate=rate, format=fmt)
        figures = summarize(_ops(tmp_path, spec, "t.csv")).as_dict()
        assert figures["format"] == fmt.value
        assert figures["duration_s"] == pytest.approx(N / rate)
        assert figures["rate_per_s"] == pytest.approx(rate)

    def test_poisson_rate(self, tmp_path: Path) -> None:
        """Poisson arrivals: the duration is ops / rate within five standard deviations
        (sqrt(n) / rate), and the gaps vary."""
        rate = 2000.0
        spec = SynthSpec(ops=N, rate=rate, arrivals=Arrivals.POISSON,
                         format=TraceFormat.GENERIC)
        reader = _ops(tmp_path, spec)
        offsets = [o.offset_ms for o in reader]
        duration = offsets[-1] / 1000
        assert abs(duration - N / rate) <= 5 * math.sqrt(N) / rate
        gaps = Counter(b - a for a, b in itertools.pairwise(offsets))
        assert len(gaps) > 3 and min(gaps) == 0


class TestDeterminism:
    def test_same_seed_same_bytes(self, tmp_path: Path) -> None:
        """The same parameters write the same bytes (compressed too); another seed does not."""
        spec = SynthSpec(ops=3_000, seed=11)
        for name in ("a.gz", "b.gz"):
            synthesize(spec, tmp_path / name)
        synthesize(SynthSpec(ops=3_000, seed=12), tmp_path / "c.gz")
        a, b, c = ((tmp_path / n).read_bytes() for n in ("a.gz", "b.gz", "c.gz"))
        assert a == b != c


class TestParameters:
    @pytest.mark.parametrize(("text", "expected"), [
        ("get=0.9,set=0.2", "summing to 1"), ("get=0.9,fetch=0.1", "WORD=SHARE"),
        ("get", "WORD=SHARE"), ("get=x,set=1", "the share of get"),
        ("get=0.5,get=0.5", "each operation once"), ("get=-1,set=2", "the share of get")])
    def test_bad_mix(self, text: str, expected: str) -> None:
        """A mix that cannot be used is a TraceError naming --mix."""
        with pytest.raises(TraceError, match=expected) as caught:
            parse_mix(text)
        assert caught.value.source == "--mix"

    @pytest.mark.parametrize(("text", "expected"), [
        ("", "N, A..B"), ("big", "N, A..B"), ("-5", "N, A..B"), ("9..3", "A <= B"),
        ("lognormal:230", "lognormal:MEDIAN,SIGMA"), ("lognormal:0,1", "the median"),
        ("lognormal:230,-1", "sigma as a number >= 0"),
        ("0=1,0=2", "each value once"), ("5=0", "each weight"),
        (str(1 << 30), "whole number from 0 to")])
    def test_bad_distribution(self, text: str, expected: str) -> None:
        """A distribution that cannot be used is a TraceError naming its flag."""
        with pytest.raises(TraceError, match=expected) as caught:
            Distribution.parse(text, "--value-size")
        assert caught.value.source == "--value-size"

    @pytest.mark.parametrize(("kwargs", "flag"), [
        ({"ops": 0}, "--ops"), ({"keys": 0}, "--keys"), ({"keys": 10 ** 8}, "--keys"),
        ({"clients": 0}, "--clients"), ({"zipf": -1.0}, "--zipf"),
        ({"zipf": math.nan}, "--zipf"), ({"rate": 0.0}, "--rate"),
        ({"rate": math.inf}, "--rate"), ({"mix": (("get", 0.5),)}, "--mix")])
    def test_bad_spec(self, kwargs: dict[str, object], flag: str) -> None:
        """Each parameter out of range is refused, naming its flag."""
        with pytest.raises(TraceError) as caught:
            SynthSpec(**kwargs)  # type: ignore[arg-type]
        assert caught.value.source == flag

    def test_lognormal_without_spread(self) -> None:
        """lognormal:M,0 is always M."""
        draw = Distribution.parse("lognormal:230,0", "--value-size").sampler(random.Random(1))
        assert {draw() for _ in range(100)} == {230}
