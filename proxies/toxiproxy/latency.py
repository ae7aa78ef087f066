"""How a round-trip latency becomes Toxiproxy latency toxics, one per direction.

Toxiproxy's latency toxic delays each chunk of one direction by ``latency`` ms plus a uniformly
drawn integer in ``[-jitter, jitter)`` ms, and both attributes are whole milliseconds (a
fraction is rejected with 400). A request crosses the ``upstream`` direction and its reply the
``downstream`` one, so a round trip pays both. :func:`split_latency` picks the
whole-millisecond settings whose round-trip mean is nearest the configured latency and whose
round-trip spread is nearest ``+/- jitter``, split as evenly as possible between the two
directions (ties put the extra on the downstream side). Example: 1.5 ms +/- 0.5 ms becomes
upstream 1 ms and downstream 1 ms +/- 1 ms (0 or 1 ms), i.e. round trips of 1 or 2 ms, mean
1.5 ms. 20 ms becomes 10 ms each way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from proxies.errors import ProxyConfigError


@dataclass(frozen=True, slots=True)
class DirectionLatency:
    """Whole-millisecond latency toxic attributes for one direction."""

    latency: int
    jitter: int

    def delays(self) -> range:
        """Every delay (ms) Toxiproxy may draw, each equally likely, before clamping at 0."""
        if self.jitter == 0:
            return range(self.latency, self.latency + 1)
        return range(self.latency - self.jitter, self.latency + self.jitter)

    @property
    def mean_ms(self) -> float:
        values = [max(0, d) for d in self.delays()]
        return sum(values) / len(values)

    @property
    def low_ms(self) -> int:
        return max(0, self.delays()[0])

    @property
    def high_ms(self) -> int:
        return max(0, self.delays()[-1])


@dataclass(frozen=True, slots=True)
class LatencySplit:
    """How a round-trip latency is spread over the two directions of a proxy."""

    upstream: DirectionLatency
    downstream: DirectionLatency

    @property
    def mean_ms(self) -> float:
        return self.upstream.mean_ms + self.downstream.mean_ms

    @property
    def jitter_ms(self) -> float:
        """Half the range of round-trip delays (requested as ``+/- jitter``)."""
        low = self.upstream.low_ms + self.downstream.low_ms
        high = self.upstream.high_ms + self.downstream.high_ms
        return (high - low) / 2

    def as_dict(self) -> dict[str, Any]:
        return {"upstream": {"latency": self.upstream.latency, "jitter": self.upstream.jitter},
                "downstream": {"latency": self.downstream.latency,
                               "jitter": self.downstream.jitter},
                "round_trip_mean_ms": self.mean_ms, "round_trip_jitter_ms": self.jitter_ms}


def _check_ms(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and 0 <= value <= 60_000):
        raise ProxyConfigError(f"{name} must be a number of milliseconds in [0, 60000], "
                               f"found {value!r}")
    return float(value)


def split_latency(latency_ms: float, jitter_ms: float = 0.0) -> LatencySplit:
    """Whole-ms toxic settings whose round trip is nearest ``latency_ms`` +/- ``jitter_ms``."""
    latency = _check_ms("latency_ms", latency_ms)
    jitter = _check_ms("jitter_ms", jitter_ms)
    if jitter > latency:
        raise ProxyConfigError(f"jitter_ms ({jitter_ms}) must not exceed latency_ms "
                               f"({latency_ms}): a round trip cannot take negative time")

    def near(value: float) -> range:
        return range(max(0, math.floor(value) - 1), math.ceil(value) + 2)

    jitters = sorted({0, 1, *near(jitter / 2)})
    best: tuple[tuple[float, ...], LatencySplit] | None = None
    for up_latency in near(latency / 2):
        for down_latency in near(latency - up_latency):
            for up_jitter in jitters:
                for down_jitter in jitters:
                    split = LatencySplit(DirectionLatency(up_latency, up_jitter),
                                         DirectionLatency(down_latency, down_jitter))
                    score = (round(abs(split.mean_ms - latency), 9),
                             round(abs(split.jitter_ms - jitter), 9),
                             abs(up_latency - down_latency), abs(up_jitter - down_jitter),
                             up_latency > down_latency, up_jitter > down_jitter)
                    if best is None or score < best[0]:
                        best = (score, split)
    assert best is not None
    return best[1]
