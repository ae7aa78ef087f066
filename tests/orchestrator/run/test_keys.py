"""Key and value generators: deterministic, shaped as configured, values naming their write."""

from __future__ import annotations

from collections import Counter

from orchestrator.run.keys import key_picker, task_rng, value_maker, write_id_of
from orchestrator.run.load import task_plan
from orchestrator.workload.model import KeyDistribution
from orchestrator.workload.validation import parse_workload


def _draw(distribution: KeyDistribution, n: int = 20_000, keyspace: int = 100) -> Counter[str]:
    pick = key_picker(distribution, keyspace, "k", task_rng(1, 0, "keys"))
    return Counter(pick() for _ in range(n))


class TestKeys:
    """Key pickers follow their distribution and repeat for the same seed."""

    def test_deterministic(self) -> None:
        """The same (seed, task, purpose) gives the same keys; another task does not."""
        a = key_picker(KeyDistribution(), 1000, "k", task_rng(7, 1, "keys"))
        b = key_picker(KeyDistribution(), 1000, "k", task_rng(7, 1, "keys"))
        c = key_picker(KeyDistribution(), 1000, "k", task_rng(7, 2, "keys"))
        first = [a() for _ in range(50)]
        assert first == [b() for _ in range(50)]
        assert first != [c() for _ in range(50)]

    def test_uniform(self) -> None:
        """Uniform keys cover the keyspace evenly."""
        counts = _draw(KeyDistribution("uniform"))
        assert len(counts) == 100
        assert max(counts.values()) < 2.5 * min(counts.values())

    def test_zipfian(self) -> None:
        """Zipfian keys are skewed: rank 1 is drawn about twice as often as rank 2."""
        counts = _draw(KeyDistribution("zipfian", theta=0.99))
        assert counts.most_common(1)[0][0] == "k0"
        assert 1.6 < counts["k0"] / counts["k1"] < 2.4

    def test_hotspot(self) -> None:
        """Hotspot sends hot_ops of the draws to the first hot_fraction of the keys."""
        counts = _draw(KeyDistribution("hotspot", hot_fraction=0.1, hot_ops=0.9))
        hot = sum(counts[f"k{i}"] for i in range(10))
        assert 0.87 < hot / 20_000 < 0.93

    def test_large_keyspace(self) -> None:
        """Keyspaces too large to precompute are formatted on the fly."""
        pick = key_picker(KeyDistribution(), 50_000_000, "k", task_rng(1, 0, "keys"))
        assert pick().startswith("k")


class TestValues:
    """Values carry their write id and have the configured size."""

    def test_prefix_and_size(self) -> None:
        """A value starts with 'id|' and is exactly the size drawn."""
        value = value_maker(64, 64, task_rng(1, 0, "v"))("3:12:57")
        assert value.startswith(b"3:12:57|") and len(value) == 64
        assert write_id_of(value) == "3:12:57"

    def test_size_range(self) -> None:
        """Sizes are drawn within [min, max]."""
        make = value_maker(100, 200, task_rng(1, 0, "v"))
        sizes = {len(make("1:1:1")) for _ in range(200)}
        assert min(sizes) >= 100 and max(sizes) <= 200 and len(sizes) > 20

    def test_never_shorter_than_prefix(self) -> None:
        """A tiny value size still keeps the whole write id."""
        assert write_id_of(value_maker(1, 1, task_rng(1, 0, "v"))("12:34:56")) == "12:34:56"


class TestTaskPlan:
    """Writers and readers are split evenly over the processes."""

    def test_even_split(self) -> None:
        """Every task lands on exactly one process, and counts differ by at most one."""
        w = parse_workload({"writers": 5, "readers": 7})
        plans = [task_plan(w, p, 3) for p in range(3)]
        tasks = sorted(t for plan in plans for _, t in plan)
        assert tasks == list(range(12))
        for kind, total in (("write", 5), ("read", 7)):
            sizes = [sum(1 for k, _ in plan if k == kind) for plan in plans]
            assert sum(sizes) == total and max(sizes) - min(sizes) <= 1
