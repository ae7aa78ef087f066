"""The trace generator: Twitter-format (or generic) traces with a given operation mix, Zipf
skew, key and value size distributions, TTL distribution, clients and rate, the same bytes for
the same parameters.

Operation ``i`` (from 0) is at ``i / rate`` seconds (``arrivals: even``) or after
exponentially distributed gaps of mean ``1 / rate`` (``poisson``), written in the format's
unit (whole seconds for twitter, so several operations share a timestamp). Each operation's
word is drawn from the mix; its key ``k:R`` has the rank ``R`` (0 the most popular) drawn
with P(R) proportional to (R + 1)^-zipf over ``keys`` keys (zipf 0: uniform); each key has one
key size, drawn once; each write (incr/decr too) draws its value size and TTL, and the key
then has that value size, which gets report; gets and deletes have TTL 0, deletes value size
0. The client id is drawn uniformly from 1 .. clients.

A distribution (``--key-size``, ``--value-size``, ``--ttl``) is written ``N`` (always N),
``A..B`` (uniform over the whole numbers A to B), ``lognormal:MEDIAN,SIGMA`` (MEDIAN x
e^(SIGMA x a standard normal), rounded, at most :data:`MAX_VALUE`) or ``V=W,V=W,...`` (the
value V with weight W).
"""

from __future__ import annotations

import bisect
import enum
import itertools
import math
import random
import re
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.trace.errors import TraceError
from orchestrator.trace.formats import GENERIC_HEADER, TraceFormat, format_line
from orchestrator.trace.ops import OP_KINDS, OpKind
from orchestrator.trace.streams import open_output

MAX_VALUE = 1 << 24
MAX_KEYS = 10_000_000  # about 20 bytes of the generator's memory per key
_WRITE_BATCH = 8192


