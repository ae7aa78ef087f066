"""The local cache's bookkeeping, without a server."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgcache import CacheSettings, PostgresCache
from pgcache._keys import LONG_KEY_CHARS, key_digest
from pgcache._local import LocalCache
from pgcache._values import KIND_BYTES

FAR = 1e18  # an expiry that never passes


class TestLookup:
    def test_serves_a_copy_only_within_its_ttl_and_the_lease(self) -> None:
        """A copy is served while both its expiry and the lease are ahead; past its expiry
        it is dropped, while the lease has lapsed it is kept but not served."""
        local = LocalCache(max_entries=10)
        local.install("k", b"v", 0, 1, 10.0)
        assert local.lookup("k", 1.0) is None  # never trusted yet
        assert "k" in local.data
        local.trusted_until = 5.0
        entry = local.lookup("k", 1.0)
        assert entry is not None and entry.value == b"v"
        assert local.lookup("k", 6.0) is None  # the lease lapsed: kept, not served
        assert "k" in local.data
        local.trusted_until = FAR
        assert local.lookup("k", 10.0) is None  # expired: dropped
        assert "k" not in local.data
        assert local.lookup("missing", 1.0) is None

    def test_a_hit_becomes_most_recently_used(self) -> None:
        """The copy served goes to the end of the LRU order; an unhashable key raises
        TypeError (the facade turns it into its argument error)."""
        local = LocalCache(max_entries=10)
        local.trusted_until = FAR
        local.install("a", b"1", 0, 1, FAR)
        local.install("b", b"2", 0, 2, FAR)
        assert local.lookup("a", 0.0) is not None
        assert list(local.data) == ["b", "a"]
        with pytest.raises(TypeError):
            local.lookup([], 0.0)  # type: ignore[arg-type]


class TestLocalCache:
    def test_lru_bound_evicts_least_recently_used(self) -> None:
        """Beyond max_entries the least recently installed or read copy goes."""
        local = LocalCache(max_entries=2)
        local.install("a", b"1", 0, 1, FAR)
        local.install("b", b"2", 0, 2, FAR)
        local.trusted_until = FAR
        assert local.lookup("a", 0.0) is not None  # a local hit
        local.install("c", b"3", 0, 3, FAR)
        assert list(local.data) == ["a", "c"]

    def test_install_never_replaces_a_newer_copy(self) -> None:
        """An older version arriving late does not overwrite a newer copy."""
        local = LocalCache(max_entries=10)
        local.install("k", b"new", 0, 5, FAR)
        local.install("k", b"old", 0, 4, FAR)
        assert local.data["k"].value == b"new"

    def test_invalidation_for_older_version_keeps_copy(self) -> None:
        """A notification for version v never evicts a copy of a newer version."""
        local = LocalCache(max_entries=10)
        local.install("k", b"v5", 0, 5, FAR)
        assert not local.invalidate("k", 4)
        assert not local.invalidate("k", 5)
        assert local.invalidate("k", 6)
        assert "k" not in local.data

    def test_invalidation_during_fetch_is_reported_to_the_fetch(self) -> None:
        """end() returns the highest version announced while the operation was in flight."""
        local = LocalCache(max_entries=10)
        local.begin("k")
        local.begin("k")
        local.invalidate("k", 7)
        local.invalidate("k", 3)
        assert local.end("k") == 7
        assert local.end("k") == 7
        assert local.inflight == {}

    def test_flush_bumps_epoch_and_keeps_reads_in_flight_tracked(self) -> None:
        """A flush drops copies and makes every read in flight stale via the epoch."""
        local = LocalCache(max_entries=10)
        local.install("a", b"1", 0, 1, FAR)
        epoch = local.begin("b")
        assert local.flush() == 1
        assert local.epoch != epoch and len(local) == 0
        assert local.end("b") == 0

    def test_long_keys_are_indexed_by_digest_while_held_or_fetched(self) -> None:
        """Long keys can be found from their digest only while relevant."""
        local = LocalCache(max_entries=1)
        long_a, long_b = "a" * (LONG_KEY_CHARS + 1), "b" * (LONG_KEY_CHARS + 1)
        local.begin(long_a)
        assert local.key_for_digest(key_digest(long_a)) == long_a
        local.end(long_a)
        assert local.key_for_digest(key_digest(long_a)) is None
        local.install(long_a, b"1", 0, 1, FAR)
        local.install(long_b, b"2", 0, 2, FAR)  # evicts long_a (max_entries=1)
        assert local.key_for_digest(key_digest(long_a)) is None
        assert local.key_for_digest(key_digest(long_b)) == long_b

    @given(st.lists(st.tuples(st.sampled_from(["install", "invalidate"]),
                              st.integers(min_value=1, max_value=20)), max_size=40))
    def test_versions_only_move_forward(self, ops: list[tuple[str, int]]) -> None:
        """A copy is replaced only by a newer one and survives exactly the older invalidations."""
        local = LocalCache(max_entries=10)
        held: int | None = None  # the model
        for op, version in ops:
            if op == "install":
                held = version if held is None else max(held, version)
                local.install("k", b"x", 0, version, FAR)
            else:
                if held is not None and held < version:
                    held = None
                local.invalidate("k", version)
            entry = local.data.get("k")
            assert (entry.version if entry is not None else None) == held

    @given(st.lists(st.tuples(st.sampled_from(["begin", "end", "announce", "flush"]),
                              st.integers(min_value=1, max_value=20)), max_size=60))
    def test_operation_in_flight_learns_every_version_announced_meanwhile(
            self, ops: list[tuple[str, int]]) -> None:
        """What end() reports is at least every version announced since the oldest operation
        still in flight began: the high-water mark is kept while anything could need it."""
        local = LocalCache(max_entries=10)
        began: list[int] = []  # per operation in flight: the highest announced before it
        announced_since: list[int] = []  # per operation in flight: the highest since it began
        for op, version in ops:
            if op == "begin":
                local.begin("k")
                began.append(version)
                announced_since.append(0)
            elif op == "end" and began:
                reported = local.end("k")
                began.pop(0)
                assert reported >= announced_since.pop(0)
            elif op == "announce":
                local.invalidate("k", version)
                announced_since = [max(v, version) for v in announced_since]
            elif op == "flush":
                epoch = local.epoch
                local.flush()
                assert local.epoch == epoch + 1
            # Bounded: the mark lives exactly as long as an operation is in flight.
            assert ("k" in local.inflight) == bool(began)

    def test_a_write_installs_its_version_only_if_nothing_newer_was_announced(self) -> None:
        """written(): a write returning v installs v, unless v' > v was announced while it
        was in flight; then older copies go and nothing is installed."""
        local = LocalCache(max_entries=10)
        local.trusted_until = FAR
        local.install("k", b"old", 0, 3, FAR)
        epoch = local.begin("k")
        local.written("k", 5, b"mine", 0, 60.0, epoch)
        assert local.data["k"].value == b"mine" and local.data["k"].version == 5
        assert local.inflight == {}
        epoch = local.begin("k")
        local.invalidate("k", 9)  # another instance wrote 9 meanwhile: our copy of 5 goes
        local.written("k", 7, b"late", 0, 60.0, epoch)
        assert "k" not in local.data and local.inflight == {}

    def test_a_write_installs_nothing_across_a_flush_or_a_lapsed_lease(self) -> None:
        """An epoch that moved on (a flush) or an untrusted cache: drop older, keep nothing."""
        local = LocalCache(max_entries=10)
        local.trusted_until = FAR
        epoch = local.begin("k")
        local.flush()
        local.written("k", 5, b"v", 0, 60.0, epoch)
        assert "k" not in local.data
        local.install("k", b"old", 0, 4, FAR)
        local.trusted_until = 0.0  # the lease lapsed
        epoch = local.begin("k")
        local.written("k", 6, b"v", 0, 60.0, epoch)
        assert "k" not in local.data

    def test_a_write_tells_operations_still_in_flight_its_version(self) -> None:
        """Two operations on a key: the first to return leaves its version as the mark the
        other sees, so a read that began before it cannot install anything older."""
        local = LocalCache(max_entries=10)
        local.trusted_until = FAR
        read_epoch = local.begin("k")
        write_epoch = local.begin("k")
        local.written("k", 8, b"w", 0, 60.0, write_epoch)
        assert local.data["k"].version == 8
        assert local.end("k") == 8 and read_epoch == local.epoch
        assert local.inflight == {}

    def test_a_delete_leaves_no_copy_and_a_long_key_no_digest(self) -> None:
        """written() with no value (a delete) drops older copies; a long key's digest goes
        with its last operation and copy."""
        local = LocalCache(max_entries=10)
        local.trusted_until = FAR
        long_key = "d" * (LONG_KEY_CHARS + 1)
        local.install(long_key, b"x", 0, 2, FAR)
        epoch = local.begin(long_key)
        local.written(long_key, 3, None, 0, 60.0, epoch)
        assert long_key not in local.data
        assert local.key_for_digest(key_digest(long_key)) is None


class TestGetLocalAgreesWithLookup:
    @given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans()), max_size=6),
           st.booleans(), st.sampled_from(["a", "b", "c", "missing"]))
    def test_get_local_serves_what_lookup_serves(
            self, copies: list[tuple[str, bool]], trusted: bool, key: str) -> None:
        """PostgresCache.get_local (which inlines lookup's rule for speed) serves a copy
        exactly when LocalCache.lookup does, and leaves the same copies in the same order."""
        now = time.monotonic()
        caches = []
        for _ in range(2):
            cache = PostgresCache(CacheSettings(dsn="postgresql://u@127.0.0.1/db"))
            local = cache._local
            assert local is not None
            local.trusted_until = now + 3600 if trusted else now - 3600
            for version, (name, fresh) in enumerate(copies, 1):
                local.install(name, name.encode(), KIND_BYTES, version,
                              now + 3600 if fresh else now - 3600)
            caches.append((cache, local))
        (cache, served_by_cache), (_, served_by_lookup) = caches
        value = cache.get_local(key)
        entry = served_by_lookup.lookup(key, time.monotonic())
        assert value == (entry.value if entry is not None else None)
        assert list(served_by_cache.data) == list(served_by_lookup.data)
