"""Bounded-memory counters for one pass over a trace: distinct keys (exact up to a bound, then
HyperLogLog) and size histograms (exact small values, then 11 significant bits)."""

from __future__ import annotations

import hashlib
import math

# HyperLogLog with 2^14 one-byte registers (16 KiB): standard error 1.04 / sqrt(2^14) = 0.81 %.
HLL_PRECISION = 14
HLL_STANDARD_ERROR = 1.04 / math.sqrt(1 << HLL_PRECISION)
# Values below 2^11 are counted exactly; above, within 2^-10 (0.1 %) of their value.
_EXACT_BITS = 11


def _hash64(key: str) -> int:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class HyperLogLog:
    """Flajolet et al.'s estimator of a count of distinct items, with linear counting below
    2.5 x the number of registers (as in the original paper; 64-bit hashes need no large-range
    correction)."""

    def __init__(self, precision: int = HLL_PRECISION) -> None:
        self._p = precision
        self._m = 1 << precision
        self._registers = bytearray(self._m)
        self._rest_bits = 64 - precision
        self._rest_mask = (1 << self._rest_bits) - 1

    def add(self, key: str) -> None:
        h = _hash64(key)
        index = h >> self._rest_bits
        rank = self._rest_bits - (h & self._rest_mask).bit_length() + 1
        if rank > self._registers[index]:
            self._registers[index] = rank

    def estimate(self) -> float:
        m = self._m
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / sum(2.0 ** -r for r in self._registers)
        zeros = self._registers.count(0)
        if raw <= 2.5 * m and zeros:
            return m * math.log(m / zeros)
        return raw


class DistinctCounter:
    """Distinct keys: counted exactly while there are at most ``exact_limit``; past that the
    set is handed to a :class:`HyperLogLog` and dropped, and the count is its estimate."""

    def __init__(self, exact_limit: int) -> None:
        self.exact_limit = exact_limit
        self._exact: set[str] | None = set()
        self._sketch: HyperLogLog | None = None

    def add(self, key: str) -> None:
        exact = self._exact
        if exact is not None:
            exact.add(key)
            if len(exact) <= self.exact_limit:
                return
            self._sketch = HyperLogLog()
            for seen in exact:
                self._sketch.add(seen)
            self._exact = None
            return
        assert self._sketch is not None
        self._sketch.add(key)

    @property
    def is_exact(self) -> bool:
        return self._exact is not None

    def count(self) -> int:
        if self._exact is not None:
            return len(self._exact)
        assert self._sketch is not None
        return round(self._sketch.estimate())


def _bucket(value: int) -> int:
    shift = value.bit_length() - _EXACT_BITS
    return value if shift <= 0 else (value >> shift) << shift


class Histogram:
    """Whole numbers >= 0: exact count, sum, min and max; percentiles by nearest rank, exact
    below 2048 and otherwise the lower end of a bucket within 0.1 % of the value."""

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    def add(self, value: int) -> None:
        b = _bucket(value)
        self._buckets[b] = self._buckets.get(b, 0) + 1
        self.count += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def percentile(self, q: float) -> int | None:
        """The smallest value at or below which at least ``q`` percent of the values lie."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for value in sorted(self._buckets):
            seen += self._buckets[value]
            if seen >= rank:
                assert self.min is not None and self.max is not None
                return min(max(value, self.min), self.max)
        return self.max
