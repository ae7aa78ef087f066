"""proxies.toxiproxy.latency: a round trip split into whole-millisecond toxics."""

from __future__ import annotations

from typing import Any

import pytest

from proxies.errors import ProxyConfigError
from proxies.toxiproxy.latency import split_latency


class TestSplitLatency:
    """Whole-ms settings per direction whose round trip matches the request."""

    @pytest.mark.parametrize(("latency", "jitter", "up", "down"), [
        (20, 0, (10, 0), (10, 0)),
        (3, 0, (1, 0), (2, 0)),
        (1.5, 0.5, (1, 0), (1, 1)),
        (0, 0, (0, 0), (0, 0)),
    ])
    def test_known_splits(self, latency: float, jitter: float, up: tuple[int, int],
                          down: tuple[int, int]) -> None:
        """Round trips are split evenly in whole ms, the extra going downstream."""
        split = split_latency(latency, jitter)
        assert (split.upstream.latency, split.upstream.jitter) == up
        assert (split.downstream.latency, split.downstream.jitter) == down

    @pytest.mark.parametrize(("latency", "jitter"), [
        (1.5, 0.5), (20, 4), (7, 0), (3, 1), (100, 10), (0.5, 0.5)])
    def test_mean_and_spread_match_when_expressible(self, latency: float,
                                                    jitter: float) -> None:
        """The chosen settings' round-trip mean and +/- spread equal the request."""
        split = split_latency(latency, jitter)
        assert split.mean_ms == pytest.approx(latency)
        assert split.jitter_ms == pytest.approx(jitter)

    @pytest.mark.parametrize(("latency", "jitter"), [(-1, 0), (5, 6), (float("nan"), 0),
                                                     (True, 0), (70_000, 0)])
    def test_invalid_values_are_rejected(self, latency: Any, jitter: Any) -> None:
        """Negative, non-finite, boolean, huge values and jitter > latency are refused."""
        with pytest.raises(ProxyConfigError):
            split_latency(latency, jitter)
