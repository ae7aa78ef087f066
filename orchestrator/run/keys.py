"""Key and value generators: deterministic per (seed, task), cheap per call.

Keys are ``key_prefix + str(i)`` for ``i`` in ``range(keyspace)``. Values written carry their
write id as a prefix (``b"3:12:57|"`` + filler up to the drawn size), so a read records which
write it saw; a value is never shorter than its prefix.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable

from orchestrator.workload.model import KeyDistribution

# Up to this many keys are formatted once and reused; beyond it each pick formats its key.
_PRECOMPUTE_LIMIT = 1_000_000
_FILLER = b"x" * 4096


def task_rng(seed: int, task: int, purpose: str) -> random.Random:
    """A generator seeded by (seed, task, purpose): the same for every backend and repetition."""
    return random.Random(f"{seed}:{task}:{purpose}")


def zipf_cdf(keyspace: int, theta: float) -> list[float]:
    """Cumulative probabilities of ranks 1..keyspace with P(rank k) proportional to k^-theta."""
    weights = [k ** -theta for k in range(1, keyspace + 1)]
    total = sum(weights)
    cdf = list(itertools.accumulate(w / total for w in weights))
    cdf[-1] = 1.0
    return cdf


def key_picker(distribution: KeyDistribution, keyspace: int, prefix: str,
               rng: random.Random, cdf: list[float] | None = None) -> Callable[[], str]:
    """A function returning the next key; ``cdf`` may be shared between tasks (zipfian)."""
    rand = rng.random
    n = keyspace
    if n <= _PRECOMPUTE_LIMIT:
        keys = [f"{prefix}{i}" for i in range(n)]

        def name(i: int) -> str:
            return keys[i]
    else:
        keys = []

        def name(i: int) -> str:
            return f"{prefix}{i}"

    if distribution.kind == "zipfian":
        table = cdf if cdf is not None else zipf_cdf(n, distribution.theta)
        find = bisect.bisect_left
        last = n - 1
        if keys:
            return lambda: keys[min(find(table, rand()), last)]
        return lambda: name(min(find(table, rand()), last))
    if distribution.kind == "hotspot":
        hot = max(1, min(n, round(distribution.hot_fraction * n)))
        cold = n - hot
        share = distribution.hot_ops if cold else 1.0

        def pick_hotspot() -> str:
            if rand() < share:
                return name(int(rand() * hot))
            return name(hot + int(rand() * cold))

        return pick_hotspot
    if keys:
        return lambda: keys[int(rand() * n)]
    return lambda: name(int(rand() * n))


def value_maker(size_min: int, size_max: int,
                rng: random.Random) -> Callable[[str], bytes]:
    """A function building the value for a write id, of a size drawn in [size_min, size_max]."""
    filler = _FILLER if size_max <= len(_FILLER) else b"x" * size_max
    if size_min == size_max:
        size = size_min

        def fixed(write_id: str) -> bytes:
            head = f"{write_id}|".encode()
            return head + filler[:size - len(head)]

        return fixed
    randint = rng.randint

    def ranged(write_id: str) -> bytes:
        head = f"{write_id}|".encode()
        return head + filler[:randint(size_min, size_max) - len(head)]

    return ranged


def write_id_of(value: bytes) -> str | None:
    """The write id a value carries (None if it carries none)."""
    end = value.find(b"|")
    return value[:end].decode("utf-8", "replace") if end >= 0 else None