class DistributionKind(enum.Enum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"
    CHOICE = "choice"


class Arrivals(enum.Enum):
    EVEN = "even"
    POISSON = "poisson"


def _bad(parameter: str, expected: str, found: str) -> TraceError:
    return TraceError(parameter, expected, repr(found))


_WHOLE = re.compile(r"\d+")
_NUMBER = re.compile(r"\d+(\.\d*)?([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?")


def _whole(text: str, parameter: str, what: str) -> int:
    if not _WHOLE.fullmatch(text.strip()) or int(text) > MAX_VALUE:
        raise _bad(parameter, f"{what} as a whole number from 0 to {MAX_VALUE:,}", text)
    return int(text)


def _positive(text: str, parameter: str, what: str, *, zero: bool = False) -> float:
    value = float(text) if _NUMBER.fullmatch(text.strip()) else math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise _bad(parameter, f"{what} as a number {'>=' if zero else '>'} 0", text)
    return value


@dataclass(frozen=True, slots=True)
class Distribution:
    """A distribution of whole numbers (sizes in bytes, TTLs in seconds)."""

    kind: DistributionKind
    values: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    median: float = 0.0
    sigma: float = 0.0
    text: str = ""

    @classmethod
    def parse(cls, text: str, parameter: str) -> Distribution:
        """``N``, ``A..B``, ``lognormal:MEDIAN,SIGMA`` or ``V=W,...``; a TraceError naming
        ``parameter`` otherwise."""
        spec = text.strip()
        if spec.startswith("lognormal:"):
            parts = spec.removeprefix("lognormal:").split(",")
            if len(parts) != 2:
                raise _bad(parameter, "lognormal:MEDIAN,SIGMA", text)
            median = _positive(parts[0], parameter, "the median")
            sigma = _positive(parts[1], parameter, "sigma", zero=True)
            return cls(DistributionKind.LOGNORMAL, median=median, sigma=sigma, text=spec)
        if "=" in spec:
            values, weights = [], []
            for item in spec.split(","):
                value, _, weight = item.partition("=")
                values.append(_whole(value, parameter, "each value"))
                weights.append(_positive(weight, parameter, "each weight"))
            if len(set(values)) != len(values):
                raise _bad(parameter, "each value once", text)
            return cls(DistributionKind.CHOICE, tuple(values), tuple(weights), text=spec)
        if ".." in spec:
            low, _, high = spec.partition("..")
            a, b = _whole(low, parameter, "the low end"), _whole(high, parameter, "the high end")
            if a > b:
                raise _bad(parameter, "A..B with A <= B", text)
            return cls(DistributionKind.UNIFORM, (a, b), text=spec)
        if not _WHOLE.fullmatch(spec):
            raise _bad(parameter, "N, A..B, lognormal:MEDIAN,SIGMA or V=W,V=W,...", text)
        return cls(DistributionKind.FIXED, (_whole(spec, parameter, "N"),), text=spec)

    def sampler(self, rng: random.Random) -> Callable[[], int]:
        """A function drawing the next value from ``rng``."""
        if self.kind is DistributionKind.FIXED:
            value = self.values[0]
            return lambda: value
        if self.kind is DistributionKind.UNIFORM:
            low, high = self.values
            return lambda: rng.randint(low, high)
        if self.kind is DistributionKind.CHOICE:
            values = self.values
            cumulative = list(itertools.accumulate(self.weights))
            total = cumulative[-1]
            find, rand, last = bisect.bisect_right, rng.random, len(values) - 1
            return lambda: values[min(find(cumulative, rand() * total), last)]
        mu, sigma, gauss = math.log(self.median), self.sigma, rng.gauss
        return lambda: min(round(math.exp(mu + sigma * gauss())), MAX_VALUE)


def parse_mix(text: str, parameter: str = "--mix") -> dict[str, float]:
    """``get=0.9,set=0.1``: each word of memcached's vocabulary once, shares summing to 1."""
    mix: dict[str, float] = {}
    for item in text.split(","):
        word, sep, share = (part.strip() for part in item.partition("="))
        if word not in OP_KINDS or not sep:
            raise _bad(parameter, f"WORD=SHARE with WORD one of {', '.join(OP_KINDS)}", item)
        if word in mix:
            raise _bad(parameter, "each operation once", text)
        mix[word] = _positive(share, parameter, f"the share of {word}")
    if abs(sum(mix.values()) - 1) > 1e-6:
        raise _bad(parameter, "shares summing to 1", text)
    return mix


@dataclass(frozen=True, slots=True)
class SynthSpec:
    """The generator's parameters (see the module's docstring); validated on creation, each
    error naming its command-line flag."""

    ops: int = 100_000
    mix: tuple[tuple[str, float], ...] = (("get", 0.9), ("set", 0.1))
    zipf: float = 0.99
    keys: int = 10_000
    key_size: Distribution = Distribution(DistributionKind.FIXED, (32,), text="32")
    value_size: Distribution = Distribution(DistributionKind.LOGNORMAL, median=230.0,
                                            sigma=1.0, text="lognormal:230,1")
    ttl: Distribution = Distribution(DistributionKind.FIXED, (3600,), text="3600")
    clients: int = 4
    rate: float = 1000.0
    arrivals: Arrivals = Arrivals.EVEN
    seed: int = 42
    format: TraceFormat = TraceFormat.TWITTER

    def __post_init__(self) -> None:
        for flag, value, low, high in (("--ops", self.ops, 1, 10 ** 12),
                                       ("--keys", self.keys, 1, MAX_KEYS),
                                       ("--clients", self.clients, 1, 1_000_000)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _bad(flag, f"a whole number from {low:,} to {high:,}", str(value))
        if not (math.isfinite(self.zipf) and 0 <= self.zipf <= 10):
            raise _bad("--zipf", "a skew from 0 (uniform) to 10", str(self.zipf))
        if not (math.isfinite(self.rate) and 0 < self.rate <= 1e9):
            raise _bad("--rate", "operations per second, > 0", str(self.rate))
        if not self.mix or abs(sum(s for _, s in self.mix) - 1) > 1e-6 or any(
                w not in OP_KINDS or s <= 0 for w, s in self.mix):
            raise _bad("--mix", "memcached operations with shares > 0 summing to 1",
                       str(self.mix))


def _rank_picker(spec: SynthSpec, rng: random.Random) -> Callable[[], int]:
    n, rand = spec.keys, rng.random
    if spec.zipf == 0:
        return lambda: int(rand() * n)
    weights = (k ** -spec.zipf for k in range(1, n + 1))
    cdf = array("d", itertools.accumulate(weights))
    total, find, last = cdf[-1], bisect.bisect_left, n - 1
    return lambda: min(find(cdf, rand() * total), last)


def generate(spec: SynthSpec) -> Iterator[str]:
    """The trace's lines (with their newlines; the generic format's header first)."""
    rng = random.Random(f"trace-synth:{spec.seed}")
    sizes_rng = random.Random(f"trace-synth:{spec.seed}:keys")
    key_size = spec.key_size.sampler(sizes_rng)
    key_sizes = array("I", (key_size() for _ in range(spec.keys)))
    initial = spec.value_size.sampler(sizes_rng)
    current = array("I", (initial() for _ in range(spec.keys)))
    value_size, ttl = spec.value_size.sampler(rng), spec.ttl.sampler(rng)
    rank = _rank_picker(spec, rng)
    words = [w for w, _ in spec.mix]
    kinds = [OP_KINDS[w] for w in words]
    cumulative = list(itertools.accumulate(s for _, s in spec.mix))
    find, rand, last_word = bisect.bisect_right, rng.random, len(words) - 1
    clients, expovariate = spec.clients, rng.expovariate
    fmt, rate = spec.format, spec.rate
    if fmt is TraceFormat.GENERIC:
        yield GENERIC_HEADER + "\n"
    clock_s = 0.0
    for i in range(spec.ops):
        if spec.arrivals is Arrivals.EVEN:
            at_ms = math.floor(i * 1000 / rate)
        else:
            at_ms = math.floor(clock_s * 1000)
            clock_s += expovariate(rate)
        choice = min(find(cumulative, rand() * cumulative[-1]), last_word)
        kind, r = kinds[choice], rank()
        client = str(int(rand() * clients) + 1)
        if kind is OpKind.WRITE:
            size, seconds = value_size(), ttl()
            current[r] = size
        elif kind is OpKind.DELETE:
            size, seconds = 0, 0
        else:
            size, seconds = current[r], 0
        yield format_line(fmt, at_ms, f"k:{r}", key_sizes[r], size, client,
                          words[choice], seconds)


def synthesize(spec: SynthSpec, out: Path) -> int:
    """Write the trace to ``out`` (compressed by its suffix: ``.gz``, ``.zst``); the number of
    operations written."""
    with open_output(out) as stream:
        batch: list[str] = []
        for line in generate(spec):
            batch.append(line)
            if len(batch) >= _WRITE_BATCH:
                stream.write("".join(batch).encode())
                batch.clear()
        stream.write("".join(batch).encode())
    return spec.ops
